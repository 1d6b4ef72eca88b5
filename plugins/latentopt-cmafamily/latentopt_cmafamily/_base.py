"""Shared pieces of the CMA-family optimizers: recombination weights, best tracking, settings.

Every optimizer of this plugin derives its update from the codes it is told (not from private copies
of what it asked), so codes injected by the experiment, or rows removed by the ``"drop"`` NaN policy,
are handled the same way, and a state round trip is exact.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, finite_number, integer
from latentopt.optimizer import Optimizer, initial_mean

__all__ = ["FamilyOptimizer", "as_array", "check_flag", "effective_mu", "initial_mean", "ranked_parents",
           "recombination_weights", "without_rows_at"]


def recombination_weights(mu: int) -> np.ndarray:
    """Log-rank weights of the ``mu`` best codes, best first, summing to 1.

    ``w_i ∝ ln(mu + 1/2) − ln(i)`` (Hansen & Ostermeier 2001; the weights of Wang & Ponce 2022).

    Args:
        mu: number of parents, >= 1.

    Returns:
        ``(mu,)`` float64, decreasing, positive, sum 1.
    """
    raw = math.log(mu + 0.5) - np.log(np.arange(1, mu + 1, dtype=np.float64))
    return raw / raw.sum()


def effective_mu(weights: np.ndarray) -> float:
    """Variance-effective selection mass ``(Σ w)² / Σ w²`` of recombination weights."""
    return float(weights.sum() ** 2 / np.sum(weights**2))


def ranked_parents(scores: np.ndarray, mu: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the best ``min(mu, n)`` scores (highest first) and their weights.

    Ties keep the order in which codes were told (stable sort), so updates are deterministic.

    Args:
        scores: ``(n,)`` finite, higher is better.
        mu: wanted number of parents.

    Returns:
        ``(order, weights)``: ``(m,)`` int indices into ``scores`` and ``(m,)`` weights summing to 1.
    """
    order = np.argsort(-scores, kind="stable")[: min(mu, scores.shape[0])]
    return order, recombination_weights(order.shape[0])


class FamilyOptimizer(Optimizer):
    """An :class:`~latentopt.optimizer.Optimizer` that tracks the best code and its population size.

    Subclasses implement ``_propose(n)``, ``_update(codes, scores)`` and the ``_family_state`` pair.

    Args:
        initial_codes: ``(n, d)`` float32; ``n`` is the default population size.
        seed: seed of ``self.rng``, the only source of randomness.
        nan_policy: ``"worst"`` or ``"drop"``.
        population_size: codes per generation (λ); default ``n`` (the CLI draws ``population_size``
            initial codes, so there the two agree).
    """

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        nan_policy: str = "worst",
        population_size: int | None = None,
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy)
        size = population_size if population_size is not None else np.shape(initial_codes)[0]
        self.population_size = int(size)
        if self.population_size < 2:
            raise ConfigError(f"optimizer.population_size must be >= 2 for {type(self).__name__}, "
                              f"got {self.population_size}")

    def _ask(self) -> np.ndarray:
        return self._propose(self.population_size)

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        self._update(codes.astype(np.float64), scores)

    def _state_dict(self) -> dict[str, Any]:
        return {"family": self._family_state()}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_family_state(state["family"])

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "population_size": self.population_size, "seed": self.seed}

    @abstractmethod
    def _propose(self, n: int) -> np.ndarray:
        """``n`` new codes ``(n, d)`` float64, drawn with ``self.rng``."""

    @abstractmethod
    def _update(self, codes: np.ndarray, scores: np.ndarray) -> None:
        """Update from ``(m, d)`` float64 codes and ``(m,)`` finite scores (m <= population_size)."""

    @abstractmethod
    def _family_state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_family_state(self, state: dict[str, Any]) -> None: ...


STEP_SCHEDULES = ("csa", "exp")
"""Step-size rules of the Euclidean CMA-ES variants: cumulative adaptation, or a geometric decay."""
DEFAULT_SCHEDULE_GENERATIONS = 75
"""Length of a decay schedule when the run's length is never told (the paper's 75 generations)."""


def geometric_decay(start: float, end_ratio: float, step: int, generations: int) -> float:
    """``start · end_ratio^(t/(T−1))`` at ``t = min(step, T − 1)``, ``T = generations``: the schedule
    passes through ``start`` at step 0 and ``start · end_ratio`` at step ``T − 1``, then holds."""
    t = min(step, generations - 1) / max(generations - 1, 1)
    return start * end_ratio**t


def mean_norm(codes: np.ndarray) -> float:
    """Mean Euclidean norm of the rows of ``codes`` (the initial codes' scale for σ₀ and the sphere's radius)."""
    return float(np.linalg.norm(np.asarray(codes, dtype=np.float64), axis=1).mean())


def initial_step(sigma0: float | None, factor: float, initial_codes: np.ndarray) -> float:
    """σ₀ checked: a number as given, or None: ``factor`` × the initial codes' scale (mean norm / √d).

    Raises a one-line ConfigError naming ``optimizer.sigma0`` or ``optimizer.sigma0_factor``.
    """
    finite_number(factor, "optimizer.sigma0_factor", minimum=0.0)
    if sigma0 is None:
        sigma0 = float(factor) * mean_norm(initial_codes) / math.sqrt(np.shape(initial_codes)[1])
        if sigma0 <= 0:
            raise ConfigError("optimizer.sigma0: the initial codes have norm 0, so sigma0_factor x their "
                              "scale is 0; give optimizer.sigma0")
    finite_number(sigma0, "optimizer.sigma0", minimum=0.0)
    return float(sigma0)


def check_flag(value: Any, key: str) -> bool:
    """A boolean setting, or a one-line ConfigError naming ``key``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def average_count(value: Any, show_centre: bool, population: int) -> int:
    """``average_generations`` checked: a count >= 0 that needs ``show_centre`` and room for two shown codes."""
    count = integer(value, "optimizer.average_generations", minimum=0)
    if count and not show_centre:
        raise ConfigError("optimizer.average_generations needs optimizer.show_centre=true (the average is shown "
                          "beside the centre)")
    if count and population < 3:
        raise ConfigError("optimizer.average_generations needs optimizer.population_size >= 3")
    return int(count)


def with_recent(recent: np.ndarray, point: np.ndarray, count: int) -> np.ndarray:
    """The window of the last ``count`` points ``(k, d)``, oldest first, with ``point`` ``(d,)`` added."""
    return np.concatenate([recent, point[None]])[-count:]


def recent_from_state(state: dict[str, Any], count: int, dim: int) -> np.ndarray:
    """The saved window of the last ``count`` points as ``(k, dim)`` (empty when off or not saved)."""
    if not count or "recent" not in state:
        return np.zeros((0, dim))
    return as_array(state["recent"]).reshape(-1, dim)[-count:]


def without_rows_at(codes: np.ndarray, scores: np.ndarray, point: np.ndarray, *,
                    within_angle: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The told rows other than those at a shown point (a mean or a centre), so that injected or dropped
    rows do not matter; all rows if nothing else would be left.

    Args:
        codes, scores: the told ``(n, d)`` codes and ``(n,)`` scores.
        point: ``(d,)`` or ``(k, d)``: the shown point(s).
        within_angle: None: a row is at a point within 1e-4 of the rows' median distance from it, or
            1e-6 of its norm (float32 rounding). A number (radians): a row is at a point when their
            directions are within this angle (codes on a sphere).
    """
    points = np.atleast_2d(point)
    if within_angle is None:
        at = np.zeros(codes.shape[0], dtype=bool)
        for one in points:
            distances = np.linalg.norm(codes - one, axis=1)
            tolerance = max(1e-4 * float(np.median(distances)), 1e-6 * float(np.linalg.norm(one)), 1e-300)
            at |= distances <= tolerance
    else:
        units = codes / np.maximum(np.linalg.norm(codes, axis=1), 1e-300)[:, None]
        directions = points / np.maximum(np.linalg.norm(points, axis=1), 1e-300)[:, None]
        at = np.any(units @ directions.T > math.cos(within_angle), axis=1)
    keep = ~at
    return (codes[keep], scores[keep]) if keep.any() else (codes, scores)


def as_array(value: Any, dtype: type = np.float64) -> np.ndarray:
    """A private copy of a saved array (``np.load`` results are read-only views)."""
    return np.array(value, dtype=dtype, copy=True)
