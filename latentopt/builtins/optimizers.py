"""Built-in optimizers: the genetic algorithm (Ponce-lab and XDream presets), CMA-ES through pycma
(full and diagonal covariance), and random search."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from latentopt.builtins.pycma_state import load_strategy_state, strategy_to_state
from latentopt.checks import ConfigError, finite_number, integer, parent_count
from latentopt.optimizer import Optimizer, OptimizerError, initial_mean, rng_state, set_rng_state
from latentopt.plugins import hookimpl


class GeneticAlgorithm(Optimizer):
    """A genetic algorithm over codes.

    Each generation keeps the ``n_elite`` best codes unchanged and breeds the rest: two parents are
    drawn by roulette on ``fitness = exp((s - max s) / kT)`` with ``kT = temperature_factor * std(s)``,
    each gene comes from the first parent with probability ``parental_skew`` (else from the second),
    and each gene mutates with probability ``mutation_rate`` by ``N(0, mutation_size)``.

    Presets (``conf/optimizer/ga_ponce.yaml``, ``ga_xdream.yaml``):

    * Ponce-lab rig (Ponce et al. 2019; Wang & Ponce 2022 GECCO benchmark): population 40, 10 elites,
      mutation rate 0.25, size 0.75, parental skew 0.75, ``kT = 2 * std`` (temperature_factor 2).
    * XDream (Xiao & Kreiman 2020): population 20, 1 conserved, heritability 0.5 (parental skew),
      mutation rate 0.5, size 0.5, scores clipped at their 95th percentile, ``kT = std / selectivity``
      with selectivity 2, so temperature_factor 0.5. XDream's "selectivity" is an inverse
      temperature: larger selectivity, sharper selection; Ponce's factor is a temperature. NaN-scored
      codes are carried into the next generation unchanged (``nan_policy: carry``).

    State (:meth:`state_dict`): ``codes``, the ``(population_size, d)`` generation to show next (runs
    recorded before the rename call it ``population``; both load).

    Args:
        initial_codes: ``(population_size, d)`` first generation.
        seed: random seed.
        n_elite: codes kept unchanged each generation.
        mutation_rate: probability that a gene mutates.
        mutation_size: standard deviation of a mutation.
        parental_skew: probability that a gene comes from the first (fitter-drawn) parent.
        temperature_factor: ``kT = temperature_factor * std(scores)``.
        score_clip_percentile: clip scores at this percentile before fitness (None: no clipping).
        nan_policy: ``worst``, ``drop`` or ``carry``.
    """

    supported_nan_policies = ("worst", "drop", "carry")

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        n_elite: int = 10,
        mutation_rate: float = 0.25,
        mutation_size: float = 0.75,
        parental_skew: float = 0.75,
        temperature_factor: float = 2.0,
        score_clip_percentile: float | None = None,
        nan_policy: str = "worst",
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy)
        self.codes = np.asarray(initial_codes, dtype=np.float32).copy()
        size = self.codes.shape[0]
        if size < 2:
            raise ConfigError(f"optimizer.population_size must be >= 2 for the genetic algorithm, got {size}")
        integer(n_elite, "optimizer.n_elite", minimum=0, maximum=size - 1)
        for key, value in (("mutation_rate", mutation_rate), ("parental_skew", parental_skew)):
            if not 0.0 <= finite_number(value, f"optimizer.{key}") <= 1.0:
                raise ConfigError(f"optimizer.{key} must be in [0, 1], got {value}")
        finite_number(temperature_factor, "optimizer.temperature_factor", minimum=0.0)
        finite_number(mutation_size, "optimizer.mutation_size", minimum=0.0, inclusive=True)
        if score_clip_percentile is not None and not 0 <= finite_number(
                score_clip_percentile, "optimizer.score_clip_percentile") <= 100:
            raise ConfigError(f"optimizer.score_clip_percentile must be in [0, 100], got {score_clip_percentile}")
        self.n_elite = int(n_elite)
        self.mutation_rate = float(mutation_rate)
        self.mutation_size = float(mutation_size)
        self.parental_skew = float(parental_skew)
        self.temperature_factor = float(temperature_factor)
        self.score_clip_percentile = score_clip_percentile

    @property
    def population_size(self) -> int:
        """Codes per generation (the rows of ``initial_codes``)."""
        return int(self.codes.shape[0])

    def _ask(self) -> np.ndarray:
        return self.codes

    def fitness(self, scores: np.ndarray) -> np.ndarray:
        """Selection probabilities from finite scores ``(n,)``."""
        s = scores.astype(np.float64)
        if self.score_clip_percentile is not None:
            s = np.minimum(s, np.percentile(s, self.score_clip_percentile))
        temperature = self.temperature_factor * s.std()
        if temperature <= 0:
            return np.full(s.shape, 1.0 / s.size)
        weights = np.exp((s - s.max()) / temperature)
        return weights / weights.sum()

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        finite = np.isfinite(scores)
        carried = codes[~finite]  # only under nan_policy "carry"
        codes, scores = codes[finite], scores[finite]
        size = self.population_size
        order = np.argsort(-scores, kind="stable")
        elites = codes[order[: min(self.n_elite, len(order))]]
        n_children = size - len(elites) - len(carried)
        p = self.fitness(scores)
        parents = self.rng.choice(len(scores), size=(n_children, 2), p=p)
        from_first = self.rng.random((n_children, self.dim)) < self.parental_skew
        children = np.where(from_first, codes[parents[:, 0]], codes[parents[:, 1]])
        mutate = self.rng.random((n_children, self.dim)) < self.mutation_rate
        children = children + mutate * self.rng.normal(0.0, self.mutation_size, (n_children, self.dim))
        self.codes = np.concatenate([elites, carried, children]).astype(np.float32)

    def _state_dict(self) -> dict[str, Any]:
        return {"codes": self.codes}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        # "population": the key of states recorded before the rename (resume of an older run)
        key = "population" if "population" in state and "codes" not in state else "codes"
        self.codes = np.asarray(state[key], dtype=np.float32)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "population_size": self.population_size,
                "n_elite": self.n_elite, "mutation_rate": self.mutation_rate,
                "mutation_size": self.mutation_size, "parental_skew": self.parental_skew,
                "temperature_factor": self.temperature_factor,
                "score_clip_percentile": self.score_clip_percentile}


class _SeededNormal:
    """pycma's ``randn`` option, drawing from a seeded numpy Generator (recorded by its bit-generator state)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


class PycmaES(Optimizer):
    """CMA-ES through pycma (``cma``), full or diagonal covariance.

    pycma minimises: this adapter, and only this adapter, tells it the negated scores. It is seeded
    through pycma's ``randn`` option and writes no log files (``verb_log=0``).

    State (:meth:`state_dict`): ``strategy`` holds the strategy's attributes as plain data (numeric
    arrays, numbers, strings, lists and dicts of these; see :mod:`latentopt.builtins.pycma_state`),
    ``randn`` the bit-generator state of the seeded random source (128-bit integers as strings), and
    ``asked`` the codes asked and not yet told (float64 ``(λ, d)``, or ``{}``). No pickle: loading builds
    a fresh strategy from this optimizer's constructor arguments and transplants the checked data into
    it, so a resumed optimizer proposes exactly what an uninterrupted one would; a state that is not
    what latentopt wrote raises :class:`~latentopt.optimizer.OptimizerError`.

    Args:
        initial_codes: ``(population_size, d)``; their count is λ, their mean the initial mean
            (or zero with ``init_mean: zero``).
        seed: random seed.
        sigma0: initial step size (3 in Wang & Ponce's 4096-d DeePSim runs).
        diagonal: separable CMA-ES (diagonal covariance), cheap in high dimension.
        mu: parents (default λ / 2).
        init_mean: ``codes`` (mean of the initial codes) or ``zero``.
        options: extra pycma options (e.g. ``{CMA_active: false}``).
        nan_policy: ``worst`` or ``drop``.
    """

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        sigma0: float = 3.0,
        diagonal: bool = False,
        mu: int | None = None,
        init_mean: str = "codes",
        options: dict[str, Any] | None = None,
        nan_policy: str = "worst",
    ) -> None:

        finite_number(sigma0, "optimizer.sigma0", minimum=0.0)
        if np.ndim(initial_codes) == 2 and np.shape(initial_codes)[0] < 2:
            raise ConfigError(f"optimizer.population_size must be >= 2 for CMA-ES, got {np.shape(initial_codes)[0]}")
        if np.ndim(initial_codes) == 2:
            parent_count(mu, int(np.shape(initial_codes)[0]))
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"optimizer.options must be a mapping of pycma options, got {options!r}")
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy)
        if not diagonal and self.dim >= 1024:
            # C and its eigenbasis B: 2 x 8 d^2 bytes, written into every generation's record
            warnings.warn(
                f"optimizer cmaes: full covariance at d = {self.dim} writes about {16 * self.dim**2 / 1e6:.0f} MB "
                f"of optimizer state into every generation's record and updates slowly; "
                f"sep_cma or cmaes_diag suit this dimension (GECCO 2022: diagonal did as well)",
                UserWarning,
                stacklevel=2,
            )
        codes = np.asarray(initial_codes, dtype=np.float64)
        self._x0, self.init_mean = initial_mean(codes, init_mean), init_mean
        self.population_size = int(codes.shape[0])
        self._opts: dict[str, Any] = {
            "popsize": self.population_size, "seed": np.nan,
            "verbose": -9, "verb_log": 0, "verb_disp": 0, "verb_filenameprefix": "",
            "CMA_diagonal": bool(diagonal), "tolfun": 0, "tolx": 0, "tolstagnation": int(1e9),
            "tolflatfitness": int(1e9), "tolfunhist": 0, "maxiter": np.inf,
        }
        if mu is not None:
            self._opts["CMA_mu"] = int(mu)
        self._opts.update(dict(options or {}))
        self.sigma0, self.diagonal, self.options = float(sigma0), bool(diagonal), dict(options or {})
        self._randn, self.es = self._new_strategy()
        self._asked: list[np.ndarray] = []

    def _new_strategy(self) -> tuple[_SeededNormal, Any]:
        """A fresh pycma strategy from this optimizer's constructor arguments, and its random source."""
        import cma

        randn = _SeededNormal(self.seed)
        return randn, cma.CMAEvolutionStrategy(self._x0.copy(), self.sigma0, {**self._opts, "randn": randn})

    @classmethod
    def contract_kwargs(cls) -> dict[str, Any]:
        return {"kwargs": {"sigma0": 0.5}}

    def _ask(self) -> np.ndarray:
        self._asked = list(self.es.ask())
        return np.asarray(self._asked, dtype=np.float32)

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        # Tell pycma the float64 arrays it sent: it recognises them (and forgets them) only by
        # their exact bytes; float32 copies would look like injected solutions and pile up.
        sent = {np.asarray(x, dtype=np.float32).tobytes(): x for x in self._asked}
        solutions = [sent.get(c.tobytes(), c.astype(np.float64)) for c in codes]
        self._asked = []
        try:
            with warnings.catch_warnings():
                # pycma's step-size check warns about float32 round-off of the samples we return.
                warnings.simplefilter("ignore", UserWarning)
                self.es.tell(solutions, (-scores).tolist())  # pycma minimises
        except Exception as err:  # pycma raises bare AssertionErrors and ValueErrors
            raise OptimizerError(f"pycma rejected the update: {err!r}") from err

    def _state_dict(self) -> dict[str, Any]:
        asked: np.ndarray | dict[str, Any] = np.asarray(self._asked, dtype=np.float64) if self._asked else {}
        return {"strategy": strategy_to_state(self.es), "randn": rng_state(self._randn.rng), "asked": asked}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        if "pycma" in state:
            raise OptimizerError("optimizer state holds a pickled pycma strategy (field 'pycma'), which latentopt "
                                 "no longer loads; start a new run")
        missing = sorted({"strategy", "randn", "asked"} - set(state))
        if missing:
            raise OptimizerError(f"optimizer state of cmaes lacks {', '.join(missing)}")
        asked = state["asked"]
        if isinstance(asked, np.ndarray):
            if asked.ndim != 2 or asked.shape[1] != self.dim or asked.dtype.kind != "f" or not np.isfinite(asked).all():
                raise OptimizerError(f"optimizer state asked must be finite float (n, {self.dim}) codes, "
                                     f"got {asked.dtype} {asked.shape}")
            pending = list(asked.astype(np.float64))
        elif asked == {}:
            pending = []
        else:
            raise OptimizerError(f"optimizer state asked must be an array of codes, got {type(asked).__name__}")
        randn, fresh = self._new_strategy()
        try:
            set_rng_state(randn.rng, state["randn"])
        except (KeyError, TypeError, ValueError) as err:
            raise OptimizerError(f"optimizer state randn is not a numpy bit-generator state: {err!r}") from err
        self.es = load_strategy_state(fresh, state["strategy"], pending)
        self._randn, self._asked = randn, pending

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    def provenance(self) -> dict[str, Any]:
        import cma

        return {**super().provenance(), "library": f"cma {cma.__version__}", "population_size": self.population_size,
                "mu": int(self.es.sp.weights.mu), "sigma0": self.sigma0, "init_mean": self.init_mean,
                "diagonal": self.diagonal, "options": self.options}


class RandomSearch(Optimizer):
    """Independent Gaussian samples around a fixed mean; the baseline every optimizer must beat.

    The first generation is the initial codes themselves; every later one is drawn afresh around
    their mean with a step size that never changes.

    Args:
        initial_codes: ``(population_size, d)``; their count is the population size, their mean the mean.
        seed: random seed.
        sigma0: standard deviation of the samples (default: that of the initial codes).
    """

    def __init__(
        self, initial_codes: np.ndarray, *, seed: int = 0, sigma0: float | None = None, nan_policy: str = "worst"
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy)
        codes = np.asarray(initial_codes, dtype=np.float32)
        self.population_size = int(codes.shape[0])
        self.mean = codes.mean(0)
        if sigma0 is not None:
            finite_number(sigma0, "optimizer.sigma0", minimum=0.0)
        self.sigma0 = float(sigma0) if sigma0 is not None else float(codes.std()) or 1.0
        self._first: np.ndarray | None = codes.copy()

    @property
    def sigma(self) -> float:
        """Current step size: ``sigma0``, which random search never adapts."""
        return self.sigma0

    def _ask(self) -> np.ndarray:
        if self._first is not None:
            return self._first
        noise = self.rng.standard_normal((self.population_size, self.dim))
        return (self.mean + self.sigma0 * noise).astype(np.float32)

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        self._first = None  # the best code is tracked by the base class

    def _state_dict(self) -> dict[str, Any]:
        return {"first": self._first if self._first is not None else {}}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        first = state.get("first")
        self._first = np.asarray(first, np.float32) if isinstance(first, np.ndarray) else None

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "population_size": self.population_size, "sigma0": self.sigma0}


@hookimpl
def latentopt_register_optimizers(register: Any) -> None:
    register("ga", GeneticAlgorithm)
    register("cmaes", PycmaES)
    register("random", RandomSearch)
