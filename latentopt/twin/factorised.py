"""The factorised spatial x feature readout (Klindt et al. 2017): one spatial mask and one feature vector per channel.

``r_c = sum_k w_ck sum_p s_c,p Z_k,p + b_c`` on feature maps ``(K, h, w)`` pooled to at most 7 x 7 (pooling
``"factorised"`` of :mod:`latentopt.twin.features`), standardised per feature map (``Z = (F - mean_k) / std_k``,
one mean and std per map over images and positions). Fitted by alternating ridge, all channels at once:

1. start from a uniform mask ``s_c = 1 / (h w)`` (the global average);
2. fix ``s``: ridge of ``y_c`` on the pooled features ``sum_p s_c,p Z_k,p`` -> ``w_c`` (and ``b_c``);
3. fix ``w``: ridge of ``y_c`` on the feature-weighted maps ``sum_k w_ck Z_k,p`` -> ``s_c``; with
   ``nonneg=True`` the mask is projected onto ``s >= 0``; the mask is rescaled to ``sum |s| = 1`` and ``w``
   takes the scale;
4. repeat 2-3 ``n_iter`` times, then a last step 2.

Each ridge penalty is relative to the mean eigenvalue of its design's Gram matrix (``alpha_w``, ``alpha_s``).
Fits work on images (mean responses, weighted by presentations), as :mod:`latentopt.twin.fit` explains; held-out
``r`` uses the same grouped folds.
"""

from __future__ import annotations

import numpy as np

from latentopt.checks import ConfigError, finite_number, integer
from latentopt.twin.fit import ReadoutFit, by_image, image_folds, pearson_columns


def _batched_ridge(D: np.ndarray, Y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel weighted ridge with intercept: ``D (C, m, d)``, ``Y (m, C)`` -> coef ``(C, d)``, bias ``(C,)``."""
    total = w.sum()
    d_mean = np.einsum("m,cmd->cd", w, D) / total
    y_mean = (w @ Y) / total
    Dc = (D - d_mean[:, None, :]) * np.sqrt(w)[None, :, None]
    Yc = ((Y - y_mean) * np.sqrt(w)[:, None]).T[:, :, None]  # (C, m, 1)
    G = np.matmul(Dc.transpose(0, 2, 1), Dc)  # (C, d, d)
    scale = np.trace(G, axis1=1, axis2=2) / G.shape[1]
    G = G + (alpha * np.maximum(scale, 1e-12))[:, None, None] * np.eye(G.shape[1])[None]
    coef = np.linalg.solve(G, np.matmul(Dc.transpose(0, 2, 1), Yc))[:, :, 0]
    return coef, y_mean - np.einsum("cd,cd->c", coef, d_mean)


def _fit(X: np.ndarray, Y: np.ndarray, w: np.ndarray, *, alpha_w: float, alpha_s: float, n_iter: int,
         nonneg: bool) -> dict[str, np.ndarray]:
    """Alternating ridge on images: ``X (m, K, h, w)``, ``Y (m, C)``, weights ``w (m,)``."""
    m, k, h, wd = X.shape
    total = w.sum()
    mean = np.einsum("m,mkp->k", w, X.reshape(m, k, -1)) / (total * h * wd)
    var = np.einsum("m,mkp->k", w, (X.reshape(m, k, -1) - mean[None, :, None]) ** 2) / (total * h * wd)
    std = np.sqrt(var)
    std[std <= 1e-12] = 1.0
    Z = (X.reshape(m, k, -1) - mean[None, :, None]) / std[None, :, None]  # (m, K, P)
    n_ch = Y.shape[1]
    S = np.full((n_ch, h * wd), 1.0 / (h * wd))
    for step in range(n_iter + 1):
        pooled = np.einsum("mkp,cp->cmk", Z, S)  # (C, m, K)
        W, b = _batched_ridge(pooled, Y, w, alpha_w)
        if step == n_iter:
            break
        maps = np.einsum("mkp,ck->cmp", Z, W)  # (C, m, P)
        S, _ = _batched_ridge(maps, Y, w, alpha_s)
        if nonneg:
            S = np.maximum(S, 0.0)
        norm = np.abs(S).sum(axis=1)
        dead = norm <= 1e-12
        S[dead] = 1.0 / (h * wd)  # a channel whose mask vanished restarts from the average
        S[~dead] /= norm[~dead, None]
    return {"weights": W.T, "bias": b, "x_mean": mean, "x_std": std, "spatial": S.reshape(n_ch, h, wd)}


def _predict(model: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    m, k = X.shape[:2]
    Z = (X.reshape(m, k, -1) - model["x_mean"][None, :, None]) / model["x_std"][None, :, None]
    spatial = model["spatial"].reshape(model["spatial"].shape[0], -1)
    return np.einsum("mkp,cp,kc->mc", Z, spatial, model["weights"], optimize=True) + model["bias"]


def factorised_cv(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, *, alpha_w: float = 1e-2,
                  alpha_s: float = 1e-2, n_iter: int = 8, nonneg: bool = True, folds: int = 5,
                  seed: int = 0) -> ReadoutFit:
    """Cross-validated factorised readout of ``(n, K, h, w)`` feature maps -> ``(n, C)`` responses.

    Args:
        X: ``(n, K, h, w)`` feature maps of each presentation.
        Y: ``(n, C)`` responses; groups: ``(n,)`` image keys.
        alpha_w, alpha_s: ridge penalties of the feature and spatial steps, relative to the mean eigenvalue.
        n_iter: alternations (feature step, spatial step).
        nonneg: keep the spatial masks non-negative.
        folds, seed: the grouped outer folds.

    Returns:
        a :class:`~latentopt.twin.fit.ReadoutFit` with ``weights (K, C)``, ``spatial (C, h, w)``, ``x_mean``
        and ``x_std`` ``(K,)``; the fit on all images.
    """
    alpha_w = finite_number(alpha_w, "twin.alpha_w", minimum=0.0)
    alpha_s = finite_number(alpha_s, "twin.alpha_s", minimum=0.0)
    integer(n_iter, "twin.n_iter", minimum=1, maximum=100)
    if np.ndim(X) != 4:
        raise ConfigError(f"twin fit: the factorised readout needs (n, K, h, w) feature maps, got {np.shape(X)}")
    images = by_image(X, Y, groups)
    if int((images.counts > 0).sum()) < max(folds, 3):
        raise ConfigError(f"twin fit: {int((images.counts > 0).sum())} images with finite responses are too few")
    settings = {"alpha_w": alpha_w, "alpha_s": alpha_s, "n_iter": n_iter, "nonneg": bool(nonneg)}
    heldout = np.zeros((len(images.counts), images.Y.shape[1]))
    for train, test in image_folds(images, groups, folds, seed):
        train = train[images.counts[train] > 0]
        model = _fit(images.X[train], images.Y[train], images.counts[train], **settings)  # type: ignore[arg-type]
        heldout[test] = _predict(model, images.X[test])
    seen = images.counts > 0
    final = _fit(images.X[seen], images.Y[seen], images.counts[seen], **settings)  # type: ignore[arg-type]
    return ReadoutFit(method="factorised", weights=final["weights"], bias=final["bias"], x_mean=final["x_mean"],
                      x_std=final["x_std"], heldout_predictions=heldout[images.inverse],
                      r=pearson_columns(heldout[seen], images.Y[seen]), folds=folds, spatial=final["spatial"],
                      seed=seed, n_images=int(seen.sum()), details=settings)
