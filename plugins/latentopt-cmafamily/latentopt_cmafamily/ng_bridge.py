"""Bridge to any optimizer nevergrad registers, by name (``ng_name=DiagonalCMA``).

Each generation asks nevergrad for λ candidates (``num_workers = λ``) and then tells λ scores, with
the sign flipped here and nowhere else (nevergrad minimises).

Three nevergrad habits are made loud instead of silent:

* its pycma-based optimizers catch ``RuntimeError``/``AssertionError`` raised by pycma's ``tell``
  and carry on with a covariance that never updates; the bridge wraps pycma's ``tell`` and raises
  :class:`~latentopt.optimizer.OptimizerError` with the original message;
* ``CMA`` may resolve (for d = 4096, budget 3000, 40 workers) to an elitist diagonal pycma with TPA
  step-size control and population 70, whose second ``ask`` before a ``tell`` raises "Mean shift
  samples are expected but missing"; the bridge names the resolved optimizer and the remedy;
* meta-optimizers (``NGOpt``, ``CMA``) pick a sub-optimizer from the dimension, budget and
  workers; the bridge records which one (``provenance()["resolved"]``).

Resumability: nevergrad optimizers cannot be saved without pickle, so the state is the seed and the
history of scores told per generation; loading rebuilds the optimizer with the same seed and replays
the history (asks λ, tells the same scores). Each replayed generation's codes are checked against a
SHA-256 digest of the codes asked in the original run, so a replay that diverges (a nevergrad version
change, a non-deterministic optimizer) raises instead of resuming on a different trajectory. Loading
costs one ask+tell per past generation.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, finite_number
from latentopt.optimizer import Optimizer, OptimizerError
from latentopt_cmafamily._base import initial_mean

_TPA_HINT = "Mean shift samples are expected but missing"


def _population_hint(population: int) -> str:
    return (
        f" — the resolved pycma population differs from latentopt's ({population} asked, then told), "
        "so pycma is asked again before its tell; use ng_name=DiagonalCMA (population = workers) "
        "or set population_size to the resolved popsize"
    )


def _digest(codes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes, dtype=np.float32).tobytes()).hexdigest()


class NevergradOptimizer(Optimizer):
    """Any registered nevergrad optimizer, driven in batches of the population size.

    Args:
        initial_codes: ``(n, d)`` float32; ``n`` is the default population size.
        seed: seeds the parametrization's random state (all nevergrad randomness flows from it).
        nan_policy: ``"worst"`` or ``"drop"`` (dropped candidates are never told to nevergrad).
        ng_name: a key of ``nevergrad.optimizers.registry``.
        population_size: λ asked per generation and ``num_workers``; default ``n``.
        budget: total evaluations announced to nevergrad (meta-optimizers choose by it); None for none.
        sigma0: initial mutation scale of the ``ng.p.Array`` parametrization.
        init_mean: ``"zero"`` or ``"codes"``: the parametrization's initial value.
    """

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        nan_policy: str = "worst",
        ng_name: str = "DiagonalCMA",
        population_size: int | None = None,
        budget: int | None = None,
        sigma0: float = 3.0,
        init_mean: str = "zero",
    ) -> None:
        import nevergrad as ng

        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy)
        if ng_name not in ng.optimizers.registry:
            close = [k for k in ng.optimizers.registry if k.lower() == ng_name.lower()]
            raise ConfigError(
                f"nevergrad has no optimizer {ng_name!r}" + (f"; did you mean {close[0]}?" if close else "")
            )
        self.ng_name, self.ng_version = ng_name, ng.__version__
        self.population_size = int(population_size or np.shape(initial_codes)[0])
        self.budget, self.init_mean = budget, init_mean
        self.sigma0 = finite_number(sigma0, "optimizer.sigma0", minimum=0.0)
        self._start = initial_mean(np.asarray(initial_codes), init_mean)
        self._history_scores: list[np.ndarray] = []
        self._history_digests: list[str] = []
        self._swallowed: list[BaseException] = []
        self._ng: Any = None
        self._candidates: list[Any] | None = None
        self._build()

    # ------------------------------------------------------------------ nevergrad plumbing
    def _build(self) -> None:
        import nevergrad as ng

        param = ng.p.Array(init=self._start.copy()).set_mutation(sigma=self.sigma0)
        param.random_state = np.random.RandomState(self.seed)
        self._ng = ng.optimizers.registry[self.ng_name](
            parametrization=param, budget=self.budget, num_workers=self.population_size
        )
        self._candidates = None
        try:
            getattr(self._ng, "optim", None)  # meta-optimizers select their sub-optimizer here
        except Exception as err:
            raise OptimizerError(
                f"nevergrad {self.ng_name} could not choose a sub-optimizer (budget={self.budget}, "
                f"d={self.dim}, workers={self.population_size}): {type(err).__name__}: {err}"
            ) from err

    def _tree(self) -> Iterator[Any]:
        """The nevergrad optimizer and the sub-optimizers it delegates to."""
        stack, seen = [self._ng], set()
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            stack.append(getattr(node, "_optim", None))
            stack.extend(getattr(node, "optims", None) or [])

    def resolved(self) -> str:
        """``"NGOpt -> DE"``-like chain of the optimizers actually at work."""
        parts = []
        for node in self._tree():
            config = getattr(getattr(node, "_config", None), "_config", None)
            # nevergrad builds pycma lazily at the first ask, but fixes its population at construction
            # (_popsize), so the record written before the first generation already names it
            es: Any = getattr(node, "_es", None)
            size = es.popsize if es is not None and hasattr(es, "popsize") else getattr(node, "_popsize", None)
            popsize = f"[pycma popsize {size}]" if isinstance(size, int) else ""
            parts.append(getattr(node, "name", type(node).__name__) + (f"{config}" if config else "") + popsize)
        return " -> ".join(parts)

    def _watch_pycma(self) -> None:
        """Wrap pycma's ``tell`` so errors nevergrad catches are recorded for :meth:`_tell`."""
        for node in self._tree():
            es = getattr(node, "_es", None)
            if es is None or getattr(es, "_latentopt_watched", False) or not hasattr(es, "tell"):
                continue
            original, swallowed = es.tell, self._swallowed

            def watched(
                *args: Any,
                _original: Any = original,
                _swallowed: list[BaseException] = swallowed,
                **kwargs: Any,
            ) -> Any:
                try:
                    return _original(*args, **kwargs)
                except BaseException as err:
                    _swallowed.append(err)
                    raise

            es.tell = watched
            es._latentopt_watched = True

    def _ng_ask(self) -> tuple[list[Any], np.ndarray]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                candidates = [self._ng.ask() for _ in range(self.population_size)]
        except Exception as err:
            hint = _population_hint(self.population_size) if _TPA_HINT in str(err) else ""
            raise OptimizerError(
                f"nevergrad {self.ng_name} (resolved: {self.resolved()}) failed in ask: "
                f"{type(err).__name__}: {err}{hint}"
            ) from err
        self._watch_pycma()
        codes = np.stack([np.asarray(c.value, dtype=np.float64).reshape(-1) for c in candidates])
        return candidates, codes

    def _ng_tell(self, scores: np.ndarray, told: np.ndarray) -> None:
        """Tell nevergrad ``-scores[i]`` for every candidate index ``i`` in ``told`` (ascending)."""
        assert self._candidates is not None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for index in told:
                    self._ng.tell(self._candidates[index], -float(scores[index]))
        except Exception as err:
            raise OptimizerError(f"nevergrad {self.ng_name} failed in tell: {type(err).__name__}: {err}") from err
        if self._swallowed:
            hidden = self._swallowed.pop()
            self._swallowed.clear()
            raise OptimizerError(
                f"nevergrad {self.ng_name} (resolved: {self.resolved()}) hid an error from pycma's tell "
                f"and would have continued without updating: {type(hidden).__name__}: {hidden}"
                f"{_population_hint(self.population_size)}"
            ) from hidden

    # ------------------------------------------------------------------ Optimizer
    def _ask(self) -> np.ndarray:
        self._candidates, codes = self._ng_ask()
        self._history_scores.append(np.full(self.population_size, np.nan))
        self._history_digests.append(_digest(codes))
        return codes

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        if self._candidates is None:
            raise OptimizerError("NevergradOptimizer.tell: no asked candidates are waiting")
        asked = np.stack([np.asarray(c.value, dtype=np.float32).reshape(-1) for c in self._candidates])
        rows: dict[bytes, list[int]] = {}
        for index, row in enumerate(asked):
            rows.setdefault(row.tobytes(), []).append(index)
        full = np.full(self.population_size, np.nan)
        for code, score in zip(np.asarray(codes, dtype=np.float32), scores, strict=True):
            matches = rows.get(code.tobytes())
            if not matches:
                raise OptimizerError("NevergradOptimizer.tell: a told code is not one of the codes asked")
            full[matches.pop(0)] = score
        self._ng_tell(full, np.flatnonzero(~np.isnan(full)))
        self._history_scores[-1] = full
        self._candidates = None

    def _state_dict(self) -> dict[str, Any]:
        return {
            "ng_name": self.ng_name,
            "ng_version": self.ng_version,
            "seed": self.seed,
            "scores": np.array(self._history_scores).reshape(-1, self.population_size),
            "digests": np.array(self._history_digests, dtype="<U64"),
        }

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        if str(state["ng_name"]) != self.ng_name:
            raise OptimizerError(f"state is for nevergrad {state['ng_name']}, not {self.ng_name}")
        scores = np.asarray(state["scores"], dtype=np.float64).reshape(-1, self.population_size)
        digests = [str(d) for d in np.asarray(state["digests"]).reshape(-1)]
        self.seed = int(state["seed"])  # replay with the saved run's seed, whatever this one was built with
        self._build()
        self._history_scores, self._history_digests = [], []
        for generation, (told, digest) in enumerate(zip(scores, digests, strict=True)):
            self._candidates, codes = self._ng_ask()
            if _digest(codes) != digest:
                raise OptimizerError(
                    f"replaying nevergrad {self.ng_name} diverged at generation {generation} (saved with "
                    f"nevergrad {state['ng_version']}, running {self.ng_version}): cannot resume exactly"
                )
            self._history_scores.append(told.copy())
            self._history_digests.append(digest)
            if not np.isnan(told).all():
                self._ng_tell(told, np.flatnonzero(~np.isnan(told)))
                self._candidates = None

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "ng_name": self.ng_name,
            "nevergrad": self.ng_version,
            "resolved": self.resolved(),
            "population_size": self.population_size,
            "budget": self.budget,
            "sigma0": self.sigma0,
            "init_mean": self.init_mean,
            "resumable_by": "deterministic replay of the told scores",
        }
