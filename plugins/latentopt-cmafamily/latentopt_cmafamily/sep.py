"""Separable (diagonal) CMA-ES, the suite's default CMA: O(λ·d) per generation.

sep-CMA-ES (Ros & Hansen, PPSN 2008): the covariance is diagonal, so sampling, updating and the
state are linear in d; the learning rates of the diagonal are those of full CMA-ES times (d + 2)/3.
In Wang & Ponce's GECCO 2022 benchmark diagonal pycma (0.563) matched full pycma (0.547) and Cholesky
CMA-ES (0.556); full covariance learns at ~1/d² and barely moves in 100 generations at d = 4096, so
the diagonal loses nothing there while costing milliseconds instead of pycma's 160 ms (8.75 s spikes).

The step-size path rate defaults to ``c_σ = sqrt(μ_eff)/(sqrt(μ_eff)+sqrt(d))`` as in Wang & Ponce's
CMA-ES code (Hansen & Ostermeier 2001), not the 2016 tutorial's ``(μ_eff+2)/(d+μ_eff+5)``: at
d = 4096 the latter lets σ shrink by at most 21 % in 75 generations, while the GECCO study found the
gain over GAs comes from step-size decay. ``cs_rule="tutorial"`` selects the other rule.

``step_schedule="exp"`` replaces cumulative step-size adaptation by a fixed geometric decay,
``σ_t = σ₀ r^(t/(T−1))`` with ``r = sigma_end_ratio`` over ``T = schedule_generations``: the decay
SphereCMA applies to its angular step (50° → 7.33°, r = 0.147, over 75 generations). In fc6 the
step size decays in effect because evolved codes grow from norm 64 to ~300 at a constant σ; where
a generator's images do not ignore the code norm, or scores are noisy (selection then looks random
to the evolution path, so CSA keeps σ high), the schedule makes that decay explicit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, finite_number, parent_count
from latentopt_cmafamily._base import (
    STEP_SCHEDULES,
    FamilyOptimizer,
    as_array,
    check_flag,
    effective_mu,
    geometric_decay,
    initial_mean,
    ranked_parents,
    recombination_weights,
    without_rows_at,
)

CS_RULES = ("ponce", "tutorial")


class SepCMA(FamilyOptimizer):
    """Diagonal-covariance CMA-ES with cumulative step-size adaptation.

    Args:
        initial_codes: ``(n, d)`` float32; ``n`` is the default population size.
        seed: seed of the optimizer's random stream.
        nan_policy: ``"worst"`` or ``"drop"``.
        population_size: λ, default ``n`` (40 for the Ponce-lab rig).
        mu: parents, default λ // 2.
        sigma0: initial step size (3, Wang & Ponce 2022, for codes near N(0, 1)).
        init_mean: ``"zero"`` or ``"codes"`` (mean of ``initial_codes``).
        cs_rule: ``"ponce"`` (default) or ``"tutorial"``, see the module docstring.
        step_schedule: ``"csa"`` (default: cumulative step-size adaptation) or ``"exp"`` (a fixed
            geometric decay, see the module docstring).
        sigma_end_ratio: σ at the last scheduled generation / σ₀ (``"exp"`` only).
        schedule_generations: generations over which σ decays (``"exp"`` only); σ stays at its
            end value after them.
        show_centre: show the mean as the first code of every generation; it is scored but not
            recombined (the update uses the λ − 1 samples).
    """

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        nan_policy: str = "worst",
        population_size: int | None = None,
        mu: int | None = None,
        sigma0: float = 3.0,
        init_mean: str = "zero",
        cs_rule: str = "ponce",
        step_schedule: str = "csa",
        sigma_end_ratio: float = 7.33 / 50.0,
        schedule_generations: int = 75,
        show_centre: bool = False,
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy, population_size=population_size)
        self.show_centre = check_flag(show_centre, "optimizer.show_centre")
        finite_number(sigma0, "optimizer.sigma0", minimum=0.0)
        finite_number(sigma_end_ratio, "optimizer.sigma_end_ratio", minimum=0.0)
        if cs_rule not in CS_RULES:
            raise ConfigError(f"SepCMA: cs_rule must be one of {CS_RULES}, got {cs_rule!r}")
        if step_schedule not in STEP_SCHEDULES:
            raise ConfigError(f"SepCMA: step_schedule must be one of {STEP_SCHEDULES}, got {step_schedule!r}")
        if not 0 < sigma_end_ratio or schedule_generations < 1:
            raise ConfigError("SepCMA: sigma_end_ratio must be > 0 and schedule_generations >= 1")
        self.step_schedule = step_schedule
        self.sigma_end_ratio, self.schedule_generations = float(sigma_end_ratio), int(schedule_generations)
        n = float(self.dim)
        self.mu = int(parent_count(mu, self.population_size) or self.population_size // 2)
        self.init_mean, self.cs_rule, self.sigma0 = init_mean, cs_rule, float(sigma0)
        mueff = effective_mu(recombination_weights(self.mu))
        if cs_rule == "ponce":
            self.cs = math.sqrt(mueff) / (math.sqrt(mueff) + math.sqrt(n))
        else:
            self.cs = (mueff + 2.0) / (n + mueff + 5.0)
        self.damps = 1.0 + 2.0 * max(0.0, math.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0) + self.cs
        self.cc = (4.0 + mueff / n) / (n + 4.0 + 2.0 * mueff / n)
        separable = (n + 2.0) / 3.0  # Ros & Hansen 2008: diagonal learning rates
        self.c1 = min(1.0, separable * 2.0 / ((n + 1.3) ** 2 + mueff))
        rank_mu = 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((n + 2.0) ** 2 + mueff)
        self.cmu = min(1.0 - self.c1, separable * rank_mu)
        self.chi_n = math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n**2))
        self.mean = initial_mean(np.asarray(initial_codes), init_mean)
        self.sigma = self.sigma0
        self.variances = np.ones(self.dim)
        self.ps = np.zeros(self.dim)
        self.pc = np.zeros(self.dim)
        self.updates = 0

    def _propose(self, n: int) -> np.ndarray:
        z = self.rng.standard_normal((n, self.dim))
        codes = self.mean + (self.sigma * np.sqrt(self.variances)) * z
        if self.show_centre:
            codes[0] = self.mean
        return codes

    def _update(self, codes: np.ndarray, scores: np.ndarray) -> None:
        if self.show_centre:
            codes, scores = without_rows_at(codes, scores, self.mean)
        order, weights = ranked_parents(scores, self.mu)
        mueff = effective_mu(weights)
        y = (codes[order] - self.mean) / self.sigma
        yw = weights @ y
        self.mean = weights @ codes[order]
        self.ps = (1 - self.cs) * self.ps + math.sqrt(self.cs * (2 - self.cs) * mueff) * (yw / np.sqrt(self.variances))
        self.updates += 1
        ps_norm = float(np.linalg.norm(self.ps))
        stalls = ps_norm / math.sqrt(1 - (1 - self.cs) ** (2 * self.updates)) >= (1.4 + 2 / (self.dim + 1)) * self.chi_n
        h_sigma = 0.0 if stalls else 1.0
        self.pc = (1 - self.cc) * self.pc + h_sigma * math.sqrt(self.cc * (2 - self.cc) * mueff) * yw
        decay = 1 - self.c1 - self.cmu + (1 - h_sigma) * self.c1 * self.cc * (2 - self.cc)
        self.variances = decay * self.variances + self.c1 * self.pc**2 + self.cmu * (weights @ y**2)
        if self.step_schedule == "exp":
            self.sigma = geometric_decay(self.sigma0, self.sigma_end_ratio, self.updates, self.schedule_generations)
        else:
            self.sigma *= math.exp((self.cs / self.damps) * (ps_norm / self.chi_n - 1.0))

    def _family_state(self) -> dict[str, Any]:
        return {
            "mean": self.mean.copy(),
            "sigma": self.sigma,
            "variances": self.variances.copy(),
            "ps": self.ps.copy(),
            "pc": self.pc.copy(),
            "updates": self.updates,
        }

    def _load_family_state(self, state: dict[str, Any]) -> None:
        self.mean, self.variances = as_array(state["mean"]), as_array(state["variances"])
        self.ps, self.pc = as_array(state["ps"]), as_array(state["pc"])
        self.sigma, self.updates = float(state["sigma"]), int(state["updates"])

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "algorithm": "sep-CMA-ES (Ros & Hansen 2008)",
            "mu": self.mu,
            "sigma0": self.sigma0,
            "init_mean": self.init_mean,
            "cs_rule": self.cs_rule,
            "step_schedule": self.step_schedule,
            "show_centre": self.show_centre,
            **(
                {"sigma_end_ratio": self.sigma_end_ratio, "schedule_generations": self.schedule_generations}
                if self.step_schedule == "exp"
                else {}
            ),
            "cs": self.cs,
            "damps": self.damps,
            "cc": self.cc,
            "c1": self.c1,
            "cmu": self.cmu,
        }
