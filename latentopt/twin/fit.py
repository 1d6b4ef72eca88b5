"""Linear readouts of backbone features, fitted to recorded channels with grouped cross-validation (numpy/scipy).

Conventions shared by every fit here:

* Rows are presentations; ``groups`` (``(n,)`` str or int) names the image of each row. Presentations of one
  image have the same features (rows of ``X`` that differ within a group are an error), so a fit works on
  **images**: ``X`` of each image and the mean response over its presentations. Ridge weights each image by its
  number of presentations, which makes it the same least-squares problem as fitting the presentations.
  Presentations with a non-finite response in any channel are left out of the fits and of ``r`` (their image
  still gets a held-out prediction).
* Folds are grouped (:func:`grouped_folds`): the presentations of one image are never split across folds.
* Held-out ``r`` per channel is Pearson's r over images between the held-out prediction of the image and the
  mean of its presentations' responses (the same statistic :func:`latentopt.twin.reliability.split_half_reliability`
  bounds; normalise with :func:`latentopt.twin.reliability.noise_ceiling_normalised`).
* Features are standardised with the training fold's (presentation-weighted) mean and standard deviation; the
  returned model predicts ``((x - x_mean) / x_std) @ weights + bias``.

Ridge (:func:`ridge_cv`): ``alphas`` are relative to the mean eigenvalue of the training fold's ``Z^T W Z``
(``Z`` the standardised features, ``W`` the presentation counts), i.e. ``lambda = alpha * trace(Z^T W Z) / F``.
The inner choice of alpha is per channel by efficient leave-one-image-out (the closed-form LOO residuals
``e_i / (1 - H_ii)`` of the weighted ridge, all alphas from one SVD; the fold's centring is kept fixed, as in
the usual GCV/LOO shortcut).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from latentopt.checks import ConfigError, integer

DEFAULT_ALPHAS = np.logspace(-3, 5, 17)


@dataclass
class ReadoutFit:
    """A fitted linear readout and its cross-validated quality.

    Attributes:
        method: ``"ridge"``, ``"pls"`` or ``"factorised"``.
        weights: ``(F, C)`` on standardised features (factorised: ``(K, C)`` feature weights).
        bias: ``(C,)``.
        x_mean, x_std: ``(F,)`` standardisation of the features (factorised: ``(K,)``, one per feature map).
        heldout_predictions: ``(n, C)``, each presentation's prediction by the fit of the fold that held its image out.
        r: ``(C,)`` held-out Pearson r (over images; see the module docstring).
        folds: number of outer folds.
        alphas: ``(C,)`` relative ridge alpha chosen per channel on all data (ridge), else None.
        fold_alphas: ``(folds, C)`` the alpha chosen inside each outer fold (ridge), else None.
        n_components: PLS components (pls), else None.
        spatial: ``(C, h, w)`` spatial masks (factorised), else None.
        seed: seed of the folds.
        n_images: distinct images with at least one finite response.
        details: method settings (JSON-serialisable).
    """

    method: str
    weights: np.ndarray
    bias: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    heldout_predictions: np.ndarray
    r: np.ndarray
    folds: int
    alphas: np.ndarray | None = None
    fold_alphas: np.ndarray | None = None
    n_components: int | None = None
    spatial: np.ndarray | None = None
    seed: int = 0
    n_images: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.bias.shape[0])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(n, F)`` features (factorised: ``(n, K, h, w)``) -> ``(n, C)`` predictions, float64."""
        X = np.asarray(X, dtype=np.float64)
        if self.method == "factorised":
            assert self.spatial is not None
            z = (X - self.x_mean[None, :, None, None]) / self.x_std[None, :, None, None]
            pooled = np.einsum("nkp,cp->nkc", z.reshape(*z.shape[:2], -1), self.spatial.reshape(self.n_channels, -1))
            return np.einsum("nkc,kc->nc", pooled, self.weights) + self.bias
        return ((X - self.x_mean) / self.x_std) @ self.weights + self.bias


def grouped_folds(groups: np.ndarray, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds of the rows that never split an image: ``[(train_idx, test_idx), ...]``, indices sorted.

    The distinct values of ``groups`` are shuffled (seeded) and dealt round-robin to the folds, so fold sizes in
    images differ by at most one.

    Raises:
        ConfigError: fewer distinct images than folds, or ``k`` < 2.
    """
    integer(k, "twin.folds", minimum=2)
    groups = np.asarray(groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    if len(keys) < k:
        raise ConfigError(f"twin.folds: {k} folds need at least {k} distinct images, got {len(keys)}")
    fold_of_key = np.empty(len(keys), dtype=np.int64)
    fold_of_key[np.random.default_rng(seed).permutation(len(keys))] = np.arange(len(keys)) % k
    fold_of_row = fold_of_key[inverse.ravel()]
    return [(np.flatnonzero(fold_of_row != f), np.flatnonzero(fold_of_row == f)) for f in range(k)]


@dataclass
class _Images:
    """The rows collapsed to images: features, mean responses and presentation counts (0 = no finite response)."""

    inverse: np.ndarray  # (n,) image index of each row
    X: np.ndarray  # (m, ...) features of each image
    Y: np.ndarray  # (m, C) mean finite response (0 where count == 0)
    counts: np.ndarray  # (m,) presentations with finite responses


def by_image(X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> _Images:
    """Collapse presentations to images (see the module docstring); checks shapes and features."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    groups = np.asarray(groups)
    if Y.ndim != 2 or X.shape[0] != Y.shape[0] or groups.shape != (Y.shape[0],):
        raise ConfigError(f"twin fit: features {X.shape}, responses {Y.shape} and image keys {groups.shape} "
                          "must have one row per presentation (responses (n, channels))")
    if not np.isfinite(X).all():
        raise ConfigError("twin fit: the features hold NaN or infinite values")
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    Xu = X[first]
    spread = np.abs(X - Xu[inverse]).max() if X.size else 0.0
    if spread > 1e-6 * max(1.0, float(np.abs(X).max())):
        raise ConfigError("twin fit: presentations of one image have different features (groups must name images)")
    valid = np.isfinite(Y).all(axis=1)
    counts = np.bincount(inverse[valid], minlength=len(first)).astype(np.float64)
    sums = np.zeros((len(first), Y.shape[1]))
    np.add.at(sums, inverse[valid], Y[valid])
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    return _Images(inverse=inverse, X=Xu, Y=means, counts=counts)


def image_folds(images: _Images, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`grouped_folds` of the rows, as (train, test) indices of images."""
    out = []
    for train_rows, test_rows in grouped_folds(groups, folds, seed):
        out.append((np.unique(images.inverse[train_rows]), np.unique(images.inverse[test_rows])))
    return out


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``a`` with the same column of ``b`` ``(m, C)``; NaN for a constant column."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=0) / denom, np.nan)


def _standardise(X: np.ndarray, w: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and standard deviation of the columns (std 1 for a constant column)."""
    total = w.sum()
    mean = (w @ X) / total
    var = (w @ (X - mean) ** 2) / max(total - ddof, 1e-12)
    std = np.sqrt(var)
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean, std


def _thin_svd(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Z = U diag(s) V^T`` without the null space: via the Gram matrix when ``Z`` is tall (fast), else an SVD."""
    m, f = Z.shape
    if m >= 2 * f:
        eig, V = np.linalg.eigh(Z.T @ Z)
        keep = eig > 1e-10 * max(float(eig.max()), 1e-300)
        s, V = np.sqrt(eig[keep]), V[:, keep]
        return (Z @ V) / s, s, V
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    keep = s > 1e-5 * max(float(s.max()), 1e-300)
    return U[:, keep], s[keep], Vt[keep].T


def _ridge_fit(X: np.ndarray, Y: np.ndarray, w: np.ndarray, alphas: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted ridge on images with the per-channel alpha chosen by closed-form leave-one-image-out."""
    mean, std = _standardise(X, w)
    sw = np.sqrt(w)[:, None]
    Z = (X - mean) / std * sw
    ybar = (w @ Y) / w.sum()
    Yw = (Y - ybar) * sw
    U, s, V = _thin_svd(Z)
    eig = s**2
    scale = float((Z**2).sum()) / Z.shape[1]  # mean eigenvalue of Z^T W Z
    lambdas = alphas * scale
    UtY = U.T @ Yw
    U2 = U**2
    loo = np.empty((len(alphas), Y.shape[1]))
    for a, lam in enumerate(lambdas):
        shrink = eig / (eig + lam)
        fitted = U @ (shrink[:, None] * UtY)
        leverage = U2 @ shrink
        loo[a] = (((Yw - fitted) / (1.0 - np.minimum(leverage, 1 - 1e-12))[:, None]) ** 2).sum(axis=0)
    best = np.argmin(loo, axis=0)
    coef = V @ ((s[:, None] / (eig[:, None] + lambdas[best][None, :])) * UtY)
    return {"weights": coef, "bias": ybar, "x_mean": mean, "x_std": std, "alpha": alphas[best]}


def _predict(model: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    return ((X - model["x_mean"]) / model["x_std"]) @ model["weights"] + model["bias"]


def _check_cv(images: _Images, Y: np.ndarray, X: np.ndarray, folds: int) -> None:
    if Y.shape[1] < 1:
        raise ConfigError("twin fit: no channel to fit")
    if int((images.counts > 0).sum()) < max(folds, 3):
        raise ConfigError(f"twin fit: {int((images.counts > 0).sum())} images with finite responses are too few")


def ridge_cv(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, *, alphas: np.ndarray = DEFAULT_ALPHAS,
             folds: int = 5, seed: int = 0) -> ReadoutFit:
    """Cross-validated ridge readout ``(n, F)`` features -> ``(n, C)`` responses (see the module docstring).

    Args:
        X: ``(n, F)`` features of each presentation.
        Y: ``(n, C)`` responses (NaN rows are left out).
        groups: ``(n,)`` image key of each presentation.
        alphas: candidate alphas relative to the mean eigenvalue of the training fold's ``Z^T W Z``.
        folds: outer grouped folds (held-out predictions and ``r``).
        seed: seed of the folds.

    Returns:
        a :class:`ReadoutFit` whose weights are the fit on all images (alpha per channel by LOO on all images).
    """
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if alphas.size == 0 or not np.all(np.isfinite(alphas)) or not np.all(alphas > 0):
        raise ConfigError(f"twin.alphas: positive finite numbers, got {alphas.tolist()}")
    images = by_image(X, Y, groups)
    if images.X.ndim != 2:
        raise ConfigError(f"twin fit: ridge needs (n, F) features, got {np.shape(X)} (factorised pooling?)")
    _check_cv(images, images.Y, images.X, folds)
    heldout = np.zeros((len(images.counts), images.Y.shape[1]))
    fold_alphas = []
    for train, test in image_folds(images, groups, folds, seed):
        train = train[images.counts[train] > 0]
        model = _ridge_fit(images.X[train], images.Y[train], images.counts[train], alphas)
        heldout[test] = _predict(model, images.X[test])
        fold_alphas.append(model["alpha"])
    seen = images.counts > 0
    r = pearson_columns(heldout[seen], images.Y[seen])
    final = _ridge_fit(images.X[seen], images.Y[seen], images.counts[seen], alphas)
    return ReadoutFit(method="ridge", weights=final["weights"], bias=final["bias"], x_mean=final["x_mean"],
                      x_std=final["x_std"], heldout_predictions=heldout[images.inverse], r=r, folds=folds,
                      alphas=final["alpha"], fold_alphas=np.array(fold_alphas), seed=seed, n_images=int(seen.sum()),
                      details={"alphas": alphas.tolist(), "alpha_scale": "mean eigenvalue of Z^T W Z",
                               "inner": "leave-one-image-out (closed form)"})


def pls_regression(X: np.ndarray, Y: np.ndarray, n_components: int, *, max_iter: int = 500,
                   tol: float = 1e-6) -> dict[str, np.ndarray]:
    """PLS2 regression by NIPALS (mode A, regression deflation) on centred, scaled ``X`` and ``Y``.

    The algorithm of Wegelin (2000, section 4.1) as ``sklearn.cross_decomposition.PLSRegression(scale=True)``
    runs it (the same power-method start, stopping rule and sign convention), so its predictions match.

    Args:
        X: ``(m, F)``; Y: ``(m, C)``.
        n_components: at most ``min(m, F)``.

    Returns:
        ``weights`` ``(F, C)`` on ``(X - x_mean) / x_std`` (std with ddof 1), ``bias`` (= the mean of Y),
        ``x_mean``, ``x_std``.
    """
    X = np.array(X, dtype=np.float64)
    Y = np.array(Y, dtype=np.float64)
    m, f = X.shape
    integer(n_components, "twin.n_components", minimum=1, maximum=min(m, f))
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    Xk, Yk = X - x_mean, Y - y_mean
    x_std, y_std = Xk.std(axis=0, ddof=1), Yk.std(axis=0, ddof=1)
    x_std[x_std == 0.0] = 1.0
    y_std[y_std == 0.0] = 1.0
    Xk /= x_std
    Yk /= y_std
    eps = np.finfo(np.float64).eps
    W = np.zeros((f, n_components))
    P = np.zeros((f, n_components))
    Q = np.zeros((Y.shape[1], n_components))
    for k in range(n_components):
        Yk[:, np.all(np.abs(Yk) < 10 * eps, axis=0)] = 0.0
        nonzero = [c for c in range(Yk.shape[1]) if np.any(np.abs(Yk[:, c]) > eps)]
        if not nonzero:
            W, P, Q = W[:, :k], P[:, :k], Q[:, :k]  # Y fully explained
            break
        y_score = Yk[:, nonzero[0]]
        old: np.ndarray | float = 100.0
        for _ in range(max_iter):
            x_w = Xk.T @ y_score / (y_score @ y_score)
            x_w /= np.sqrt(x_w @ x_w) + eps
            x_score = Xk @ x_w
            y_w = Yk.T @ x_score / (x_score @ x_score)
            y_score = Yk @ y_w / (y_w @ y_w + eps)
            diff = x_w - old
            if diff @ diff < tol or Yk.shape[1] == 1:
                break
            old = x_w
        if x_w[np.argmax(np.abs(x_w))] < 0:  # sign convention (sklearn's _svd_flip_1d)
            x_w = -x_w
        x_score = Xk @ x_w
        p = x_score @ Xk / (x_score @ x_score)
        Xk -= np.outer(x_score, p)
        q = x_score @ Yk / (x_score @ x_score)
        Yk -= np.outer(x_score, q)
        W[:, k], P[:, k], Q[:, k] = x_w, p, q
    rotations = W @ scipy.linalg.pinv(P.T @ W, check_finite=False)
    return {"weights": (rotations @ Q.T) * y_std, "bias": y_mean, "x_mean": x_mean, "x_std": x_std}


def pls_cv(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, *, n_components: int = 25, folds: int = 5,
           seed: int = 0) -> ReadoutFit:
    """Cross-validated PLS2 readout (:func:`pls_regression` on the images' mean responses, unweighted).

    ``n_components`` is capped at the smallest training fold's ``min(images, F)``. Same return type as
    :func:`ridge_cv`; ``n_components`` records the number used.
    """
    images = by_image(X, Y, groups)
    if images.X.ndim != 2:
        raise ConfigError(f"twin fit: PLS needs (n, F) features, got {np.shape(X)}")
    integer(n_components, "twin.n_components", minimum=1)
    _check_cv(images, images.Y, images.X, folds)
    splits = [(tr[images.counts[tr] > 0], te) for tr, te in image_folds(images, groups, folds, seed)]
    n_used = min(n_components, images.X.shape[1], *(len(tr) - 1 for tr, _ in splits))
    heldout = np.zeros((len(images.counts), images.Y.shape[1]))
    for train, test in splits:
        heldout[test] = _predict(pls_regression(images.X[train], images.Y[train], n_used), images.X[test])
    seen = images.counts > 0
    final = pls_regression(images.X[seen], images.Y[seen], n_used)
    return ReadoutFit(method="pls", weights=final["weights"], bias=final["bias"], x_mean=final["x_mean"],
                      x_std=final["x_std"], heldout_predictions=heldout[images.inverse],
                      r=pearson_columns(heldout[seen], images.Y[seen]), folds=folds, n_components=n_used, seed=seed,
                      n_images=int(seen.sum()), details={"algorithm": "NIPALS PLS2, scale=True"})
