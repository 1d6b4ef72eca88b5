"""SphereCMA (Wang & Ponce, GECCO 2022): evolution on a sphere of fixed code norm.

Codes live on the sphere ``‖x‖ = R`` (R = 300: evolved DeePSim fc6 codes reach norms near 300). Each
generation draws tangent-plane Gaussians at the centre ``c`` and maps them onto the sphere with the
exponential map; the weighted mean of the best μ codes is projected onto the sphere and the centre
moves toward it by spherical interpolation with learning rate 1.5 (i.e. 50 % beyond it). The angular
step decays from 50° to 7.33° over 75 generations, then stays there:

* ``"exp"``: geometric interpolation ``θ_t = θ₀ (θ₁/θ₀)^(t/(T−1))`` (their ``logspace`` schedule);
* ``"inv"``: inverse-time decay through the same end points, ``1/θ_t = 1/θ₀ + (1/θ₁ − 1/θ₀) t/(T−1)``.
  (Their code's ``"inv"`` used fixed constants, ``15 + 1/(0.0017 t + 0.0146)`` degrees, 76° → 22°;
  here the configured end points are honoured.)

The angle of a sample from the centre is ``θ_t`` on average: tangent vectors are ``N(0, θ_t²/d · I)``
projected orthogonally to ``c``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, finite_number, parent_count
from latentopt_cmafamily._base import FamilyOptimizer, as_array, ranked_parents

SCHEDULES = ("exp", "inv")


def step_angle(generation: int, *, start_deg: float, end_deg: float, generations: int, schedule: str) -> float:
    """Angular step in radians at a generation (0-based) of the decay schedule."""
    t = min(generation, generations - 1) / max(generations - 1, 1)
    if schedule == "exp":
        degrees = start_deg * (end_deg / start_deg) ** t
    elif schedule == "inv":
        degrees = 1.0 / (1.0 / start_deg + (1.0 / end_deg - 1.0 / start_deg) * t)
    else:
        raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    return math.radians(degrees)


def slerp(start: np.ndarray, end: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation from ``start`` toward ``end`` (``(d,)``); ``t > 1`` extrapolates."""
    a, b = start / np.linalg.norm(start), end / np.linalg.norm(end)
    angle = math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    if angle < 1e-12:
        return a
    return (math.sin((1 - t) * angle) * a + math.sin(t * angle) * b) / math.sin(angle)


def exp_map(centre: np.ndarray, tangents: np.ndarray) -> np.ndarray:
    """Unit-sphere exponential map at unit ``centre`` ``(d,)`` of tangents ``(n, d)`` -> ``(n, d)``."""
    angles = np.linalg.norm(tangents, axis=1, keepdims=True)
    directions = tangents / np.maximum(angles, 1e-300)
    return np.cos(angles) * centre + np.sin(angles) * directions


class SphereCMA(FamilyOptimizer):
    """Evolution strategy on the sphere ``‖x‖ = sphere_norm`` with a decaying angular step.

    Args:
        initial_codes: ``(n, d)`` float32; ``n`` is the default population size; the direction of
            their mean is the first centre (a random direction if the mean is zero).
        seed: seed of the optimizer's random stream.
        nan_policy: ``"worst"`` or ``"drop"``.
        population_size: λ, default ``n``.
        mu: parents averaged (20 in the paper), default λ // 2.
        sphere_norm: norm of every code (300, DeePSim fc6); None: ``sphere_norm_factor`` times the
            mean norm of ``initial_codes`` (for generators whose codes live elsewhere).
        sphere_norm_factor: see ``sphere_norm`` (fc6's ratio is 300 / 64 ≈ 4.7: evolved codes reach
            norms near 300 from N(0, 1) starts of norm 64).
        lr: spherical interpolation rate of the centre toward the projected mean (1.5).
        step_start_deg, step_end_deg: angular step at the first and last scheduled generation.
        schedule_generations: generations over which the step decays (75).
        schedule: ``"exp"`` (default, best in the paper) or ``"inv"``.
    """

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        nan_policy: str = "worst",
        population_size: int | None = None,
        mu: int | None = None,
        sphere_norm: float | None = 300.0,
        sphere_norm_factor: float = 1.0,
        lr: float = 1.5,
        step_start_deg: float = 50.0,
        step_end_deg: float = 7.33,
        schedule_generations: int = 75,
        schedule: str = "exp",
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy, population_size=population_size)
        if schedule not in SCHEDULES:
            raise ConfigError(f"SphereCMA: schedule must be one of {SCHEDULES}, got {schedule!r}")
        for key, value in (("sphere_norm_factor", sphere_norm_factor), ("lr", lr),
                           ("step_start_deg", step_start_deg), ("step_end_deg", step_end_deg)):
            finite_number(value, f"optimizer.{key}", minimum=0.0)
        if sphere_norm is not None:
            finite_number(sphere_norm, "optimizer.sphere_norm", minimum=0.0)
        if sphere_norm is None:
            norms = np.linalg.norm(np.asarray(initial_codes, dtype=np.float64), axis=1)
            sphere_norm = float(sphere_norm_factor * norms.mean())
        if sphere_norm <= 0 or step_start_deg <= 0 or step_end_deg <= 0 or schedule_generations < 1:
            raise ConfigError("SphereCMA: sphere_norm, step angles and schedule_generations must be > 0")
        self.mu = int(parent_count(mu, self.population_size) or self.population_size // 2)
        self.sphere_norm, self.lr, self.schedule = float(sphere_norm), float(lr), schedule
        self.step_start_deg, self.step_end_deg = float(step_start_deg), float(step_end_deg)
        self.schedule_generations = int(schedule_generations)
        direction = np.asarray(initial_codes, dtype=np.float64).mean(0)
        if np.linalg.norm(direction) < 1e-12:
            direction = self.rng.standard_normal(self.dim)
        self.centre = direction / np.linalg.norm(direction)
        self.updates = 0

    @classmethod
    def contract_kwargs(cls) -> dict[str, Any]:
        """Settings for :func:`latentopt.testing.check_optimizer`: its quadratic neuron's optimum has
        norm ≈ sqrt(16) = 4, not 300."""
        return {"kwargs": {"sphere_norm": 4.0, "step_start_deg": 40.0, "step_end_deg": 5.0, "schedule_generations": 30}}

    @property
    def step_deg(self) -> float:
        """Angular step of the next generation, in degrees."""
        return math.degrees(self._angle())

    def _angle(self) -> float:
        return step_angle(
            self.updates,
            start_deg=self.step_start_deg,
            end_deg=self.step_end_deg,
            generations=self.schedule_generations,
            schedule=self.schedule,
        )

    def _propose(self, n: int) -> np.ndarray:
        tangents = self.rng.standard_normal((n, self.dim)) * (self._angle() / math.sqrt(self.dim))
        tangents -= np.outer(tangents @ self.centre, self.centre)
        return self.sphere_norm * exp_map(self.centre, tangents)

    def _update(self, codes: np.ndarray, scores: np.ndarray) -> None:
        order, weights = ranked_parents(scores, self.mu)
        target = weights @ codes[order]
        if np.linalg.norm(target) > 1e-12:
            self.centre = slerp(self.centre, target, self.lr)
            self.centre /= np.linalg.norm(self.centre)
        self.updates += 1

    def _family_state(self) -> dict[str, Any]:
        return {"centre": self.centre.copy(), "updates": self.updates}

    def _load_family_state(self, state: dict[str, Any]) -> None:
        self.centre, self.updates = as_array(state["centre"]), int(state["updates"])

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "algorithm": "SphereCMA (Wang & Ponce 2022)",
            "mu": self.mu,
            "sphere_norm": self.sphere_norm,
            "lr": self.lr,
            "schedule": self.schedule,
            "step_start_deg": self.step_start_deg,
            "step_end_deg": self.step_end_deg,
            "schedule_generations": self.schedule_generations,
        }
