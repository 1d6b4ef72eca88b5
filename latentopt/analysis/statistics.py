"""Statistics of tuning maps: one-way ANOVA across images and split-half reliability (noise ceiling).

The published manifold analysis (Wang & Ponce, Cell Reports 2022) keeps a map when a one-way ANOVA across its
images (trials as samples) has p < 0.001, and compares a fit's R² with the map's explainable variance.
Trials arrays are (n_images, repeats) with NaN where an image was not shown that often; ``list(trials)`` is
the groups argument of :func:`anova_oneway`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class AnovaResult:
    """One-way ANOVA: F statistic, its p value, and the degrees of freedom between and within groups."""

    f: float
    p: float
    df_between: int
    df_within: int


def anova_oneway(groups: Sequence[Any]) -> AnovaResult:
    """One-way ANOVA of the groups' means (scipy.stats.f_oneway's statistic), NaN-tolerant, never raising.

    Args:
        groups: one array-like per group (per image: its trial responses); each is flattened, its NaNs
            dropped, and groups left with no finite value are dropped.

    Returns:
        F = (SS_between / (k − 1)) / (SS_within / (N − k)) and p = P(F_{k−1, N−k} ≥ F) over the k kept groups
        and their N values. f and p are NaN when fewer than 2 groups remain, when N − k < 1, or when there is no
        within-group variance (SS_within = 0: F is undefined or infinite; a deterministic subject has no trial
        noise and the test does not apply). The degrees of freedom are reported in every case.
    """
    kept = [values[np.isfinite(values)] for values in (np.asarray(g, dtype=float).reshape(-1) for g in groups)]
    kept = [values for values in kept if values.size]
    k, n = len(kept), sum(values.size for values in kept)
    df_between, df_within = k - 1, n - k
    if k < 2 or df_within < 1:
        return AnovaResult(np.nan, np.nan, df_between, df_within)
    grand = np.concatenate(kept).mean()
    ss_between = sum(values.size * (values.mean() - grand) ** 2 for values in kept)
    ss_within = sum(((values - values.mean()) ** 2).sum() for values in kept)
    if not ss_within > 0:
        return AnovaResult(np.nan, np.nan, df_between, df_within)
    f = float((ss_between / df_between) / (ss_within / df_within))
    return AnovaResult(f, float(stats.f.sf(f, df_between, df_within)), df_between, df_within)


def _trials(trials: Any) -> np.ndarray:
    values = np.asarray(trials, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"trials must be 2-D (n_images, repeats), got shape {values.shape}")
    return values


def _half_means(trials: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random split of each image's finite repeats into halves of ⌊k/2⌋ and ⌈k/2⌉: the two (n_images,) means.

    Images with fewer than 2 finite repeats give NaN in both halves.
    """
    finite = np.isfinite(trials)
    counts = finite.sum(axis=1, keepdims=True)
    keys = np.where(finite, rng.random(trials.shape), np.inf)  # missing repeats sort last
    rank = np.empty_like(keys, dtype=np.intp)
    np.put_along_axis(rank, np.argsort(keys, axis=1), np.arange(trials.shape[1])[None, :], axis=1)
    first = finite & (rank < counts // 2)
    second = finite & ~first
    values = np.where(finite, trials, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a = (values * first).sum(axis=1) / first.sum(axis=1)
        mean_b = (values * second).sum(axis=1) / second.sum(axis=1)
    usable = counts[:, 0] >= 2
    return np.where(usable, mean_a, np.nan), np.where(usable, mean_b, np.nan)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two (n,) arrays over the entries finite in both; NaN for < 3 pairs or zero variance."""
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 3:
        return float("nan")
    x, y = a[both] - a[both].mean(), b[both] - b[both].mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else float("nan")


def split_half_correlations(trials: Any, *, n_splits: int = 100, seed: int = 0) -> np.ndarray:
    """(n_splits,) Pearson r across images between the two half means of each random split (uncorrected).

    Each split draws, for every image, a random half of its finite repeats (⌊k/2⌋ of k) against the rest, with
    ``np.random.default_rng(seed)``. Images with fewer than 2 finite repeats are left out; a split with fewer
    than 3 usable images or no variance across images gives NaN.

    Raises:
        ValueError: trials not 2-D, or n_splits < 1.
    """
    values = _trials(trials)
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    return np.array([_pearson(*_half_means(values, rng)) for _ in range(n_splits)])


def split_half_reliability(trials: Any, *, n_splits: int = 100, seed: int = 0) -> float:
    """Spearman–Brown-corrected split-half reliability of the mean response across images.

    r̄ is the mean over ``n_splits`` random splits of :func:`split_half_correlations`; the result is 2r̄ / (1 + r̄),
    the reliability of the mean of all k repeats (k·σs² / (k·σs² + σn²) for signal variance σs² across images
    and trial noise variance σn²). The plain mean of r over splits is used (not a Fisher-z mean). With an odd k
    the halves hold ⌊k/2⌋ and ⌈k/2⌉ repeats while the factor 2 assumes equal halves, so the estimate is slightly
    low for small odd k.

    Args:
        trials: (n_images, repeats) responses, NaN where an image was not shown that often.

    Returns:
        The reliability (at most 1; can be negative when the halves anti-correlate by chance), NaN with fewer
        than 2 repeats or 3 images with 2 finite repeats, or when every split is NaN.
    """
    values = _trials(trials)
    if values.shape[1] < 2:
        return float("nan")
    correlations = split_half_correlations(values, n_splits=n_splits, seed=seed)
    if not np.any(np.isfinite(correlations)):
        return float("nan")
    r = float(np.nanmean(correlations))
    return 2.0 * r / (1.0 + r) if r > -1.0 else float("nan")


def noise_ceiling_r2(trials: Any, *, n_splits: int = 100, seed: int = 0) -> float:
    """The explainable-variance fraction of the mean responses: the largest R² any model of them can expect.

    This is :func:`split_half_reliability` itself: of the variance of the trial-averaged responses across
    images, the fraction that is signal (not trial noise) is the reliability of that average. A fit's R²
    divided by it is the fraction of the explainable variance the fit captures. Values near or below 0 mean
    the map has no reliable signal (the ratio is then meaningless). NaN as in split_half_reliability.
    """
    return split_half_reliability(trials, n_splits=n_splits, seed=seed)
