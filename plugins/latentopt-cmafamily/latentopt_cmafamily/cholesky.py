"""Cholesky CMA-ES (Wang & Ponce, GECCO 2022), in O(λ·r·d) time and O(r·d) memory.

The covariance is ``C = Aᵀ A`` (row-vector convention: a sample is ``m + σ · z A``). Every
``a_update_every`` generations, ``A`` and ``A⁻¹`` receive the rank-one update of the evolution path
``p_c`` directly — no eigendecomposition (their ``CholeskyCMAES``; Krause, Arbonès & Igel 2016):

    v   = p_c A⁻¹,   q = sqrt(1 + c₁ ‖v‖² / (1 − c₁))
    A   ← sqrt(1 − c₁) · (A + (q − 1)/‖v‖² · vᵀ p_c)
    A⁻¹ ← (A⁻¹ − (1 − 1/q)/‖v‖² · (A⁻¹ vᵀ) v) / sqrt(1 − c₁)

Since ``A`` starts at the identity and only rank-one terms are ever added, both factors are kept
exactly as ``a·I + Σ_j l_jᵀ r_j`` (:class:`LowRankFactor`): at d = 4096 a generation costs a few
milliseconds instead of a dense 4096² product, and the state is kilobytes, not 2 × 134 MB. The
representation outgrows a dense matrix only after ``a_update_every · d / 3`` generations
(13,653 at d = 4096, far beyond a recording session).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, finite_number, integer, parent_count
from latentopt_cmafamily._base import (
    DEFAULT_SCHEDULE_GENERATIONS,
    STEP_SCHEDULES,
    FamilyOptimizer,
    as_array,
    average_count,
    check_flag,
    effective_mu,
    geometric_decay,
    initial_mean,
    initial_step,
    ranked_parents,
    recent_from_state,
    recombination_weights,
    with_recent,
    without_rows_at,
)


class LowRankFactor:
    """A ``k × k`` matrix ``M = a·I + Σ_j outer(left_j, right_j)`` kept in factored form.

    Args:
        dim: ``k``.
    """

    def __init__(self, dim: int) -> None:
        self.scale = 1.0
        self.left = np.zeros((0, dim))
        self.right = np.zeros((0, dim))

    @property
    def rank(self) -> int:
        """Number of rank-one terms."""
        return int(self.left.shape[0])

    def rows_times(self, rows: np.ndarray) -> np.ndarray:
        """``rows @ M`` for row vectors ``(n, k)`` -> ``(n, k)``."""
        out = self.scale * rows
        if self.rank:
            out = out + (rows @ self.left.T) @ self.right
        return out

    def times_column(self, vector: np.ndarray) -> np.ndarray:
        """``M @ vector`` for a column vector ``(k,)`` -> ``(k,)``."""
        out = self.scale * vector
        if self.rank:
            out = out + self.left.T @ (self.right @ vector)
        return out

    def rescale(self, factor: float) -> None:
        """``M ← factor · M``."""
        self.scale *= factor
        self.left *= factor

    def add_outer(self, left: np.ndarray, right: np.ndarray) -> None:
        """``M ← M + outer(left, right)``."""
        self.left = np.vstack([self.left, left[None]])
        self.right = np.vstack([self.right, right[None]])

    def dense(self) -> np.ndarray:
        """``(k, k)`` dense matrix (tests and small problems only)."""
        return self.scale * np.eye(self.left.shape[1]) + self.left.T @ self.right

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "left": self.left.copy(), "right": self.right.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.left = as_array(state["left"])
        self.right = as_array(state["right"])


class CholeskyCore:
    """Cholesky CMA-ES on points of ``R^k``; no I/O, no randomness of its own.

    Strategy parameters follow Wang & Ponce's ``CholeskyCMAES``: ``c_c = 4/(k+4)``,
    ``c_σ = sqrt(μ_eff)/(sqrt(μ_eff)+sqrt(k))``, ``c₁ = 2/(k+√2)²``,
    ``d_σ = 1 + c_σ + 2·max(0, sqrt((μ_eff−1)/(k+1)) − 1)``.

    Args:
        mean: ``(k,)`` starting centre.
        sigma0: initial step size σ₀.
        mu: number of parents.
        a_update_every: generations between rank-one updates of ``A`` (10 in the paper).
        step_schedule: ``"csa"`` (cumulative step-size adaptation, the paper) or ``"exp"``: σ decays
            geometrically, ``σ_t = σ₀ r^(t/(T−1))`` with ``r = sigma_end_ratio`` over
            ``T = schedule_generations`` generations, and stays at ``σ₀ r`` after them.
    """

    def __init__(self, mean: np.ndarray, *, sigma0: float, mu: int, a_update_every: int,
                 step_schedule: str = "csa", sigma_end_ratio: float = 7.33 / 50.0,
                 schedule_generations: int = DEFAULT_SCHEDULE_GENERATIONS) -> None:
        k = int(mean.shape[0])
        finite_number(sigma0, "optimizer.sigma0", minimum=0.0)
        if a_update_every < 1:
            raise ConfigError(f"a_update_every must be >= 1, got {a_update_every}")
        if step_schedule not in STEP_SCHEDULES:
            raise ConfigError(f"optimizer.step_schedule must be one of {STEP_SCHEDULES}, got {step_schedule!r}")
        finite_number(sigma_end_ratio, "optimizer.sigma_end_ratio", minimum=0.0)
        if sigma_end_ratio <= 0:
            raise ConfigError(f"optimizer.sigma_end_ratio must be > 0, got {sigma_end_ratio}")
        self.step_schedule, self.sigma_end_ratio = step_schedule, float(sigma_end_ratio)
        self.schedule_generations = integer(schedule_generations, "optimizer.schedule_generations", minimum=1)
        self.sigma0 = float(sigma0)
        self.dim, self.mu, self.a_update_every = k, int(mu), int(a_update_every)
        mueff = effective_mu(recombination_weights(self.mu))
        self.cc = 4.0 / (k + 4.0)
        self.cs = math.sqrt(mueff) / (math.sqrt(mueff) + math.sqrt(k))
        self.c1 = 2.0 / (k + math.sqrt(2.0)) ** 2
        self.damps = 1.0 + self.cs + 2.0 * max(0.0, math.sqrt((mueff - 1.0) / (k + 1.0)) - 1.0)
        self.chi_n = math.sqrt(k) * (1.0 - 1.0 / (4.0 * k) + 1.0 / (21.0 * k**2))
        self.mean = np.asarray(mean, dtype=np.float64).copy()
        self.sigma = float(sigma0)
        self.ps = np.zeros(k)
        self.pc = np.zeros(k)
        self.factor = LowRankFactor(k)
        self.inverse = LowRankFactor(k)
        self.generation = 0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` points ``m + σ · z A``, ``z ~ N(0, I)``: ``(n, k)`` float64."""
        z = rng.standard_normal((n, self.dim))
        return self.mean + self.sigma * self.factor.rows_times(z)

    def update(self, points: np.ndarray, scores: np.ndarray) -> None:
        """One generation: ``(m, k)`` points and ``(m,)`` scores, higher is better."""
        order, weights = ranked_parents(scores, self.mu)
        mueff = effective_mu(weights)
        parents = points[order]
        z = self.inverse.rows_times((parents - self.mean) / self.sigma)
        zw = weights @ z
        self.mean = weights @ parents
        self.ps = (1 - self.cs) * self.ps + math.sqrt(self.cs * (2 - self.cs) * mueff) * zw
        self.pc = (1 - self.cc) * self.pc + math.sqrt(self.cc * (2 - self.cc) * mueff) * (
            self.factor.rows_times(zw[None])[0]
        )
        self.generation += 1
        if self.step_schedule == "exp":
            self.sigma = geometric_decay(self.sigma0, self.sigma_end_ratio, self.generation, self.schedule_generations)
        else:
            self.sigma *= math.exp((self.cs / self.damps) * (np.linalg.norm(self.ps) / self.chi_n - 1.0))
        if self.generation % self.a_update_every == 0:
            self._rank_one_update()

    def _rank_one_update(self) -> None:
        v = self.inverse.rows_times(self.pc[None])[0]
        norm_v = float(v @ v)
        if norm_v < 1e-300:
            return
        shrink = math.sqrt(1.0 - self.c1)
        q = math.sqrt(1.0 + norm_v * self.c1 / (1.0 - self.c1))
        inverse_v = self.inverse.times_column(v)
        self.factor.rescale(shrink)
        self.factor.add_outer(shrink * (q - 1.0) / norm_v * v, self.pc.copy())
        self.inverse.rescale(1.0 / shrink)
        self.inverse.add_outer(-(1.0 - 1.0 / q) / (norm_v * shrink) * inverse_v, v)

    def settings(self) -> dict[str, Any]:
        return {
            "mu": self.mu,
            "cc": self.cc,
            "cs": self.cs,
            "c1": self.c1,
            "damps": self.damps,
            "a_update_every": self.a_update_every,
            "step_schedule": self.step_schedule,
            **({"sigma_end_ratio": self.sigma_end_ratio, "schedule_generations": self.schedule_generations}
               if self.step_schedule == "exp" else {}),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.copy(),
            "sigma": self.sigma,
            "ps": self.ps.copy(),
            "pc": self.pc.copy(),
            "generation": self.generation,
            "schedule_generations": self.schedule_generations,
            "factor": self.factor.state_dict(),
            "inverse": self.inverse.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.ps, self.pc = as_array(state["mean"]), as_array(state["ps"]), as_array(state["pc"])
        self.sigma = float(state["sigma"])
        self.generation = int(state["generation"])
        if "schedule_generations" in state:  # states written before the schedule existed lack it
            self.schedule_generations = int(state["schedule_generations"])
        self.factor.load_state_dict(state["factor"])
        self.inverse.load_state_dict(state["inverse"])


class CholeskyCMA(FamilyOptimizer):
    """Cholesky CMA-ES of Wang & Ponce (GECCO 2022) on latent codes.

    Args:
        initial_codes: ``(n, d)`` float32; ``n`` is the default population size.
        seed: seed of the optimizer's random stream.
        nan_policy: ``"worst"`` or ``"drop"``.
        population_size: λ, default ``n`` (40 in the paper).
        mu: parents, default λ // 2 (20 in the paper).
        sigma0: initial step size (3 in the paper, for DeePSim fc6 codes); None: ``sigma0_factor``
            times the initial codes' scale (their mean norm / sqrt(d): 1 for fc6's N(0, 1) codes).
        sigma0_factor: see ``sigma0`` (3: the paper's σ₀ for fc6, matched to any generator's codes).
        init_mean: ``"zero"`` (the paper) or ``"codes"`` (mean of ``initial_codes``).
        a_update_every: generations between rank-one updates of the Cholesky factor (10).
        show_centre: show the mean as the first code of every generation; it is scored but not
            recombined (the update uses the λ − 1 samples).
        average_generations: with ``show_centre``, also show the average of the last K means as the
            second code, scored and not recombined (iterate averaging, as SphereCMA's; 0: off).
        step_schedule: ``"csa"`` (the paper's cumulative step-size adaptation) or ``"exp"`` (σ decays
            geometrically from σ₀ to ``sigma_end_ratio`` σ₀, see :class:`CholeskyCore`).
        sigma_end_ratio: σ at the last scheduled generation / σ₀ (``"exp"`` only; 0.1466 is
            SphereCMA's 50° -> 7.33°).
        schedule_generations: generations of the decay (``"exp"`` only); None: the run's planned
            generations (:meth:`plan_generations`), 75 if never told.
    """

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        nan_policy: str = "worst",
        population_size: int | None = None,
        mu: int | None = None,
        sigma0: float | None = 3.0,
        sigma0_factor: float = 3.0,
        init_mean: str = "zero",
        a_update_every: int = 10,
        show_centre: bool = False,
        average_generations: int = 0,
        step_schedule: str = "csa",
        sigma_end_ratio: float = 7.33 / 50.0,
        schedule_generations: int | None = None,
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy, population_size=population_size)
        self.schedule_from_run = schedule_generations is None
        self.show_centre = check_flag(show_centre, "optimizer.show_centre")
        self.average_generations = average_count(average_generations, self.show_centre, self.population_size)
        self.init_mean = init_mean
        sigma0 = initial_step(sigma0, sigma0_factor, initial_codes)
        self.sigma0, self.sigma0_factor = float(sigma0), float(sigma0_factor)
        self.core = CholeskyCore(
            self._to_points(initial_mean(np.asarray(initial_codes), init_mean)[None])[0],
            sigma0=sigma0,
            mu=parent_count(mu, self.population_size) or self.population_size // 2,
            a_update_every=a_update_every,
            step_schedule=step_schedule,
            sigma_end_ratio=sigma_end_ratio,
            schedule_generations=DEFAULT_SCHEDULE_GENERATIONS if schedule_generations is None else schedule_generations,
        )
        self.recent = np.zeros((0, self.core.mean.shape[0]))  # the last average_generations means, oldest first

    def _to_points(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``(n, d)`` -> the space the core searches ``(n, k)`` (identity here)."""
        return codes

    def _to_codes(self, points: np.ndarray) -> np.ndarray:
        """Points ``(n, k)`` -> codes ``(n, d)`` (identity here)."""
        return points

    def plan_generations(self, generations: int) -> None:
        """With ``step_schedule="exp"`` and ``schedule_generations=None``, σ decays over the run's
        ``generations``."""
        if self.schedule_from_run and self.core.generation == 0 and generations >= 1:
            self.core.schedule_generations = int(generations)

    @property
    def sigma(self) -> float:
        """Current step size."""
        return self.core.sigma

    def _propose(self, n: int) -> np.ndarray:
        codes = self._to_codes(self.core.sample(self.rng, n))
        if self.show_centre:
            codes[0] = self._mean_code()
        average = self._average_codes()
        codes[1:1 + average.shape[0]] = average
        return codes

    def _average_codes(self) -> np.ndarray:
        """``(1, d)``: the code at the average of the last ``average_generations`` means; ``(0, d)`` before."""
        if not self.recent.shape[0]:
            return np.zeros((0, self.dim))
        return self._to_codes(self.recent.mean(0)[None])

    def _mean_code(self) -> np.ndarray:
        return self._to_codes(self.core.mean[None])[0]

    def _update(self, codes: np.ndarray, scores: np.ndarray) -> None:
        if self.show_centre:
            shown = np.concatenate([self._mean_code()[None], self._average_codes()])
            codes, scores = without_rows_at(codes, scores, shown)
        self.core.update(self._to_points(codes), scores)
        if self.average_generations:
            self.recent = with_recent(self.recent, self.core.mean, self.average_generations)

    def _family_state(self) -> dict[str, Any]:
        return {**self.core.state_dict(), "recent": self.recent.copy()}

    def _load_family_state(self, state: dict[str, Any]) -> None:
        self.core.load_state_dict(state)
        self.recent = recent_from_state(state, self.average_generations, self.core.mean.shape[0])

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            **self.core.settings(),
            "sigma0": self.sigma0,
            "sigma0_factor": self.sigma0_factor,
            "init_mean": self.init_mean,
            "show_centre": self.show_centre,
            "average_generations": self.average_generations,
            "algorithm": "Cholesky CMA-ES (Wang & Ponce 2022)",
        }
