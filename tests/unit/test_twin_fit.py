"""The twin's readout fits recover known readouts; folds, PLS and split-half reliability against references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from latentopt.checks import ConfigError
from latentopt.twin.factorised import factorised_cv
from latentopt.twin.fit import grouped_folds, pls_cv, pls_regression, ridge_cv
from latentopt.twin.reliability import noise_ceiling_normalised, split_half_reliability, split_halves


@pytest.fixture(scope="module")
def v1_features():
    """V1 avg features (40) and V4 avg features (80) of 150 natural images at 64 px."""
    from latentopt.natural import natural_set
    from latentopt.twin.features import Backbone

    ids, images = natural_set(150, (64, 64), seed=0)
    backbone = Backbone(["V1", "V4"], device="cpu")
    try:
        with torch.inference_mode():
            maps = backbone.features_torch(images)
        v1, v4 = (m.mean(dim=(2, 3)).double().numpy() for m in maps)
    finally:
        backbone.close()
    return ids, v1, v4


def test_grouped_folds_never_split_an_image():
    groups = np.repeat([f"img{k}" for k in range(23)], np.arange(23) % 4 + 1)
    folds = grouped_folds(groups, k=5, seed=3)
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(groups)))  # every row held out exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(groups)
    sizes = [len(set(groups[te])) for _, te in folds]
    assert max(sizes) - min(sizes) <= 1
    assert [te.tolist() for _, te in folds] == [te.tolist() for _, te in grouped_folds(groups, k=5, seed=3)]
    with pytest.raises(ConfigError, match=r"twin\.folds"):
        grouped_folds(groups[:3], k=5)


def test_ridge_recovers_a_linear_readout_of_backbone_features(v1_features):
    _, v1, _ = v1_features
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((v1.shape[1], 6))
    Y = v1 @ truth + rng.normal(0, 1, 6)
    fit = ridge_cv(v1, Y, np.arange(len(v1)), folds=5)
    assert fit.r.shape == (6,) and np.all(fit.r > 0.95), fit.r  # noise-free: held-out r > 0.95 every channel
    assert fit.heldout_predictions.shape == Y.shape and fit.alphas is not None and fit.alphas.shape == (6,)
    assert np.allclose(fit.predict(v1), Y, rtol=0, atol=0.05 * Y.std())  # the final fit reproduces the channels


def test_ridge_with_noise_and_repeats_is_near_the_ceiling(v1_features):
    ids, v1, _ = v1_features
    rng = np.random.default_rng(1)
    clean = v1 @ rng.standard_normal((v1.shape[1], 5))
    clean = (clean - clean.mean(0)) / clean.std(0)
    repeats = 6
    groups = np.repeat(np.array(ids), repeats)
    X = np.repeat(v1, repeats, axis=0)
    Y = clean[np.repeat(np.arange(len(ids)), repeats)] + rng.normal(0, 1.5, (len(groups), 5))
    fit = ridge_cv(X, Y, groups, folds=5)
    reliability = split_half_reliability(Y, groups, n_splits=50)
    normalised = noise_ceiling_normalised(fit.r, reliability)
    # mean of 6 repeats at noise s.d. 1.5: reliability ~ 1 / (1 + 2.25 / 6) = 0.73, a perfect r ~ 0.85
    assert np.all(fit.r < 0.92) and np.all(fit.r > 0.7), fit.r
    assert np.all(normalised > 0.9) and np.all(normalised < 1.1), normalised
    assert np.all(normalised - fit.r > 0.08)
    # the presentations' held-out predictions are one per image, the image's
    assert np.allclose(fit.heldout_predictions[0], fit.heldout_predictions[repeats - 1])
    with pytest.raises(ConfigError, match="different features"):
        ridge_cv(X + rng.normal(0, 1, X.shape), Y, groups)


def test_ridge_leaves_out_nan_presentations_and_checks_arguments(v1_features):
    _, v1, _ = v1_features
    Y = v1 @ np.random.default_rng(2).standard_normal((v1.shape[1], 2))
    Y[::7, 1] = np.nan
    fit = ridge_cv(v1, Y, np.arange(len(v1)))
    assert np.all(np.isfinite(fit.heldout_predictions)) and np.all(fit.r > 0.95)
    assert fit.n_images == len(v1) - len(Y[::7])
    with pytest.raises(ConfigError, match=r"twin\.alphas"):
        ridge_cv(v1, Y, np.arange(len(v1)), alphas=np.array([-1.0]))
    with pytest.raises(ConfigError, match="one row per presentation"):
        ridge_cv(v1, Y[:10], np.arange(len(v1)))


@pytest.mark.parametrize("n_targets", [1, 4])
def test_pls_matches_sklearn(n_targets):
    from sklearn.cross_decomposition import PLSRegression

    rng = np.random.default_rng(n_targets)
    X = rng.standard_normal((120, 30)) * rng.uniform(0.5, 3, 30) + 2
    Y = X[:, :6] @ rng.standard_normal((6, n_targets)) + rng.normal(0, 2, (120, n_targets))
    for k in (1, 5, 12):
        ours = pls_regression(X, Y, k)
        pred = ((X - ours["x_mean"]) / ours["x_std"]) @ ours["weights"] + ours["bias"]
        ref = PLSRegression(n_components=k, scale=True).fit(X, Y).predict(X).reshape(pred.shape)
        assert np.max(np.abs(pred - ref)) <= 1e-6 * np.max(np.abs(ref))


def test_pls_cv_held_out_predictions_match_sklearn_per_fold():
    from sklearn.cross_decomposition import PLSRegression

    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 12))
    Y = X @ rng.standard_normal((12, 3)) + rng.normal(0, 0.5, (60, 3))
    groups = np.arange(60)
    fit = pls_cv(X, Y, groups, n_components=4, folds=4, seed=1)
    for train, test in grouped_folds(groups, 4, seed=1):
        ref = PLSRegression(4).fit(X[train], Y[train]).predict(X[test])
        assert np.allclose(fit.heldout_predictions[test], ref, rtol=1e-6, atol=1e-9)
    assert fit.method == "pls" and fit.n_components == 4 and np.all(fit.r > 0.8)


def test_factorised_readout_recovers_a_spatial_by_feature_readout():
    rng = np.random.default_rng(0)
    n, K, h, w = 400, 8, 6, 6
    maps = rng.standard_normal((n, K, h, w)) + rng.standard_normal((n, K, 1, 1))  # shared per-map component
    yy, xx = np.mgrid[:h, :w]
    spatial = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0) for cy, cx in ((1, 4), (4, 1), (3, 3))])
    spatial /= spatial.sum(axis=(1, 2), keepdims=True)
    feature_w = rng.standard_normal((K, 3))
    Y = np.einsum("nkhw,chw,kc->nc", maps, spatial, feature_w) + 2.0
    fit = factorised_cv(maps, Y, np.arange(n), folds=5)
    assert np.all(fit.r > 0.95), fit.r  # noise-free held-out r
    assert fit.spatial is not None and fit.spatial.shape == (3, h, w)
    assert np.abs(fit.spatial - spatial).max() < 0.02  # the masks themselves are recovered
    assert np.allclose(fit.predict(maps), Y, atol=0.05 * Y.std())
    # the avg-pooled ridge cannot express the localised masks as well
    assert np.all(ridge_cv(maps.mean(axis=(2, 3)), Y, np.arange(n)).r < fit.r)


def test_split_half_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 6, 40)  # some images shown once: left out
    groups = np.repeat(np.arange(40), counts)
    Y = rng.standard_normal((40, 2))[groups] + rng.normal(0, 1, (len(groups), 2))
    ours = split_half_reliability(Y, groups, n_splits=3, seed=7)
    draws = np.random.default_rng(7)
    rs = []
    for _ in range(3):
        half, inverse = split_halves(groups, draws)
        a, b = [], []
        for img in range(40):
            rows0 = np.flatnonzero((inverse == img) & (half == 0))
            rows1 = np.flatnonzero((inverse == img) & (half == 1))
            if counts[img] < 2:
                assert len(rows0) == 0 and np.all(half[inverse == img] == -1)
                continue
            assert len(rows0) == counts[img] // 2 and len(rows0) + len(rows1) == counts[img]
            a.append(Y[rows0].mean(0))
            b.append(Y[rows1].mean(0))
        a_, b_ = np.array(a), np.array(b)
        rs.append([scipy.stats.pearsonr(a_[:, c], b_[:, c])[0] for c in range(2)])
    r = np.mean(rs, axis=0)
    assert np.allclose(ours, 2 * r / (1 + r), atol=1e-12)


def test_noise_ceiling_normalisation():
    assert np.allclose(noise_ceiling_normalised(np.array([0.6, 0.5]), np.array([0.36, 0.25])), [1.0, 1.0])
    assert np.allclose(noise_ceiling_normalised(np.array([0.6]), np.array([0.8]), convention="brainscore"), [0.75])
    assert np.isnan(noise_ceiling_normalised(np.array([0.3]), np.array([-0.1]))[0])
    with pytest.raises(ConfigError, match=r"twin\.ceiling"):
        noise_ceiling_normalised(np.array([0.3]), np.array([0.5]), convention="other")
    with pytest.raises(ConfigError, match="shown at least twice"):
        split_half_reliability(np.zeros((5, 1)), np.arange(5))
