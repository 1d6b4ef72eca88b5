"""The Optimizer interface: ask for codes, tell their scores (higher is better).

The public :meth:`Optimizer.ask` and :meth:`Optimizer.tell` validate shapes, apply the NaN policy and
count generations and evaluations; subclasses implement ``_ask`` / ``_tell`` / ``_state_dict`` /
``_load_state_dict`` (the template-method pattern of nevergrad's optimizer base).

NaN scores mean "this image was not shown" (a fixation break, an aborted trial). The policy is stated
per optimizer with ``nan_policy``:

* ``"worst"`` (default): NaN scores are replaced by the lowest finite score of the generation, so the
  code is treated as the least fit. The count of replaced scores is kept in ``nan_scores``.
* ``"drop"``: NaN-scored codes are removed before the update; the update uses the others.
* ``"carry"``: (genetic algorithms, XDream's rule) the code goes into the next generation unchanged.

A generation whose scores are all NaN leaves the state untouched: the next ``ask`` proposes again.

White-box optimizers (``needs_white_box = True``, e.g. gradient ascent on simulated neurons) also get
a differentiable model of the loop, ``codes (n, d) tensor -> noise-free scores (n,) tensor``, through
:meth:`Optimizer.attach_white_box`; the evolution loop attaches it when generator and subject are
differentiable and refuses to start otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from latentopt.checks import ConfigError
from latentopt.errors import LatentoptError

NAN_POLICIES = ("worst", "drop", "carry")
INIT_MEANS = ("codes", "zero")
"""Values of every optimizer's ``init_mean`` setting: the mean of the initial codes, or the origin."""

WhiteBox = Callable[[Any], Any]
"""``codes`` (n, d) float32 torch tensor -> noise-free scores (n,) torch tensor, differentiable."""


class OptimizerError(LatentoptError, RuntimeError):
    """The optimizer cannot go on (misuse of ask/tell, or a broken library underneath)."""


class Optimizer(ABC):
    """Base class of every optimizer.

    Args:
        initial_codes: ``(n, d)`` float32 starting codes drawn by the generator (``n`` is the
            config's ``population_size``); optimizers with an ``init_mean`` setting start from
            their mean (``codes``) or the origin (``zero``), see :func:`initial_mean`.
        seed: seed of the optimizer's own random stream.
        nan_policy: how NaN scores are handled, see the module docstring.

    Attributes:
        dim: code dimension ``d``.
        generation: completed ``tell`` calls.
        evaluations: scores told (NaN ones included).
        nan_scores: NaN scores received so far.
    """

    supported_nan_policies: tuple[str, ...] = ("worst", "drop")
    needs_white_box: bool = False

    def __init__(self, initial_codes: np.ndarray, *, seed: int = 0, nan_policy: str = "worst") -> None:
        codes = np.asarray(initial_codes, dtype=np.float32)
        if codes.ndim != 2 or codes.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: initial_codes must be (n, d), got {codes.shape}")
        if nan_policy not in self.supported_nan_policies:
            raise ConfigError(
                f"optimizer.nan_policy: {type(self).__name__} supports {', '.join(self.supported_nan_policies)}, "
                f"got {nan_policy!r}"
            )
        self.dim = int(codes.shape[1])
        self.nan_policy = nan_policy
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.generation = 0
        self.evaluations = 0
        self.nan_scores = 0
        self._pending: np.ndarray | None = None
        self._best_code: np.ndarray | None = None
        self._best_score = float("nan")
        self.white_box: WhiteBox | None = None

    # ------------------------------------------------------------------ public API
    def ask(self) -> np.ndarray:
        """Propose the next generation: ``(n, d)`` float32 codes."""
        codes = np.asarray(self._ask(), dtype=np.float32)
        if codes.ndim != 2 or codes.shape[1] != self.dim:
            raise OptimizerError(f"{type(self).__name__}._ask returned shape {codes.shape}")
        if not np.isfinite(codes).all():
            raise OptimizerError(f"{type(self).__name__} proposed non-finite codes")
        self._pending = codes
        return codes.copy()

    def tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        """Report the scores of the codes from the last :meth:`ask`.

        Args:
            codes: ``(n, d)`` the codes that were asked (rows in the same order).
            scores: ``(n,)`` higher is better; NaN for images that were not shown.
        """
        codes = np.asarray(codes, dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self._pending is None:
            raise OptimizerError(f"{type(self).__name__}.tell called without a pending ask")
        if codes.shape != self._pending.shape:
            raise OptimizerError(
                f"{type(self).__name__}.tell: codes of shape {codes.shape}, "
                f"asked {self._pending.shape}"
            )
        if scores.shape[0] != codes.shape[0]:
            raise OptimizerError(
                f"{type(self).__name__}.tell: {scores.shape[0]} scores for {codes.shape[0]} codes"
            )
        if np.isinf(scores).any():
            raise OptimizerError(f"{type(self).__name__}.tell: infinite score")
        nan = np.isnan(scores)
        self.evaluations += int(scores.shape[0])
        self.nan_scores += int(nan.sum())
        self._pending = None
        if nan.all():
            return
        top = int(np.nanargmax(scores))
        if self._best_code is None or scores[top] > self._best_score:
            self._best_code, self._best_score = codes[top].copy(), float(scores[top])
        if nan.any():
            if self.nan_policy == "worst":
                scores = np.where(nan, scores[~nan].min(), scores)
            elif self.nan_policy == "drop":
                codes, scores = codes[~nan], scores[~nan]
            # "carry": the subclass sees the NaN scores and keeps those codes itself.
        self._tell(codes, scores)
        self.generation += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: nested dict of numpy arrays, numbers, strings."""
        return {
            "generation": self.generation,
            "evaluations": self.evaluations,
            "nan_scores": self.nan_scores,
            "rng": rng_state(self.rng),
            "pending": self._pending,
            "best": {} if self._best_code is None else {"code": self._best_code, "score": self._best_score},
            "impl": self._state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`.

        Every field is checked before anything changes; a missing or malformed one (a damaged or foreign
        record) raises :class:`OptimizerError` naming it, and the optimizer is left as it was.
        """
        try:
            counts = {key: _count(state[key], key) for key in ("generation", "evaluations", "nan_scores")}
            rng = np.random.default_rng()
            set_rng_state(rng, state["rng"])
            pending = state.get("pending")
            pending = None if pending is None else _codes(pending, "pending", self.dim)
            best = state.get("best") or {}
            best_code = _codes(best["code"], "best.code", self.dim, ndim=1).copy() if best else None
            best_score = float(best["score"]) if best else float("nan")
            impl = state["impl"]
        except KeyError as err:
            raise OptimizerError(f"optimizer state has no field {err}") from err
        except (TypeError, ValueError, AttributeError) as err:
            raise OptimizerError(f"optimizer state is malformed: {' '.join(str(err).split())}") from err
        try:
            self._load_state_dict(impl)  # first: a refused implementation state leaves the counters as they were
        except KeyError as err:
            raise OptimizerError(f"optimizer state of {type(self).__name__} has no field {err}") from err
        except (TypeError, ValueError) as err:
            raise OptimizerError(f"optimizer state of {type(self).__name__} is malformed: "
                                 f"{' '.join(str(err).split())}") from err
        self.generation, self.evaluations, self.nan_scores = (counts["generation"], counts["evaluations"],
                                                             counts["nan_scores"])
        self.rng.bit_generator.state = rng.bit_generator.state
        self._pending, self._best_code, self._best_score = pending, best_code, best_score

    def provenance(self) -> dict[str, Any]:
        """What a run records about this optimizer: ``{"class": <class name>, <resolved settings>...}``.

        JSON-serialisable; recorded with every run and benchmark. Subclasses extend
        ``super().provenance()`` so ``"class"`` comes first.
        """
        return {"class": type(self).__name__, "dim": self.dim, "nan_policy": self.nan_policy}

    def plan_generations(self, generations: int) -> None:
        """A hint before the first ask: the run means to ask about ``generations`` generations
        (``experiment.generations``, or ``experiment.budget`` / population size). Ignored by default;
        an optimizer whose schedule follows the run's length (SphereCMA with ``schedule_generations:
        null``) takes it. Not called on resume: such an optimizer keeps the length in its state."""

    def attach_white_box(self, white_box: WhiteBox) -> None:
        """Give a white-box optimizer its differentiable model of the loop (see the module docstring).

        Not part of the state: whoever builds the optimizer attaches it again after a resume.
        """
        if not self.needs_white_box:
            raise OptimizerError(f"{type(self).__name__} does not use a white-box model")
        self.white_box = white_box

    @property
    def best(self) -> tuple[np.ndarray, float] | None:
        """Best code told so far and its score (None before the first finite score)."""
        return None if self._best_code is None else (self._best_code.copy(), self._best_score)

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def _ask(self) -> np.ndarray: ...

    @abstractmethod
    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        """Update from scores after the NaN policy (finite, except under ``"carry"``)."""

    @abstractmethod
    def _state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_state_dict(self, state: dict[str, Any]) -> None: ...


def initial_mean(initial_codes: np.ndarray, init_mean: str) -> np.ndarray:
    """Starting mean ``(d,)`` float64 from ``(n, d)`` initial codes: ``"codes"`` (their mean) or ``"zero"``.

    Raises:
        ConfigError: ``init_mean`` is neither (one line naming ``optimizer.init_mean``).
    """
    if init_mean == "codes":
        return np.asarray(initial_codes, dtype=np.float64).mean(0)
    if init_mean == "zero":
        return np.zeros(np.shape(initial_codes)[1])
    raise ConfigError(f"optimizer.init_mean must be one of {', '.join(INIT_MEANS)}, got {init_mean!r}")


def _count(value: Any, key: str) -> int:
    """A non-negative integer field of a recorded state."""
    number = int(value)
    if isinstance(value, bool) or number != value or number < 0:
        raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
    return number


def _codes(value: Any, key: str, dim: int, *, ndim: int = 2) -> np.ndarray:
    """Recorded codes ``(n, dim)`` (or one code ``(dim,)`` with ``ndim=1``) as float32; refuses other shapes."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu" or array.ndim != ndim or array.shape[-1] != dim:
        raise ValueError(f"{key} must be numeric codes of dimension {dim}, got {array.dtype} {array.shape}")
    return array.astype(np.float32)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """numpy Generator state as plain data (128-bit PCG64 integers become strings)."""
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": str(state["state"]["state"]),
        "inc": str(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def set_rng_state(rng: np.random.Generator, data: dict[str, Any]) -> None:
    rng.bit_generator.state = {
        "bit_generator": str(data["bit_generator"]),
        "state": {"state": int(str(data["state"])), "inc": int(str(data["inc"]))},
        "has_uint32": int(data["has_uint32"]),
        "uinteger": int(data["uinteger"]),
    }


