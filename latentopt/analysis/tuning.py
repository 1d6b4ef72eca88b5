"""Analysis of one tuning map on a sphere: pole averaging, Kent fit, ANOVA, noise ceiling (pure functions).

Works on arrays from a latentopt manifold run (:func:`latentopt.load_manifold`) or from anywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from latentopt.analysis.kent import fit_kent
from latentopt.analysis.sphere import average_poles, grid_directions
from latentopt.analysis.statistics import anova_oneway, split_half_reliability


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def analyze_sphere(
    tuning_map: np.ndarray,
    thetas_deg: np.ndarray,
    phis_deg: np.ndarray,
    *,
    trials: np.ndarray | None = None,
    name: str = "",
    baseline: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit and test one map.

    Args:
        tuning_map: ``(nθ, nφ)`` mean response (or score) per grid point; NaN where nothing was shown.
            Pole columns (φ = ±90°) are replaced by their mean before fitting, as the published analysis does.
        thetas_deg, phis_deg: the grid angles in degrees.
        trials: ``(images, repeats)`` single-trial responses of the sphere's *unique* images (a pole once),
            NaN where a trial is missing; gives the one-way ANOVA across images (with 2+ finite trials per
            image) and the split-half noise ceiling (with 2+ repeats). None: both are None.
        name: the sphere's name.
        baseline: fit a baseline term in the Kent model.
        seed: seed of the split-half resampling.

    Returns:
        A JSON-ready dict: ``name``, ``kappa``, ``beta``, ``amplitude``, ``baseline``, ``r2``, ``adj_r2``,
        ``anova_f``, ``anova_p``, ``noise_ceiling`` (split-half reliability, Spearman-Brown corrected),
        ``peak_direction`` (unit vector in the sphere's basis), ``peak_theta_deg``, ``peak_phi_deg``, the
        fit's ``ok`` and ``message``, and ``kent`` (every parameter with its standard error and 95 % interval).
    """
    values = average_poles(np.asarray(tuning_map, dtype=np.float64), phis_deg=np.asarray(phis_deg, dtype=np.float64))
    directions = grid_directions(thetas_deg, phis_deg).reshape(-1, 3)
    fit = fit_kent(directions, values.reshape(-1), baseline=baseline)
    anova_f = anova_p = ceiling = None
    if trials is not None:
        trials = np.asarray(trials, dtype=np.float64)
        groups = [row[np.isfinite(row)] for row in trials]
        if sum(len(g) >= 2 for g in groups) >= 2:
            result = anova_oneway([g for g in groups if len(g)])
            anova_f, anova_p = _number(result.f), _number(result.p)
        if trials.shape[1] >= 2:
            ceiling = _number(split_half_reliability(trials, seed=seed))
    peak = np.asarray(fit.peak_direction, dtype=np.float64)
    finite_peak = bool(np.isfinite(peak).all())
    return {
        "name": name,
        "kappa": _number(fit.kappa), "beta": _number(fit.beta), "amplitude": _number(fit.amplitude),
        "baseline": _number(fit.baseline), "r2": _number(fit.r2), "adj_r2": _number(fit.adj_r2),
        "anova_f": anova_f, "anova_p": anova_p, "noise_ceiling": ceiling,
        "peak_direction": peak.tolist() if finite_peak else None,
        "peak_theta_deg": float(np.degrees(np.arctan2(peak[1], peak[0]))) if finite_peak else None,
        "peak_phi_deg": float(np.degrees(np.arcsin(np.clip(peak[2], -1, 1)))) if finite_peak else None,
        "ok": bool(fit.ok), "message": fit.message,
        "kent": fit.to_dict(),
    }


def analyze_spheres(maps: np.ndarray, thetas_deg: np.ndarray, phis_deg: np.ndarray, names: Sequence[str], *,
                    trials: Sequence[np.ndarray | None] | None = None, baseline: bool = True) -> list[dict[str, Any]]:
    """:func:`analyze_sphere` for each map of ``maps`` ``(spheres, nθ, nφ)``; ``trials`` per sphere or None."""
    per_sphere = list(trials) if trials is not None else [None] * len(names)
    return [analyze_sphere(maps[s], thetas_deg, phis_deg, trials=per_sphere[s], name=str(name), baseline=baseline)
            for s, name in enumerate(names)]
