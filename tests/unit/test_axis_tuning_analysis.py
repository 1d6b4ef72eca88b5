"""The axis-tuning analysis on synthetic curves whose shape is known, and the metric and code files' rules.

Curves are sampled at 9 distances in [-1, 1] with 2 trials each (the experiment's defaults), with trial noise
of standard deviation 0.2 on curves whose range is about 4 unless said otherwise.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats

from latentopt.analysis.axis_tuning import (
    analyze_axis,
    classify_curve,
    fit_gaussian,
    fit_linear,
    least_squares_aic,
)
from latentopt.checks import ConfigError
from latentopt.experiments.axis_tuning import build_axis_design, load_metric, source_code

X = np.linspace(-1.0, 1.0, 9)
CENTRE, WIDTH = 0.2, 0.3


def _bell(x: np.ndarray) -> np.ndarray:
    return 1.0 + 4.0 * np.exp(-0.5 * ((x - CENTRE) / WIDTH) ** 2)


def _trials(curve: np.ndarray, seed: int, noise: float = 0.2, repeats: int = 2) -> np.ndarray:
    return curve[:, None] + noise * np.random.default_rng(seed).standard_normal((len(curve), repeats))


CURVES = {
    "bell": _bell,
    "ramp": lambda x: 3.0 + 2.0 * x,
    "saturating": lambda x: 4.0 / (1.0 + np.exp(-x / 0.2)),  # monotonic, with a plateau a Gaussian's flank fits
    "flat": lambda x: 2.0 + 0.0 * x,
}
EXPECTED = {"bell": "bell-shaped", "ramp": "monotonic", "saturating": "monotonic", "flat": "flat"}


@pytest.mark.parametrize("shape", list(CURVES))
def test_each_known_shape_is_classified_as_it_is_on_every_seed(shape):
    """10 noise draws per shape: every one is classified right (the flat curve's ANOVA p exceeds 0.01 on these
    seeds; by construction 1 % of flat curves are called tuned at alpha 0.01)."""
    for seed in range(10):
        result = analyze_axis(X, _trials(CURVES[shape](X), seed), name=shape)
        assert result["classification"] == EXPECTED[shape], (seed, result)
        if shape != "flat":
            assert result["anova_p"] < 0.01 and result["tuned"]
        else:
            assert result["anova_p"] >= 0.01 and not result["tuned"]


def test_noise_free_curves_without_an_anova_are_classified_by_their_means():
    """A noise-free subject has no trial variance: the ANOVA does not apply (None) and a curve is flat only if its
    means are equal."""
    for shape in CURVES:
        result = analyze_axis(X, np.repeat(CURVES[shape](X)[:, None], 2, axis=1), name=shape)
        assert result["anova_p"] is None and result["anova_f"] is None
        assert result["classification"] == EXPECTED[shape], result


def test_anova_equals_scipy_f_oneway_also_with_missing_trials():
    trials = _trials(_bell(X), seed=3, repeats=3)
    trials[2, 1] = np.nan  # a trial that was not shown
    trials[5, 0] = np.nan
    result = analyze_axis(X, trials)
    expected = stats.f_oneway(*[row[np.isfinite(row)] for row in trials])
    assert result["anova_f"] == pytest.approx(expected.statistic, rel=1e-10)
    assert result["anova_p"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert result["anova_df"] == [8, 27 - 2 - 9]
    assert result["trials"][2] == [trials[2, 0], trials[2, 2]]
    assert result["mean"][2] == pytest.approx(np.nanmean(trials[2]), rel=1e-12)
    assert result["sem"][2] == pytest.approx(stats.sem(trials[2, [0, 2]]), rel=1e-12)


def test_gaussian_fit_recovers_centre_and_width():
    """Noise-free: exact to 1e-6 (relative). With noise sd 5 % of the amplitude: centre within 0.2 widths and
    width within 25 % on each of 20 seeds (over 200 seeds the worst was 0.11 widths and 14 %)."""
    exact = fit_gaussian(X, _bell(X))
    assert exact.centre == pytest.approx(CENTRE, rel=1e-6) and exact.width == pytest.approx(WIDTH, rel=1e-6)
    assert exact.amplitude == pytest.approx(4.0, rel=1e-6) and exact.offset == pytest.approx(1.0, rel=1e-6)
    assert exact.ok and exact.r2 > 1 - 1e-12
    for seed in range(20):
        fit = fit_gaussian(X, _trials(_bell(X), seed).mean(axis=1))
        assert abs(fit.centre - CENTRE) < 0.2 * WIDTH, (seed, fit)
        assert abs(fit.width - WIDTH) < 0.25 * WIDTH, (seed, fit)


def test_fits_work_in_any_units_and_the_criterion_is_the_stated_aic():
    """Distances in code units (x 37) and responses x 1000 give the same fit, scaled; ΔAIC is n ln(RSS_lin / n)
    + 2·2 − (n ln(RSS_gauss / n) + 2·4) over the n = 9 means."""
    means = _trials(_bell(X), seed=1).mean(axis=1)
    unit, scaled = fit_gaussian(X, means), fit_gaussian(37.0 * X, 1000.0 * means)
    assert scaled.centre == pytest.approx(37.0 * unit.centre, rel=1e-5)
    assert scaled.width == pytest.approx(37.0 * unit.width, rel=1e-5)
    assert scaled.amplitude == pytest.approx(1000.0 * unit.amplitude, rel=1e-5)
    line = fit_linear(X, means)
    slope, intercept = np.polyfit(X, means, 1)
    assert line.slope == pytest.approx(slope) and line.intercept == pytest.approx(intercept)
    rss_gauss = float(((means - unit.predict(X)) ** 2).sum())
    assert unit.aic == pytest.approx(9 * np.log(rss_gauss / 9) + 8)
    assert line.aic == pytest.approx(least_squares_aic(line.rss, 9, 2))
    verdict = classify_curve(X, tuned=True, gaussian=unit, linear=line)
    assert verdict["delta_aic"] == pytest.approx(line.aic - unit.aic)
    assert verdict["classification"] == "bell-shaped" and verdict["centre_inside"]
    # the nearer end of the range (+1) is where the fitted bell falls least
    assert verdict["flank_drop"] == pytest.approx(1 - np.exp(-0.5 * ((1 - unit.centre) / unit.width) ** 2))


def test_a_peak_at_the_edge_or_outside_the_range_is_monotonic():
    """The Gaussian's centre must lie strictly inside the sampled distances: sampling only one flank of a bell
    (the peak at the last distance, or beyond it) is a monotonic curve."""
    for centre in (1.0, 1.4):
        curve = 1.0 + 4.0 * np.exp(-0.5 * ((X - centre) / 0.5) ** 2)
        result = analyze_axis(X, _trials(curve, seed=2, noise=0.05))
        assert result["classification"] == "monotonic", result


def test_too_few_distances_shown_gives_no_fit():
    trials = _trials(_bell(X), seed=0)
    trials[4:] = np.nan  # the run stopped early: 4 distances shown
    result = analyze_axis(X, trials)
    assert result["classification"] is None and result["gaussian"] is None
    assert result["mean"][4:] == [None] * 5
    with pytest.raises(ValueError, match="at least 5 different distances"):
        fit_gaussian(X[:4], _bell(X[:4]))


# ---------------------------------------------------------------------------- the metric and code files
def _metric(tmp_path, d=20, k=4, **arrays):
    basis, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((d, k)))
    values = {"eigvecs": basis, "eigvals": np.array([0.1, 3.0, 1.0, 0.5])[:k], **arrays}
    path = tmp_path / "metric.npz"
    np.savez(path, **{k: v for k, v in values.items() if v is not None})
    return path, basis


def test_metric_is_read_and_ranked_by_decreasing_eigenvalue(tmp_path):
    path, basis = _metric(tmp_path)
    vectors, values = load_metric(path)
    np.testing.assert_array_equal(values, [3.0, 1.0, 0.5, 0.1])
    np.testing.assert_array_equal(vectors, basis[:, [1, 2, 3, 0]])


def _pickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, eigvecs=np.array([np.eye(3)], dtype=object), eigvals=np.ones(3))
    return path


def _transposed(tmp_path):
    return _metric(tmp_path, d=4, k=4, eigvecs=np.random.default_rng(1).standard_normal((4, 4)))[0]


@pytest.mark.parametrize(("make", "expected"), [
    (lambda tmp: None, "experiment.metric: give the .npz of the generator's metric"),
    (lambda tmp: tmp / "nothing.npz", "experiment.metric: {path} does not exist"),
    (lambda tmp: _metric(tmp, eigvals=None)[0], "experiment.metric: {path} holds no array 'eigvals'"),
    (_pickled, "experiment.metric: {path}: array 'eigvecs' is a pickled object array"),
    (_transposed, "experiment.metric: {path}: the columns of eigvecs are not orthonormal"),
    (lambda tmp: _metric(tmp, eigvals=np.ones(3))[0], "eigvecs must be (d, k) and eigvals (k,)"),
    (lambda tmp: _metric(tmp, eigvals=np.array([1.0, np.nan, 1.0, 1.0]))[0], "'eigvals' holds NaN"),
])
def test_a_bad_metric_is_one_line_naming_the_file_and_array(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_metric(path)
    assert expected.format(path=path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_pickle_is_never_unpickled(tmp_path):
    path = tmp_path / "metric.npz"
    path.write_bytes(pickle.dumps({"eigvecs": np.eye(3), "eigvals": np.ones(3)}))
    with pytest.raises(ConfigError, match=r"experiment.metric: .*metric.npz is not a readable .npz"):
        load_metric(path)


def test_code_file_rules(tmp_path):
    np.savez(tmp_path / "code.npz", code=np.arange(5.0))
    code, source, run = source_code({"code": str(tmp_path / "code.npz")})
    np.testing.assert_array_equal(code, np.arange(5.0))
    assert run is None
    assert source == {"code": str((tmp_path / "code.npz").absolute())}
    np.savez(tmp_path / "codes.npz", codes=np.zeros((2, 5)))
    with pytest.raises(ConfigError, match=r"experiment.code: .*codes.npz holds no array 'code' \(it has codes\)"):
        source_code({"code": str(tmp_path / "codes.npz")})
    np.savez(tmp_path / "two.npz", code=np.zeros((2, 5)))
    with pytest.raises(ConfigError, match=r"'code' must be one code \(d,\), got shape \(2, 5\)"):
        source_code({"code": str(tmp_path / "two.npz")})
    with pytest.raises(ConfigError, match=r"experiment.source .* or experiment.code .*: give one"):
        source_code({})


def test_design_shows_the_centre_once_and_every_axis_through_it(tmp_path):
    path, _ = _metric(tmp_path)
    vectors, values = load_metric(path)
    centre = np.random.default_rng(4).standard_normal(20)
    fractions = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    design = build_axis_design(centre, vectors, values, ranks=[1, 3], random_axes=2, distances=fractions,
                               scale_kind="norm", repeats=2, block_size=7, seed=5)
    assert design.names == ["eig1", "eig3", "rnd1", "rnd2"] and design.kinds == ["top"] * 2 + ["random"] * 2
    np.testing.assert_array_equal(design.ranks, [1, 3, 0, 0])
    np.testing.assert_array_equal(design.eigvals[:2], [3.0, 0.5])
    assert np.isnan(design.eigvals[2:]).all()
    np.testing.assert_allclose(np.linalg.norm(design.directions, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(design.directions[1], vectors[:, 2], rtol=1e-12)
    assert len(design.image_ids) == 4 * 4 + 1 and design.image_ids.count("centre") == 1
    assert (design.grid_index[:, 2] == design.image_ids.index("centre")).all()
    norm = np.linalg.norm(centre)
    for a in range(4):
        for j, t in enumerate(fractions):
            np.testing.assert_allclose(design.codes[design.grid_index[a, j]],
                                       centre + t * norm * design.directions[a], rtol=0, atol=1e-5)
    assert len(design.order) == 2 * 17 and design.blocks == 5
    for r in range(2):  # each repeat a permutation of all images
        assert sorted(design.order[design.order[:, 1] == r, 0].tolist()) == list(range(17))
    again = build_axis_design(centre, vectors, values, ranks=[1, 3], random_axes=2, distances=fractions,
                              scale_kind="norm", repeats=2, block_size=7, seed=5)
    np.testing.assert_array_equal(again.order, design.order)
    np.testing.assert_array_equal(again.directions, design.directions)
