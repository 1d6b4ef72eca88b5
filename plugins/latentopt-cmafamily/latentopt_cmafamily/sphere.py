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

``show_centre=True`` makes the centre itself the first of the λ codes of every generation (λ − 1 samples
besides it), as Wang & Ponce's code does (theirs adds it as a 41st code). As in their code, the centre is
scored but not recombined: ranks and the weighted mean use the samples only (a good centre would
otherwise pull the mean back onto itself and shorten the step). In high dimension the recombined centre
usually scores above every sample drawn around it, so showing it puts the point the algorithm believes
best in front of the neuron each generation, and in the final generation.

``first_generation="initial"`` shows the initial codes themselves, projected onto the sphere, as the first
generation (random codes: directions spread over the whole sphere, as Wang & Ponce's first generation),
and the first update jumps to their weighted mean (no interpolation); ``"samples"`` (the default before
issue 14) starts with samples at the first angle around the direction of the initial codes' mean.

``average_generations=K`` (with ``show_centre``) also shows, as the second code, the average of the last
K centres projected onto the sphere (iterate averaging, Polyak & Juditsky 1992). Under noisy scores the
centre random-walks around the optimum (selection among samples at a few degrees is partly chance); the
average of K consecutive centres cancels much of that walk while the search goes on from the centre
itself. Noise-free it costs one sample per generation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, finite_number, integer, parent_count
from latentopt_cmafamily._base import (
    DEFAULT_SCHEDULE_GENERATIONS,
    FamilyOptimizer,
    as_array,
    average_count,
    check_flag,
    mean_norm,
    ranked_parents,
    recent_from_state,
    with_recent,
    without_rows_at,
)

SCHEDULES = ("exp", "inv")
FIRST_GENERATIONS = ("samples", "initial")
SHOWN_ANGLE = 1e-5
"""Radians: a told code this close to the centre (or the shown average) is that shown code, not a sample
(float32 codes are within ~1e-7 of it; samples lie degrees away)."""


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
        schedule_generations: generations over which the step decays (75); None: the run's planned
            generations (:meth:`plan_generations`: ``experiment.generations``, or the budget / λ), 75 if
            never told.
        schedule: ``"exp"`` (default, best in the paper) or ``"inv"``.
        show_centre: show the centre as the first code of every generation (see the module docstring).
        average_generations: with ``show_centre``, also show the average of the last K centres as the
            second code (0: off).
        first_generation: ``"samples"`` or ``"initial"`` (see the module docstring).
        mirrored: draw the samples in mirrored pairs ``c ± v`` (antithetic sampling, Brockhoff et al.
            2010): the pair's random parts cancel when both are recombined.
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
        schedule_generations: int | None = 75,
        schedule: str = "exp",
        show_centre: bool = False,
        average_generations: int = 0,
        first_generation: str = "samples",
        mirrored: bool = False,
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
            sphere_norm = float(sphere_norm_factor) * mean_norm(initial_codes)
        self.schedule_from_run = schedule_generations is None
        schedule_generations = DEFAULT_SCHEDULE_GENERATIONS if schedule_generations is None else integer(
            schedule_generations, "optimizer.schedule_generations", minimum=1)
        if sphere_norm <= 0:  # the keys are checked above; here initial codes of norm 0 with no sphere_norm
            raise ConfigError("optimizer.sphere_norm: the initial codes have norm 0, so "
                              "sphere_norm_factor x their norm is 0; give optimizer.sphere_norm")
        self.mu = int(parent_count(mu, self.population_size) or self.population_size // 2)
        self.sphere_norm, self.lr, self.schedule = float(sphere_norm), float(lr), schedule
        self.step_start_deg, self.step_end_deg = float(step_start_deg), float(step_end_deg)
        self.schedule_generations = int(schedule_generations)
        self.show_centre = check_flag(show_centre, "optimizer.show_centre")
        self.average_generations = average_count(average_generations, self.show_centre, self.population_size)
        if first_generation not in FIRST_GENERATIONS:
            raise ConfigError(f"optimizer.first_generation must be one of {FIRST_GENERATIONS}, "
                              f"got {first_generation!r}")
        self.first_generation = first_generation
        self.mirrored = check_flag(mirrored, "optimizer.mirrored")
        self.initial = np.zeros((0, self.dim))  # unit directions of the first generation ("initial" only)
        if first_generation == "initial":
            start = np.asarray(initial_codes, dtype=np.float64)[: self.population_size]
            norms = np.linalg.norm(start, axis=1)
            self.initial = start[norms > 1e-12] / norms[norms > 1e-12, None]
        direction = np.asarray(initial_codes, dtype=np.float64).mean(0)
        if np.linalg.norm(direction) < 1e-12:
            direction = self.rng.standard_normal(self.dim)
        self.centre = direction / np.linalg.norm(direction)
        self.updates = 0
        self.recent = np.zeros((0, self.dim))  # the last average_generations centres, oldest first

    @classmethod
    def contract_kwargs(cls) -> dict[str, Any]:
        """Settings for :func:`latentopt.testing.check_optimizer`: its quadratic neuron's optimum has
        norm ≈ sqrt(16) = 4, not 300."""
        return {"kwargs": {"sphere_norm": 4.0, "step_start_deg": 40.0, "step_end_deg": 5.0, "schedule_generations": 30}}

    def plan_generations(self, generations: int) -> None:
        """With ``schedule_generations=None``, the step decays over the run's ``generations``."""
        if self.schedule_from_run and self.updates == 0 and generations >= 1:
            self.schedule_generations = int(generations)

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
        if self.updates == 0 and self.initial.shape[0]:
            k = min(n, self.initial.shape[0])
            codes = np.concatenate([self.initial[:k], self._samples(n - k, k)])  # samples fill in if fewer
            return self.sphere_norm * codes
        average = self.average_centre
        shown = ([self.centre] if self.show_centre else []) + ([] if average is None else [average])
        codes = np.concatenate([np.asarray(shown).reshape(-1, self.dim), self._samples(n - len(shown), len(shown))])
        return self.sphere_norm * codes[:n]

    def _samples(self, n: int, shown: int) -> np.ndarray:
        """``n`` unit codes at the current angle around the centre, to follow ``shown`` shown codes.

        Unmirrored, ``n + shown`` are drawn and the first ``shown`` discarded (the random stream of the
        runs before ``mirrored`` existed); ``mirrored``: ``⌈n/2⌉`` are drawn and shown in pairs ``±v``.
        """
        drawn = (n + 1) // 2 if self.mirrored else n + shown
        if drawn <= 0:
            return np.zeros((0, self.dim))
        tangents = self.rng.standard_normal((drawn, self.dim)) * (self._angle() / math.sqrt(self.dim))
        tangents -= np.outer(tangents @ self.centre, self.centre)
        if self.mirrored:
            tangents = np.concatenate([tangents, -tangents])
        else:
            tangents = tangents[shown:]
        return exp_map(self.centre, tangents[:n])

    @property
    def average_centre(self) -> np.ndarray | None:
        """The unit average of the last ``average_generations`` centres (None when off or before the first
        update)."""
        if not self.average_generations or self.recent.shape[0] == 0:
            return None
        average = self.recent.mean(0)
        norm = float(np.linalg.norm(average))
        return average / norm if norm > 1e-12 else None

    def _update(self, codes: np.ndarray, scores: np.ndarray) -> None:
        if self.show_centre:
            codes, scores = self._samples_only(codes, scores)
        order, weights = ranked_parents(scores, self.mu)
        target = weights @ codes[order]
        if np.linalg.norm(target) > 1e-12:
            jump = self.updates == 0 and self.initial.shape[0] > 0  # from spread initial codes: their mean
            self.centre = target if jump else slerp(self.centre, target, self.lr)
            self.centre = self.centre / np.linalg.norm(self.centre)
        self.updates += 1
        self.initial = np.zeros((0, self.dim))
        if self.average_generations:
            self.recent = with_recent(self.recent, self.centre, self.average_generations)

    def _samples_only(self, codes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The told rows other than the shown centre and average (recognised by direction)."""
        average = self.average_centre
        shown = np.stack([self.centre] + ([] if average is None else [average]))
        return without_rows_at(codes, scores, shown, within_angle=SHOWN_ANGLE)

    def _family_state(self) -> dict[str, Any]:
        return {"centre": self.centre.copy(), "updates": self.updates, "recent": self.recent.copy(),
                "initial": self.initial.copy(), "schedule_generations": self.schedule_generations}

    def _load_family_state(self, state: dict[str, Any]) -> None:
        self.centre, self.updates = as_array(state["centre"]), int(state["updates"])
        if "schedule_generations" in state:
            self.schedule_generations = int(state["schedule_generations"])
        initial = state.get("initial")
        self.initial = np.zeros((0, self.dim)) if initial is None else as_array(initial).reshape(-1, self.dim)
        self.recent = recent_from_state(state, self.average_generations, self.dim)

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
            "schedule_from_run": self.schedule_from_run,
            "show_centre": self.show_centre,
            "average_generations": self.average_generations,
            "first_generation": self.first_generation,
            "mirrored": self.mirrored,
        }
