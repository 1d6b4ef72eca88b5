"""Population control, scored as Bashivan, Kar & DiCarlo (Science 2019) did, with our stated definitions.

Inputs are per-image means over repeats (``natural (N, C)``: the natural set; ``controllers (M, C)``: the
controller images) and, for the significance tests, the trials themselves.

- **Stretch** for channel ``k`` succeeds when the channel's mean response to its stretch controller exceeds its
  maximum over the natural set's per-image means. Significance per channel: a one-sided Welch t-test
  (``scipy.stats.ttest_ind(..., equal_var=False, alternative="greater")``) of the controller's trials against the
  trials of the channel's best natural image.
- **One-hot** for target ``k`` succeeds when the softmax score of ``k`` against all channels (responses normalised
  per channel by the natural set's mean and standard deviation over its per-image means) of its one-hot controller
  exceeds the best such score of any natural image.
- **Chance** by permutation: the controllers are assigned to channels (targets) at random (every permutation
  equally likely) and the success fraction is recomputed; chance is its mean over permutations and ``p`` the
  fraction of permutations that do at least as well as the real assignment. Under the weaker null that a
  controller is just one more natural image, the chance that it beats all ``N`` is ``1 / (N + 1)``; both are
  reported.
- **Twin prediction**: Pearson r per channel between the twin's predicted and the observed responses over the
  controller images; and the fraction of explainable variance of the response patterns predicted: the squared
  Pearson r over all (controller, channel) pairs of per-channel normalised responses, divided by the split-half
  (Spearman-Brown) reliability of those responses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

PERMUTATIONS = 10_000


def image_means(responses: np.ndarray, image_of: np.ndarray, n_images: int) -> np.ndarray:
    """Per-image mean over repeats: ``responses (p, C)``, ``image_of (p,)`` -> ``(n_images, C)`` (NaN: never shown)."""
    responses = np.asarray(responses, dtype=np.float64)
    out = np.full((n_images, responses.shape[1]), np.nan)
    for i in range(n_images):
        rows = responses[image_of == i]
        rows = rows[np.isfinite(rows).all(axis=1)]
        if len(rows):
            out[i] = rows.mean(axis=0)
    return out


def normalisation(natural: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (ddof 0; at least 1e-12) of the natural per-image means."""
    natural = np.asarray(natural, dtype=np.float64)
    return np.nanmean(natural, axis=0), np.maximum(np.nanstd(natural, axis=0), 1e-12)


def one_hot_scores(means: np.ndarray, mean: np.ndarray, std: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """``(n, C)`` softmax over channels of ``(r - mean) / std / temperature``: entry ``[i, k]`` is image ``i``'s
    one-hot score for target ``k``."""
    z = (np.asarray(means, dtype=np.float64) - mean) / std / temperature
    z = z - z.max(axis=1, keepdims=True)
    weights = np.exp(z)
    return weights / weights.sum(axis=1, keepdims=True)


def _permutation_chance(hits: np.ndarray, observed: float, rng: np.random.Generator,
                        permutations: int) -> tuple[float, float]:
    """``hits[i, j]``: would controller ``i`` succeed for target ``j``; chance = mean success of random assignments."""
    k = hits.shape[0]
    if k < 2:
        return float("nan"), float("nan")
    fractions = np.empty(permutations)
    columns = np.arange(k)
    for p in range(permutations):
        fractions[p] = hits[rng.permutation(k), columns].mean()
    return float(fractions.mean()), float((np.sum(fractions >= observed - 1e-12) + 1) / (permutations + 1))


@dataclass
class StretchResult:
    """Per stretched channel and overall; see the module docstring for the definitions."""

    channels: list[int]
    controller: np.ndarray  # (K,) mean response of channel k to its controller
    natural_max: np.ndarray  # (K,) the channel's best natural per-image mean
    success: np.ndarray  # (K,) bool
    p_values: np.ndarray  # (K,) one-sided Welch t-test, controller trials vs the best natural image's
    chance: float
    chance_p: float
    exchangeable_chance: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")


def stretch(natural: np.ndarray, controllers: np.ndarray, channels: list[int], *,
            natural_trials: list[np.ndarray] | None = None, controller_trials: list[np.ndarray] | None = None,
            alpha: float = 0.05, permutations: int = PERMUTATIONS, seed: int = 0) -> StretchResult:
    """Stretch success of controllers ``controllers[i]`` made for ``channels[i]``.

    Args:
        natural: ``(N, C)`` per-image means of the natural set.
        controllers: ``(K, C)`` per-image means of the stretch controllers, controller ``i`` for ``channels[i]``.
        channels: the channel each controller stretches.
        natural_trials: per natural image its trials ``(r_i, C)`` (for the t-tests); None: no tests.
        controller_trials: per controller its trials ``(r_i, C)``.
        alpha: significance level of the per-channel tests.
        permutations: random assignments for the chance level.
        seed: seed of the permutations.
    """
    natural, controllers = np.asarray(natural, dtype=np.float64), np.asarray(controllers, dtype=np.float64)
    cols = np.asarray(channels, dtype=int)
    nat_max = np.nanmax(natural[:, cols], axis=0)
    best_natural = np.nanargmax(natural[:, cols], axis=0)
    own = controllers[np.arange(len(cols)), cols]
    success = own > nat_max
    p_values = np.full(len(cols), np.nan)
    if natural_trials is not None and controller_trials is not None:
        for i, k in enumerate(cols):
            a, b = controller_trials[i][:, k], natural_trials[best_natural[i]][:, k]
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            if len(a) >= 2 and len(b) >= 2:
                with warnings.catch_warnings():  # identical trials (a noise-free subject): scipy warns, p is NaN/0
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p_values[i] = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    hits = controllers[:, cols] > nat_max[None, :]
    chance, chance_p = _permutation_chance(hits, float(success.mean()) if len(cols) else 0.0,
                                           np.random.default_rng(seed), permutations)
    result = StretchResult(list(map(int, cols)), own, nat_max, success, p_values, chance, chance_p,
                           1.0 / (np.isfinite(natural[:, cols]).all(axis=1).sum() + 1))
    significant = success & (p_values < alpha)
    result.summary = {
        "channels": len(cols), "succeeded": int(success.sum()), "fraction": result.fraction,
        "significant": int(significant.sum()) if np.isfinite(p_values).any() else None,
        "significant_fraction": float(significant.mean()) if np.isfinite(p_values).any() else None,
        "alpha": alpha, "test": "one-sided Welch t-test: controller trials vs the best natural image's trials",
        "chance_permutation": chance, "p_permutation": chance_p, "chance_exchangeable": result.exchangeable_chance,
        "median_ratio_to_natural_max": float(np.median(own / np.where(nat_max == 0, np.nan, nat_max)))
        if len(cols) else None,
    }
    return result


@dataclass
class OneHotResult:
    """Per one-hot target and overall; see the module docstring for the definitions."""

    targets: list[int]
    controller: np.ndarray  # (K,) the controller's one-hot score for its target
    natural_best: np.ndarray  # (K,) the best natural image's one-hot score for that target
    success: np.ndarray
    chance: float
    chance_p: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")


def one_hot(natural: np.ndarray, controllers: np.ndarray, targets: list[int], *, temperature: float = 1.0,
            permutations: int = PERMUTATIONS, seed: int = 0) -> OneHotResult:
    """One-hot success of controllers ``controllers[i]`` made for target ``targets[i]``.

    Args:
        natural: ``(N, C)`` per-image means of the natural set (also the normalisation's source).
        controllers: ``(K, C)`` per-image means of the one-hot controllers.
        targets: the target of each controller.
        temperature: the softmax's temperature (as in synthesis).
    """
    mean, std = normalisation(natural)
    nat_scores = one_hot_scores(natural[np.isfinite(natural).all(axis=1)], mean, std, temperature=temperature)
    ctl_scores = one_hot_scores(controllers, mean, std, temperature=temperature)
    cols = np.asarray(targets, dtype=int)
    best = nat_scores[:, cols].max(axis=0)
    own = ctl_scores[np.arange(len(cols)), cols]
    success = own > best
    hits = ctl_scores[:, cols] > best[None, :]
    chance, chance_p = _permutation_chance(hits, float(success.mean()) if len(cols) else 0.0,
                                           np.random.default_rng(seed + 1), permutations)
    result = OneHotResult(list(map(int, cols)), own, best, success, chance, chance_p)
    result.summary = {"targets": len(cols), "succeeded": int(success.sum()), "fraction": result.fraction,
                      "chance_permutation": chance, "p_permutation": chance_p, "temperature": temperature,
                      "normalisation": "per channel by the natural set's mean and std over its per-image means"}
    return result


def split_half(trials: list[np.ndarray], *, splits: int = 100, seed: int = 0) -> np.ndarray:
    """Per-column split-half reliability (Spearman-Brown corrected) of per-image trials ``trials[i]`` ``(r_i, C)``.

    :func:`latentopt.twin.reliability.split_half_reliability` on the trials with their image as group (aborted,
    non-finite trials left out); NaN per column when fewer than 3 images have 2 or more trials.
    """
    from latentopt.checks import ConfigError
    from latentopt.twin.reliability import split_half_reliability

    width = trials[0].shape[1] if trials else 0
    if not trials:
        return np.zeros(0)
    responses = np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1, width) for t in trials])
    groups = np.repeat(np.arange(len(trials)), [len(t) for t in trials])
    try:
        return split_half_reliability(responses, groups, n_splits=splits, seed=seed)
    except ConfigError:  # too few repeated images
        return np.full(width, np.nan)


def pearson_r(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per-column Pearson r of ``(n, C)`` arrays (NaN for a constant column)."""
    from latentopt.twin.fit import pearson_columns

    return pearson_columns(np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64))


def twin_prediction(predicted: np.ndarray, observed: np.ndarray, *, natural_observed: np.ndarray,
                    natural_predicted: np.ndarray, trials: list[np.ndarray] | None = None) -> dict[str, Any]:
    """How well the twin predicted the subject's responses to the controllers.

    Args:
        predicted: ``(M, C)`` the twin's responses to the controllers.
        observed: ``(M, C)`` the subject's per-image means.
        natural_observed, natural_predicted: ``(N, C)`` the same for the natural set (each side is normalised
            per channel by its own natural-set mean and std, so the twin's scale does not matter).
        trials: per controller its trials (for the reliability of the patterns); None: not corrected.
    """
    r = pearson_r(predicted, observed)
    mp, sp = normalisation(natural_predicted)
    mo, so = normalisation(natural_observed)
    zp, zo = (predicted - mp) / sp, (observed - mo) / so
    pattern_r = float(pearson_r(zp.reshape(-1, 1), zo.reshape(-1, 1))[0])
    reliability = float("nan")
    if trials is not None:
        normalised = [(t - mo) / so for t in trials]
        # one "image" per (controller, channel) pair: the reliability of the whole pattern set
        pairs = [t[:, [j]] for t in normalised for j in range(t.shape[1])]
        reliability = float(split_half(pairs)[0]) if pairs else float("nan")
    explained = pattern_r**2 / reliability if np.isfinite(reliability) and reliability > 0 else float("nan")
    return {"r_per_channel": r.tolist(), "median_r": float(np.nanmedian(r)) if np.isfinite(r).any() else None,
            "pattern_r": pattern_r, "pattern_reliability": reliability,
            "explained_variance_fraction": explained,
            "definition": "squared Pearson r over all (controller, channel) pairs of responses normalised per "
                          "channel by the natural set, divided by their split-half (Spearman-Brown) reliability"}
