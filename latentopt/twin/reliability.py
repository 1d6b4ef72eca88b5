"""How well recorded channels can be predicted at all: split-half reliability and noise-ceiling normalisation.

:func:`split_half_reliability` uses the images shown at least twice: each split deals every such image's
presentations into two halves at random (``floor(k / 2)`` and ``ceil(k / 2)`` of its ``k``), takes the mean
response of each half per image, and correlates the two half means across images (Pearson, per channel). The
r of many seeded splits is averaged and Spearman-Brown corrected, ``2 r / (1 + r)``: the estimated reliability
of the mean over all presentations, the target :mod:`latentopt.twin.fit` correlates its held-out predictions with.

:func:`noise_ceiling_normalised` is ``r / sqrt(reliability)`` by default: the correlation with the noisy mean
that a perfect model would reach is ``sqrt(reliability)`` (Spearman's correction for attenuation), so a perfect
model scores 1. Brain-Score's convention (``convention="brainscore"``) divides by the ceiling itself,
``r / reliability`` (its "ceiled" score of neural predictivity, with the ceiling = the Spearman-Brown corrected
split-half consistency).
"""

from __future__ import annotations

import numpy as np

from latentopt.checks import ConfigError, integer
from latentopt.twin.fit import pearson_columns

CONVENTIONS = ("attenuation", "brainscore")


def split_halves(groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random split: ``(half, image)`` per row: half 0 or 1, -1 for a row of an image shown once.

    ``image`` is the index of the row's image in ``np.unique(groups)``. Within each image, a uniformly random
    ``floor(k / 2)`` of its ``k`` presentations get half 0, the rest half 1 (one ``rng.random(n)`` draw).
    """
    _, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    order = np.lexsort((rng.random(len(inverse)), inverse))  # by image, random within image
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(inverse), dtype=np.int64)
    rank[order] = np.arange(len(inverse)) - starts[inverse[order]]
    half = np.where(rank < counts[inverse] // 2, 0, 1)
    half[counts[inverse] < 2] = -1
    return half, inverse


def split_half_reliability(responses: np.ndarray, groups: np.ndarray, *, n_splits: int = 100,
                           seed: int = 0) -> np.ndarray:
    """Spearman-Brown corrected split-half reliability per channel, ``(C,)`` (see the module docstring).

    Args:
        responses: ``(n, C)`` responses of the presentations; rows with a non-finite value are left out.
        groups: ``(n,)`` image key of each presentation.
        n_splits: random splits averaged (their mean Pearson r is corrected).
        seed: seed of the splits; split ``j`` uses the ``j``-th draw of ``np.random.default_rng(seed)``.

    Raises:
        ConfigError: fewer than 3 images with at least 2 (finite) presentations.
    """
    Y = np.asarray(responses, dtype=np.float64)
    groups = np.asarray(groups)
    if Y.ndim != 2 or groups.shape != (Y.shape[0],):
        raise ConfigError(f"twin reliability: responses {Y.shape} and image keys {groups.shape} need one row each")
    integer(n_splits, "twin.n_splits", minimum=1)
    valid = np.isfinite(Y).all(axis=1)
    Y, groups = Y[valid], groups[valid]
    _, counts = np.unique(groups, return_counts=True)
    if int((counts >= 2).sum()) < 3:
        raise ConfigError("twin reliability: needs at least 3 images shown at least twice")
    rng = np.random.default_rng(seed)
    rs = []
    for _ in range(n_splits):
        half, inverse = split_halves(groups, rng)
        means = []
        for h in (0, 1):
            rows = half == h
            sums = np.zeros((len(counts), Y.shape[1]))
            np.add.at(sums, inverse[rows], Y[rows])
            means.append(sums / np.maximum(np.bincount(inverse[rows], minlength=len(counts)), 1)[:, None])
        repeated = counts >= 2
        rs.append(pearson_columns(means[0][repeated], means[1][repeated]))
    r = np.nanmean(np.array(rs), axis=0) if n_splits > 1 else rs[0]
    return 2 * r / (1 + r)


def noise_ceiling_normalised(r: np.ndarray, reliability: np.ndarray, *, convention: str = "attenuation") -> np.ndarray:
    """Held-out r over the noise ceiling: ``r / sqrt(reliability)`` (``attenuation``) or ``r / reliability``
    (``brainscore``); NaN where the reliability is not positive."""
    if convention not in CONVENTIONS:
        raise ConfigError(f"twin.ceiling: one of {', '.join(CONVENTIONS)}, got {convention!r}")
    r = np.asarray(r, dtype=np.float64)
    rel = np.asarray(reliability, dtype=np.float64)
    ceiling = np.sqrt(np.where(rel > 0, rel, np.nan)) if convention == "attenuation" else np.where(rel > 0, rel, np.nan)
    return r / ceiling
