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

Three options bring it to what pycma 4 does in its diagonal mode (``cmaes_diag``), which reached
1.029 × this optimizer's Cholesky sibling on the issue-14 grid while plain sep-CMA lagged it:

* ``step_schedule="tpa"``: two-point step-size adaptation (Hansen 2008; Hansen et al. 2014), pycma's
  rule for d >= 300. From the second generation on, two of the λ codes lie on the line of the last
  mean shift Δ = m_t − m_{t−1}: ``m ± σ D u`` with ``u`` the whitened shift rescaled to the length of
  an N(0, I_d) draw. Both are ranked and recombined like any sample. If the forward one ranks above
  the backward one, the last step was too short: ``z = (#{f > f₋} − #{f > f₊}) / (n − 1)``,
  ``s ← 0.7 s + 0.3 sign(z) |z|^½`` and ``σ ← σ exp(s / d_s)`` with ``d_s = 0.7 + 2 ln d +
  2 ln max(1, λ − d)``. The pair is found among the told codes by its direction from the mean, so
  injected or dropped rows only skip one step-size update. The first generation has no shift and
  leaves σ alone (pycma adapts it from two random samples).
* ``active=true``: the worse half gets negative weights in the variance update (active CMA, Jastrebski
  & Arnold 2006): ``w_i ∝ ln(λ/2 + 1/2) − ln i`` for ranks ``i > λ/2``, scaled so that their sum is
  ``−min(1 + c₁/c_μ, 1 + 2 μ⁻_eff/(μ_eff + 2))`` (pycma's bounds; the additive update also caps it at
  ``(1 − c₁ − c_μ)/(d c_μ)`` so that no variance turns negative). The mean
  still moves with the positive weights only.
* ``rates="pycma"``: pycma's separable learning rates, ``c_c = (1 + 1/d + μ_eff/d)/(√d + 1/d +
  2μ_eff/d)``, ``c₁ = 1/(d + 2√d + μ_eff/d)``, ``c_μ = (0.25 + μ_eff + 1/μ_eff − 2)/(d + 4√d +
  μ_eff/2)``, with its multiplicative update of the variances on whitened vectors,
  ``v ← v · exp(ln 2 · (c₁ p̃_c² + c_μ Σ w_i z_i² − c₁ − c_μ Σ w_i))``, which keeps every variance
  positive whatever the negative weights. ``"ros_hansen"`` (default) is the additive update above
  with Ros & Hansen's rates. (pycma also clips an increase above 1 + max|z² − 1|/2; at these rates the
  factors stay within about 1 % of 1, so the clip is left out.)
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
    initial_step,
    ranked_parents,
    recombination_weights,
    without_rows_at,
)

CS_RULES = ("ponce", "tutorial")
SEP_SCHEDULES = (*STEP_SCHEDULES, "tpa")
RATES = ("ros_hansen", "pycma")
TPA_SMOOTHING = 0.3  # c of the two-point rule (pycma 4)
TPA_EXPONENT = 0.5  # |z| exponent (pycma 4)
LINE_COSINE = 0.999  # a told code within 2.6° of the mean shift's line is one of tpa's pair


class SepCMA(FamilyOptimizer):
    """Diagonal-covariance CMA-ES with cumulative step-size adaptation.

    Args:
        initial_codes: ``(n, d)`` float32; ``n`` is the default population size.
        seed: seed of the optimizer's random stream.
        nan_policy: ``"worst"`` or ``"drop"``.
        population_size: λ, default ``n`` (40 for the Ponce-lab rig).
        mu: parents, default λ // 2.
        sigma0: initial step size (3, Wang & Ponce 2022, for codes near N(0, 1)); None:
            ``sigma0_factor`` times the initial codes' scale (their mean norm / sqrt(d)).
        sigma0_factor: see ``sigma0`` (3: Wang & Ponce's σ₀ for fc6, matched to any generator's codes).
        init_mean: ``"zero"`` or ``"codes"`` (mean of ``initial_codes``).
        cs_rule: ``"ponce"`` (default) or ``"tutorial"``, see the module docstring.
        step_schedule: ``"csa"`` (default: cumulative step-size adaptation), ``"exp"`` (a fixed
            geometric decay) or ``"tpa"`` (two-point adaptation, pycma's rule), see the module docstring.
        sigma_end_ratio: σ at the last scheduled generation / σ₀ (``"exp"`` only).
        schedule_generations: generations over which σ decays (``"exp"`` only); σ stays at its
            end value after them.
        show_centre: show the mean as the first code of every generation; it is scored but not
            recombined (the update uses the λ − 1 samples).
        active: negative weights for the worse half in the variance update (active CMA).
        rates: ``"ros_hansen"`` (default) or ``"pycma"`` (pycma 4's separable rates and multiplicative
            variance update).
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
        cs_rule: str = "ponce",
        step_schedule: str = "csa",
        sigma_end_ratio: float = 7.33 / 50.0,
        schedule_generations: int = 75,
        show_centre: bool = False,
        active: bool = False,
        rates: str = "ros_hansen",
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy, population_size=population_size)
        self.show_centre = check_flag(show_centre, "optimizer.show_centre")
        sigma0 = initial_step(sigma0, sigma0_factor, initial_codes)
        self.sigma0_factor = float(sigma0_factor)
        finite_number(sigma_end_ratio, "optimizer.sigma_end_ratio", minimum=0.0)
        if cs_rule not in CS_RULES:
            raise ConfigError(f"SepCMA: cs_rule must be one of {CS_RULES}, got {cs_rule!r}")
        if step_schedule not in SEP_SCHEDULES:
            raise ConfigError(f"SepCMA: step_schedule must be one of {SEP_SCHEDULES}, got {step_schedule!r}")
        if rates not in RATES:
            raise ConfigError(f"SepCMA: optimizer.rates must be one of {RATES}, got {rates!r}")
        self.active, self.rates = check_flag(active, "optimizer.active"), rates
        if step_schedule == "tpa" and self.population_size < 3 + int(self.show_centre):
            raise ConfigError("SepCMA: step_schedule tpa needs optimizer.population_size >= 3 (two line samples "
                              "and at least one more code" + (" beside the centre)" if self.show_centre else ")"))
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
        if rates == "pycma":
            self.cc = (1.0 + 1.0 / n + mueff / n) / (math.sqrt(n) + 1.0 / n + 2.0 * mueff / n)
            self.c1 = 1.0 / (n + 2.0 * math.sqrt(n) + mueff / n)
            self.cmu = min(1.0 - self.c1, (0.25 + mueff + 1.0 / mueff - 2.0) / (n + 4.0 * math.sqrt(n) + mueff / 2.0))
        else:
            self.cc = (4.0 + mueff / n) / (n + 4.0 + 2.0 * mueff / n)
            separable = (n + 2.0) / 3.0  # Ros & Hansen 2008: diagonal learning rates
            self.c1 = min(1.0, separable * 2.0 / ((n + 1.3) ** 2 + mueff))
            rank_mu = 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((n + 2.0) ** 2 + mueff)
            self.cmu = min(1.0 - self.c1, separable * rank_mu)
        self.tpa_damping = 0.7 + 2.0 * math.log(n) + 2.0 * math.log(max(1.0, self.population_size - n))
        self.chi_n = math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n**2))
        self.mean = initial_mean(np.asarray(initial_codes), init_mean)
        self.sigma = self.sigma0
        self.variances = np.ones(self.dim)
        self.ps = np.zeros(self.dim)
        self.pc = np.zeros(self.dim)
        self.updates = 0
        self.shift = np.zeros(self.dim)  # the last mean shift (tpa's line)
        self.tpa_s = 0.0  # tpa's smoothed rank difference

    def _propose(self, n: int) -> np.ndarray:
        z = self.rng.standard_normal((n, self.dim))
        scale = self.sigma * np.sqrt(self.variances)
        codes = self.mean + scale * z
        first = int(self.show_centre)
        if self.step_schedule == "tpa" and np.any(self.shift) and n >= first + 3:
            # two codes on the line of the last mean shift, at the length of a typical sample
            whitened = self.shift / scale
            length = float(np.linalg.norm(self.rng.standard_normal(self.dim)))
            step = scale * whitened * (length / float(np.linalg.norm(whitened)))
            codes[first], codes[first + 1] = self.mean + step, self.mean - step
        if self.show_centre:
            codes[0] = self.mean
        return codes

    def _line_pair(self, codes: np.ndarray) -> tuple[int, int] | None:
        """Rows of the told codes that lie forward and backward on the last mean shift's line, if both do."""
        norm = float(np.linalg.norm(self.shift))
        if norm == 0.0:
            return None
        offsets = codes - self.mean
        lengths = np.maximum(np.linalg.norm(offsets, axis=1), 1e-300)
        cosines = (offsets @ self.shift) / (lengths * norm)
        forward, backward = int(np.argmax(cosines)), int(np.argmin(cosines))
        # float32 codes far from the origin bend a short line step by up to ~1e-3 rad
        if cosines[forward] < LINE_COSINE or cosines[backward] > -LINE_COSINE:
            return None
        return forward, backward

    def _two_point_factor(self, codes: np.ndarray, scores: np.ndarray) -> float:
        """The step-size factor of two-point adaptation (1 when the line pair was not told)."""
        pair = self._line_pair(codes)
        if pair is None or scores.shape[0] < 3:
            return 1.0
        forward, backward = scores[pair[0]], scores[pair[1]]
        z = (int(np.sum(scores > backward)) - int(np.sum(scores > forward))) / (scores.shape[0] - 1)
        self.tpa_s = (1 - TPA_SMOOTHING) * self.tpa_s + TPA_SMOOTHING * math.copysign(abs(z) ** TPA_EXPONENT, z)
        return math.exp(self.tpa_s / self.tpa_damping)

    def _covariance_weights(self, scores: np.ndarray, order: np.ndarray, weights: np.ndarray,
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and weights of the variance update: the parents, and with ``active`` the worse half, negative."""
        if not self.active:
            return order, weights
        n = scores.shape[0]
        if n < 2:
            return order, weights
        worse = np.argsort(-scores, kind="stable")[n - n // 2:]
        ranks = np.arange(n - worse.size + 1, n + 1, dtype=np.float64)
        raw = math.log((n + 1) / 2.0) - np.log(ranks)  # < 0: every rank here is past (n + 1) / 2
        mueff, mueff_minus = effective_mu(weights), effective_mu(raw)
        total = min(1.0 + self.c1 / self.cmu, 1.0 + 2.0 * mueff_minus / (mueff + 2.0))
        if self.rates != "pycma":  # the additive update stays positive only below this sum
            total = min(total, (1.0 - self.c1 - self.cmu) / (self.dim * self.cmu))
        negative = raw * (total / -raw.sum())
        return np.concatenate([order, worse]), np.concatenate([weights, negative])

    def _update(self, codes: np.ndarray, scores: np.ndarray) -> None:
        if self.show_centre:
            codes, scores = without_rows_at(codes, scores, self.mean)
        factor = self._two_point_factor(codes, scores) if self.step_schedule == "tpa" else 1.0
        order, weights = ranked_parents(scores, self.mu)
        mueff = effective_mu(weights)
        rows, cov_weights = self._covariance_weights(scores, order, weights)
        ys = (codes[rows] - self.mean) / self.sigma  # the parents first, then (active) the worse half
        yw = weights @ ys[: order.size]
        old_mean = self.mean
        self.mean = weights @ codes[order]
        std = np.sqrt(self.variances)
        self.ps = (1 - self.cs) * self.ps + math.sqrt(self.cs * (2 - self.cs) * mueff) * (yw / std)
        self.updates += 1
        ps_norm = float(np.linalg.norm(self.ps))
        stalls = ps_norm / math.sqrt(1 - (1 - self.cs) ** (2 * self.updates)) >= (1.4 + 2 / (self.dim + 1)) * self.chi_n
        # tpa has no step-size path to test (pycma's rank-one update never stalls under it)
        h_sigma = 0.0 if stalls and self.step_schedule != "tpa" else 1.0
        if self.rates == "pycma":  # whitened path and a multiplicative update
            self.pc = (1 - self.cc) * self.pc + h_sigma * math.sqrt(self.cc * (2 - self.cc) * mueff) * (yw / std)
            c1 = self.c1 * (1 - (1 - h_sigma) * self.cc * (2 - self.cc))
            exponent = c1 * (self.pc**2 - 1) + self.cmu * (cov_weights @ (ys / std) ** 2 - cov_weights.sum())
            self.variances = self.variances * np.exp(math.log(2.0) * exponent)
        else:
            self.pc = (1 - self.cc) * self.pc + h_sigma * math.sqrt(self.cc * (2 - self.cc) * mueff) * yw
            decay = 1 - self.c1 - self.cmu * cov_weights.sum() + (1 - h_sigma) * self.c1 * self.cc * (2 - self.cc)
            self.variances = decay * self.variances + self.c1 * self.pc**2 + self.cmu * (cov_weights @ ys**2)
            if self.active:  # negative weights on long vectors could push a variance below zero
                self.variances = np.maximum(self.variances, 1e-12 * float(np.max(self.variances)))
        if self.step_schedule == "exp":
            self.sigma = geometric_decay(self.sigma0, self.sigma_end_ratio, self.updates, self.schedule_generations)
        elif self.step_schedule == "tpa":
            self.sigma *= factor
        else:
            self.sigma *= math.exp((self.cs / self.damps) * (ps_norm / self.chi_n - 1.0))
        self.shift = self.mean - old_mean

    def _family_state(self) -> dict[str, Any]:
        return {
            "mean": self.mean.copy(),
            "sigma": self.sigma,
            "variances": self.variances.copy(),
            "ps": self.ps.copy(),
            "pc": self.pc.copy(),
            "updates": self.updates,
            "shift": self.shift.copy(),
            "tpa_s": self.tpa_s,
        }

    def _load_family_state(self, state: dict[str, Any]) -> None:
        self.mean, self.variances = as_array(state["mean"]), as_array(state["variances"])
        self.ps, self.pc = as_array(state["ps"]), as_array(state["pc"])
        self.sigma, self.updates = float(state["sigma"]), int(state["updates"])
        # states written before tpa existed: no shift yet (the next generation has no line pair)
        self.shift = as_array(state["shift"]) if "shift" in state else np.zeros(self.dim)
        self.tpa_s = float(state.get("tpa_s", 0.0))

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "algorithm": "sep-CMA-ES (Ros & Hansen 2008)",
            "mu": self.mu,
            "sigma0": self.sigma0,
            "sigma0_factor": self.sigma0_factor,
            "init_mean": self.init_mean,
            "cs_rule": self.cs_rule,
            "step_schedule": self.step_schedule,
            "show_centre": self.show_centre,
            "active": self.active,
            "rates": self.rates,
            **({"tpa_damping": self.tpa_damping} if self.step_schedule == "tpa" else {}),
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
