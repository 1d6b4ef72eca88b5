"""Population-control success definitions on hand-made numbers (latentopt.analysis.control)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from latentopt.analysis import control


def test_stretch_success_is_beating_the_natural_maximum_and_chance_comes_from_permuted_assignments() -> None:
    natural = np.array([[1.0, 5.0], [2.0, 4.0], [3.0, 1.0]])
    controllers = np.array([[4.0, 0.0], [0.0, 6.0]])  # controller 0 for channel 0, controller 1 for channel 1
    result = control.stretch(natural, controllers, [0, 1], permutations=2000)
    np.testing.assert_array_equal(result.natural_max, [3.0, 5.0])
    np.testing.assert_array_equal(result.controller, [4.0, 6.0])
    assert result.success.tolist() == [True, True] and result.fraction == 1.0
    # two assignments: the real one (both succeed) and the swapped one (neither): chance 0.5
    assert result.chance == pytest.approx(0.5, abs=0.05)
    assert result.chance_p == pytest.approx(0.5, abs=0.05)
    assert result.exchangeable_chance == pytest.approx(1 / 4)
    # a controller equal to the natural maximum does not succeed
    tie = control.stretch(natural, np.array([[3.0, 0.0]]), [0], permutations=10)
    assert tie.success.tolist() == [False] and np.isnan(tie.chance)


def test_stretch_significance_is_scipys_one_sided_welch_test_against_the_best_natural_image() -> None:
    rng = np.random.default_rng(0)
    natural_trials = [rng.normal(m, 1.0, size=(6, 2)) for m in (1.0, 2.0, 3.0)]
    controller_trials = [rng.normal(4.0, 1.0, size=(5, 2))]
    natural = np.stack([t.mean(0) for t in natural_trials])
    result = control.stretch(natural, np.stack([t.mean(0) for t in controller_trials]), [1],
                             natural_trials=natural_trials, controller_trials=controller_trials)
    best = int(np.argmax(natural[:, 1]))
    expected = stats.ttest_ind(controller_trials[0][:, 1], natural_trials[best][:, 1], equal_var=False,
                               alternative="greater").pvalue
    assert result.p_values[0] == pytest.approx(expected, rel=1e-12)
    assert result.summary["significant"] == int(result.success[0] and expected < 0.05)


def test_one_hot_scores_are_the_softmax_of_responses_normalised_by_the_natural_set() -> None:
    natural = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 1.0], [2.0, 5.0, 2.0], [0.0, 1.0, 1.0]])
    mean, std = natural.mean(0), natural.std(0)
    controllers = np.array([[4.0, 1.0, 0.0], [2.0, 2.0, 3.0]])  # targets 0 and 2
    result = control.one_hot(natural, controllers, [0, 2], temperature=0.5, permutations=500)
    by_hand = special.softmax((controllers - mean) / std / 0.5, axis=1)
    natural_scores = special.softmax((natural - mean) / std / 0.5, axis=1)
    np.testing.assert_allclose(result.controller, [by_hand[0, 0], by_hand[1, 2]], rtol=1e-12)
    np.testing.assert_allclose(result.natural_best, natural_scores[:, [0, 2]].max(0), rtol=1e-12)
    assert result.success.tolist() == [bool(by_hand[0, 0] > natural_scores[:, 0].max()),
                                       bool(by_hand[1, 2] > natural_scores[:, 2].max())]
    assert result.summary["succeeded"] == int(result.success.sum())


def test_split_half_reliability_is_spearman_brown_of_half_means() -> None:
    rng = np.random.default_rng(1)
    signal = rng.normal(0, 1, size=(3000, 2))
    # two trials per image; channel 0 noise sd 1 (half reliability 0.5 -> 2/3), channel 1 noise-free (1)
    trials = [np.stack([s + np.array([rng.normal(), 0.0]), s + np.array([rng.normal(), 0.0])]) for s in signal]
    reliability = control.split_half(trials, splits=5)
    assert reliability[0] == pytest.approx(2 / 3, abs=0.03)
    assert reliability[1] == pytest.approx(1.0, abs=1e-9)
    # one split by hand: with two trials the halves are the trials themselves (in some order per image)
    a = np.array([t[0, 0] for t in trials])
    b = np.array([t[1, 0] for t in trials])
    r = stats.pearsonr(a, b).statistic
    assert reliability[0] == pytest.approx(2 * r / (1 + r), abs=0.03)
    assert np.isnan(control.split_half(trials[:2])).all()


def test_twin_prediction_is_perfect_for_a_perfect_twin_and_scale_free() -> None:
    rng = np.random.default_rng(2)
    observed, natural = rng.normal(size=(10, 4)), rng.normal(size=(50, 4))
    trials = [np.stack([o, o]) for o in observed]
    result = control.twin_prediction(3 * observed + 1, observed, natural_observed=natural,
                                     natural_predicted=3 * natural + 1, trials=trials)
    np.testing.assert_allclose(result["r_per_channel"], 1.0, atol=1e-12)
    assert result["pattern_r"] == pytest.approx(1.0, abs=1e-12)
    assert result["explained_variance_fraction"] == pytest.approx(1.0, abs=1e-9)
    shuffled = control.twin_prediction(observed[::-1], observed, natural_observed=natural,
                                       natural_predicted=natural)
    assert shuffled["pattern_r"] < 0.9 and np.isnan(shuffled["explained_variance_fraction"])


def test_image_means_skip_aborted_trials() -> None:
    responses = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0], [7.0, 8.0]])
    means = control.image_means(responses, np.array([0, 0, 1, 1]), 3)
    np.testing.assert_allclose(means[:2], [[1.0, 2.0], [6.0, 7.0]])
    assert np.isnan(means[2]).all()
