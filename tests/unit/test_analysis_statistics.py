"""ANOVA across images and split-half reliability (latentopt.analysis.statistics) against scipy and simulation.

Tolerances: the ANOVA's F and p equal scipy.stats.f_oneway's within rtol 1e-10. The split-half correlation of
each split equals scipy.stats.pearsonr on the same half means within 1e-12. The Spearman–Brown reliability
matches the theoretical reliability of a k-repeat mean, k·σs² / (k·σs² + σn²), within 0.03 over 4000 simulated
images (its sampling error is about 0.01 there; 20000 images agree within 0.003).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from latentopt.analysis import anova_oneway, noise_ceiling_r2, split_half_correlations, split_half_reliability
from latentopt.analysis.statistics import _half_means


def test_anova_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    groups = [rng.normal(loc, 1.0, size) for loc, size in zip([0.0, 0.3, 1.0, 0.2], [5, 8, 6, 10], strict=True)]
    result, expected = anova_oneway(groups), stats.f_oneway(*groups)
    assert result.f == pytest.approx(expected.statistic, rel=1e-10)
    assert result.p == pytest.approx(expected.pvalue, rel=1e-10)
    assert (result.df_between, result.df_within) == (3, 25)


def test_anova_of_a_tuning_map_drops_nans_and_empty_images() -> None:
    rng = np.random.default_rng(1)
    trials = rng.normal(0.0, 1.0, (121, 6)) + np.linspace(0, 2, 121)[:, None]
    trials[rng.random(trials.shape) < 0.2] = np.nan
    trials[5] = np.nan  # an image never shown
    result = anova_oneway(list(trials))
    kept = [row[np.isfinite(row)] for row in trials if np.isfinite(row).any()]
    expected = stats.f_oneway(*kept)
    assert result.f == pytest.approx(expected.statistic, rel=1e-10)
    assert result.p == pytest.approx(expected.pvalue, rel=1e-10)
    assert result.df_between == 119 and result.p < 1e-6


def test_anova_degenerate_cases_give_nan_not_errors() -> None:
    one_group = anova_oneway([np.array([1.0, 2.0]), np.array([np.nan])])
    assert math.isnan(one_group.f) and math.isnan(one_group.p) and one_group.df_between == 0
    no_within = anova_oneway([np.array([1.0, 1.0]), np.array([2.0, 2.0])])  # deterministic responses
    assert math.isnan(no_within.f) and math.isnan(no_within.p) and no_within.df_within == 2
    single_values = anova_oneway([[1.0], [2.0], [3.0]])  # N − k = 0
    assert math.isnan(single_values.f) and single_values.df_within == 0
    assert math.isnan(anova_oneway([]).p)


def test_each_split_correlation_is_pearsons_r_of_disjoint_half_means() -> None:
    rng = np.random.default_rng(2)
    trials = rng.normal(0.0, 1.0, (40, 7)) + rng.normal(0.0, 1.0, (40, 1))
    trials[rng.random(trials.shape) < 0.15] = np.nan
    correlations = split_half_correlations(trials, n_splits=5, seed=3)
    replay = np.random.default_rng(3)
    for r in correlations:
        a, b = _half_means(trials, replay)
        usable = np.isfinite(a)
        assert r == pytest.approx(stats.pearsonr(a[usable], b[usable]).statistic, abs=1e-12)
        counts = np.isfinite(trials).sum(axis=1)
        # the halves partition each image's finite repeats: ⌊k/2⌋ a-values and ⌈k/2⌉ b-values sum to the total
        total = np.nansum(trials, axis=1)
        np.testing.assert_allclose((a * (counts // 2) + b * (counts - counts // 2))[usable], total[usable])
        assert not np.any(usable & (counts < 2))


@pytest.mark.parametrize(("repeats", "signal_sd", "noise_sd"), [(10, 1.0, 2.0), (4, 1.0, 1.0), (20, 0.5, 3.0)])
def test_spearman_brown_matches_the_reliability_of_a_k_repeat_mean(repeats: int, signal_sd: float,
                                                                   noise_sd: float) -> None:
    rng = np.random.default_rng(repeats)
    signal = rng.normal(0.0, signal_sd, (4000, 1))
    trials = signal + rng.normal(0.0, noise_sd, (4000, repeats))
    expected = repeats * signal_sd**2 / (repeats * signal_sd**2 + noise_sd**2)
    assert split_half_reliability(trials, n_splits=50) == pytest.approx(expected, abs=0.03)
    r = np.mean(split_half_correlations(trials, n_splits=50))
    assert split_half_reliability(trials, n_splits=50) == pytest.approx(2 * r / (1 + r), rel=1e-12)


def test_reliability_tolerates_missing_trials() -> None:
    rng = np.random.default_rng(5)
    trials = rng.normal(0.0, 1.0, (2000, 1)) + rng.normal(0.0, 1.0, (2000, 8))
    full = split_half_reliability(trials)
    trials[:, 6:] = np.nan  # every image shown 6 times, not 8
    expected = 6 / (6 + 1)
    assert split_half_reliability(trials) == pytest.approx(expected, abs=0.03)
    assert full == pytest.approx(8 / 9, abs=0.03)


def test_reliability_degenerate_cases_are_nan() -> None:
    assert math.isnan(split_half_reliability(np.ones((10, 1))))  # one repeat
    assert math.isnan(split_half_reliability(np.ones((10, 4))))  # no variance across images
    two_images = np.random.default_rng(0).normal(size=(2, 6))
    assert math.isnan(split_half_reliability(two_images))  # fewer than 3 usable images
    with pytest.raises(ValueError, match="trials must be 2-D"):
        split_half_reliability(np.ones(10))


def test_noise_ceiling_is_the_corrected_reliability_and_bounds_a_true_model() -> None:
    rng = np.random.default_rng(6)
    signal = rng.normal(0.0, 1.0, 3000)
    trials = signal[:, None] + rng.normal(0.0, 2.0, (3000, 8))
    ceiling = noise_ceiling_r2(trials, seed=1)
    assert ceiling == split_half_reliability(trials, seed=1)
    mean = trials.mean(axis=1)  # the true signal is the best possible model of the mean responses
    true_model_r2 = 1 - ((mean - signal) ** 2).sum() / ((mean - mean.mean()) ** 2).sum()
    assert true_model_r2 == pytest.approx(ceiling, abs=0.03)
