"""Statistics of paired-generator alignment sessions (Wang & Ponce, Nature Neuroscience 2026).

In a session two CMA-ES threads (one per generator space, e.g. DeePSim fc6 and BigGAN) ran side by side in the
same blocks. The defaults follow the authors' original analysis (Neuro-ActMax-GAN-comparison); keyword options
switch to the choices of the later figure notebooks (Dynamic-Neuron-GAN-Alignment):

- evoked response: mean rate 50-200 ms after image onset minus the mean over 0-45 ms (:func:`evoked_trials`);
- the last block is dropped when either thread showed fewer than 10 images in it; a session needs 15 or more
  blocks (:func:`drop_short_last_block`, :func:`session_summary`);
- success: two-sample t-test of the pooled trials of 2 consecutive blocks from the best block (start clamped to
  at most len − 3) against blocks 0 and 1, p < 0.01 and t > 0 (:func:`thread_success`);
- activation normalised by one maximum over both threads and all blocks (:func:`normalised_trajectories`);
- "time constant": first block where the rise over block 0 exceeds 0.8 of its maximum (:func:`time_constant`);
- 90 % Clopper–Pearson intervals on success rates, paired t-tests between generators (:func:`area_table`);
- Benjamini–Hochberg FDR (:func:`benjamini_hochberg`), used across blocks and time bins by the dynamics in
  :mod:`latentopt.analysis.alignment_dynamics`.

A session's thread input is ``{thread: [block 0 trials, block 1 trials, ...]}``: per block a 1-D float array of
single-trial evoked responses (one per image shown), NaN for an image not shown (dropped everywhere).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from latentopt.responses import BASELINE_WINDOW_MS, RESPONSE_WINDOW_MS, evoked_response

__all__ = [
    "SuccessResult",
    "ThreadSummary",
    "area_table",
    "benjamini_hochberg",
    "clopper_pearson",
    "drop_short_last_block",
    "evoked_trials",
    "normalised_trajectories",
    "paired_t",
    "session_summary",
    "thread_success",
    "time_constant",
]

Threads = Mapping[str, Sequence[Any]]
"""``{thread: [per block: (trials,) single-trial evoked responses, NaN = not shown]}``."""


def evoked_trials(
    psth: Any,
    edges_ms: Any,
    *,
    window_ms: Sequence[float] = RESPONSE_WINDOW_MS,
    baseline_ms: Sequence[float] | None = BASELINE_WINDOW_MS,
) -> np.ndarray:
    """Single-trial evoked responses: mean rate in the window minus the mean in the baseline.

    Bins wholly inside a window are averaged (:func:`latentopt.responses.window_mask`).

    Args:
        psth: ``(n, time_bins)`` or ``(n, channels, time_bins)`` rates per bin (e.g. spikes/s), float.
        edges_ms: ``(time_bins + 1,)`` increasing bin edges in ms from image onset.
        window_ms: response window ``(start, end)`` in ms (Wang & Ponce 2026: 50-200).
        baseline_ms: baseline window in ms (0-45), or None for no baseline subtraction.

    Returns:
        ``(n,)`` or ``(n, channels)`` float64 in the unit of ``psth``; NaN where an averaged bin is NaN.

    Raises:
        ValueError: psth not 2-D or 3-D, not fitting the edges, or a window holding no bin (naming it).
    """
    values = np.asarray(psth, dtype=np.float64)
    if values.ndim not in (2, 3):
        raise ValueError(f"psth must be (n, time_bins) or (n, channels, time_bins), got shape {values.shape}")
    evoked = evoked_response(values if values.ndim == 3 else values[:, None, :], edges_ms,
                             response_window_ms=window_ms, baseline_window_ms=baseline_ms)
    return evoked if values.ndim == 3 else evoked[:, 0]


def _finite(trials: Any) -> np.ndarray:
    values = np.asarray(trials, dtype=np.float64).reshape(-1)
    return values[np.isfinite(values)]


def _block_means(blocks: Sequence[Any]) -> np.ndarray:
    """``(blocks,)`` mean of each block's finite trials; NaN for a block with none."""
    means = np.full(len(blocks), np.nan)
    for i, block in enumerate(blocks):
        kept = _finite(block)
        if kept.size:
            means[i] = kept.mean()
    return means


def _block_count(threads: Threads) -> int:
    """The common number of blocks of the threads (0 with no thread)."""
    counts = {name: len(blocks) for name, blocks in threads.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"the threads of a session must have the same number of blocks, got {counts}")
    return next(iter(counts.values()), 0)


def drop_short_last_block(threads: Threads, *, min_images: int = 10) -> dict[str, list[np.ndarray]]:
    """Drop the last block of every thread when any thread showed fewer than ``min_images`` images in it.

    Args:
        threads: ``{thread: [per block (trials,) evoked responses]}``, NaN = not shown; all threads the same
            number of blocks.
        min_images: finite trials a thread's last block needs (original analysis: 10).

    Returns:
        A new dict of new lists (the arrays are the input's, flattened to float64 1-D); the input is unchanged.

    Raises:
        ValueError: the threads have different numbers of blocks (naming each thread's count).
    """
    count = _block_count(threads)
    out = {name: [np.asarray(block, dtype=np.float64).reshape(-1) for block in blocks]
           for name, blocks in threads.items()}
    if count and any(_finite(blocks[-1]).size < min_images for blocks in out.values()):
        out = {name: blocks[:-1] for name, blocks in out.items()}
    return out


@dataclass(frozen=True)
class SuccessResult:
    """Whether a thread's activation rose: t-test of 2 blocks from the best block against blocks 0 and 1.

    Attributes:
        success: p < alpha and t > 0.
        t: two-sample t (scipy.stats.ttest_ind, equal variances) of best-pair trials vs first-pair trials; NaN
            when not computed.
        p: its two-sided p value; NaN when not computed.
        best_block: index of the highest block mean; None with fewer than 4 blocks or no finite trial.
        start: first block of the tested pair, ``clip(best_block, 0, len - 3)``; None when best_block is.
        n_first: finite trials pooled from blocks 0 and 1 (0 when not computed).
        n_best: finite trials pooled from blocks start and start + 1 (0 when not computed).
    """

    success: bool
    t: float
    p: float
    best_block: int | None
    start: int | None
    n_first: int
    n_best: int


def thread_success(blocks: Sequence[Any], *, alpha: float = 0.01) -> SuccessResult:
    """The success test of one thread (Wang & Ponce 2026, original analysis).

    Block means over finite trials; best block = argmax of the block means (NaN blocks ignored); start =
    min(best, len − 3) clamped at 0, so the tested pair never holds the last block (often incomplete). The pooled
    trials of blocks [start, start + 1] are compared with those of blocks [0, 1] by scipy.stats.ttest_ind.

    Args:
        blocks: per block a 1-D array of single-trial evoked responses, NaN = not shown.
        alpha: significance level (0.01 for the published success table; 0.05 masks other panels).

    Returns:
        A :class:`SuccessResult`. With fewer than 4 blocks (3 blocks would compare blocks 0-1 with themselves)
        or no finite trial, success is False, t and p are NaN and best_block/start are None. With fewer than 2
        finite trials in either pooled pair, success is False and t, p are NaN (best_block, start and the counts
        are still reported). Zero variance in both pairs gives scipy's result (NaN or ±inf t).
    """
    if len(blocks) < 4:
        return SuccessResult(False, np.nan, np.nan, None, None, 0, 0)
    means = _block_means(blocks)
    if not np.isfinite(means).any():
        return SuccessResult(False, np.nan, np.nan, None, None, 0, 0)
    best = int(np.nanargmax(means))
    start = max(0, min(best, len(blocks) - 3))
    first = np.concatenate([_finite(blocks[0]), _finite(blocks[1])])
    top = np.concatenate([_finite(blocks[start]), _finite(blocks[start + 1])])
    if first.size < 2 or top.size < 2:
        return SuccessResult(False, np.nan, np.nan, best, start, first.size, top.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: scipy's NaN is the answer
        result = stats.ttest_ind(top, first)
    t, p = float(result.statistic), float(result.pvalue)
    return SuccessResult(bool(p < alpha and t > 0), t, p, best, start, first.size, top.size)


def _normalise(means: np.ndarray, maximum: float) -> np.ndarray:
    return means / maximum if np.isfinite(maximum) and maximum > 0 else np.full_like(means, np.nan)


def normalised_trajectories(threads: Threads, *, shared: bool = True) -> dict[str, np.ndarray]:
    """Block-mean activation of each thread divided by a maximum block mean.

    Args:
        threads: ``{thread: [per block (trials,) evoked responses]}``, NaN = not shown.
        shared: True (original analysis): one maximum over both threads and all blocks, so the threads stay
            comparable; False (later notebooks): each thread divided by its own maximum.

    Returns:
        ``{thread: (blocks,) float64}``, at most 1; NaN for a block with no finite trial. A trajectory is all NaN
        when its maximum is not positive (no block evoked more than baseline: the ratio has no meaning).
    """
    means = {name: _block_means(blocks) for name, blocks in threads.items()}
    if not shared:
        return {name: _normalise(m, _nanmax(m)) for name, m in means.items()}
    maximum = _nanmax(np.concatenate([m for m in means.values()])) if means else np.nan
    return {name: _normalise(m, maximum) for name, m in means.items()}


def _nanmax(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def time_constant(trajectory: Any, *, fraction: float = 0.8) -> int | None:
    """First block where the rise over block 0 exceeds ``fraction`` of its maximum rise (not an exponential fit).

    Args:
        trajectory: ``(blocks,)`` block means (any scale; normalised or not gives the same block).
        fraction: 0.8 in the original analysis; 0.632 (1 − 1/e) is the exponential-like option. In (0, 1).

    Returns:
        The block index (int), or None when block 0 is NaN or the trajectory never rises above block 0.

    Raises:
        ValueError: fraction not in (0, 1), or the trajectory not 1-D.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    values = np.asarray(trajectory, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"trajectory must be 1-D (blocks,), got shape {values.shape}")
    if values.size == 0 or not np.isfinite(values[0]):
        return None
    rise = values - values[0]
    peak = _nanmax(rise)
    if not peak > 0:
        return None
    return int(np.flatnonzero(rise > fraction * peak)[0])


def clopper_pearson(successes: int, n: int, *, level: float = 0.90) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial rate from Beta quantiles.

    lo = Beta⁻¹(α/2; k, n − k + 1), hi = Beta⁻¹(1 − α/2; k + 1, n − k) with α = 1 − level; lo = 0 for k = 0 and
    hi = 1 for k = n.

    Args:
        successes: k, an integer in [0, n].
        n: trials, an integer >= 1.
        level: confidence level in (0, 1); 0.90 in Wang & Ponce 2026.

    Raises:
        ValueError: n < 1, k outside [0, n], or level outside (0, 1).
    """
    k, trials = int(successes), int(n)
    if k != successes or trials != n or trials < 1 or not 0 <= k <= trials:
        raise ValueError(f"clopper_pearson needs integers 0 <= successes <= n, n >= 1; got {successes}, {n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, trials - k + 1))
    hi = 1.0 if k == trials else float(stats.beta.ppf(1.0 - tail, k + 1, trials - k))
    return lo, hi


def paired_t(a: Any, b: Any) -> tuple[float, float, int]:
    """Paired t-test of a − b (scipy.stats.ttest_rel, two-sided) over the pairs where both are finite.

    Args:
        a, b: ``(n,)`` float arrays, paired by position.

    Returns:
        ``(t, p, pairs used)``; t and p are NaN with fewer than 2 pairs. Zero variance of the differences gives
        scipy's answer (NaN, or ±inf with p = 0 for a constant nonzero difference).

    Raises:
        ValueError: a and b differ in shape.
    """
    x, y = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired_t needs arrays of the same length, got {x.shape[0]} and {y.shape[0]}")
    both = np.isfinite(x) & np.isfinite(y)
    n = int(both.sum())
    if n < 2:
        return float("nan"), float("nan"), n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(x[both], y[both])
    return float(result.statistic), float(result.pvalue), n


def benjamini_hochberg(pvalues: Any, *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini–Hochberg false discovery rate control, NaN-tolerant.

    Over the m finite p values sorted ascending, the adjusted value of the i-th is min over j >= i of
    p_(j) · m / j (capped at 1); a test is rejected when its adjusted p <= alpha, which is the step-up rule
    "reject the k smallest, k the largest i with p_(i) <= i · alpha / m". NaN p values are not counted in m,
    stay NaN and are never rejected.

    Args:
        pvalues: p values in [0, 1] of any shape, NaN for tests not done.
        alpha: the FDR level.

    Returns:
        ``(rejected, adjusted)``: bool and float64 arrays of the input's shape.

    Raises:
        ValueError: a finite p value outside [0, 1].
    """
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.reshape(-1)
    finite = np.isfinite(flat)
    values = flat[finite]
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(f"p values must lie in [0, 1], got {values.min():g} to {values.max():g}")
    adjusted = np.full(flat.shape, np.nan)
    if values.size:
        order = np.argsort(values, kind="stable")
        scaled = values[order] * values.size / np.arange(1, values.size + 1)
        step_up = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
        kept = np.empty_like(values)
        kept[order] = step_up
        adjusted[finite] = kept
    rejected = np.zeros(flat.shape, dtype=bool)
    rejected[finite] = adjusted[finite] <= alpha
    return rejected.reshape(p.shape), adjusted.reshape(p.shape)


@dataclass(frozen=True)
class ThreadSummary:
    """One thread of a session, as the original analysis tabulates it.

    Attributes:
        success, t, p: :func:`thread_success` on the kept blocks.
        first_norm, last_norm: normalised activation of the first and last kept block.
        time_constant: :func:`time_constant` of the normalised trajectory (block index or None).
        blocks: blocks kept after :func:`drop_short_last_block`.
        valid: blocks >= min_blocks (invalid sessions are still summarised; leave them out of tables).
    """

    success: bool
    t: float
    p: float
    first_norm: float
    last_norm: float
    time_constant: int | None
    blocks: int
    valid: bool


def session_summary(
    threads: Threads,
    *,
    alpha: float = 0.01,
    min_images: int = 10,
    min_blocks: int = 15,
    shared: bool = True,
    fraction: float = 0.8,
) -> dict[str, ThreadSummary]:
    """Summarise one session: drop a short last block, test success, normalise, time constant.

    Args:
        threads: ``{thread: [per block (trials,) evoked responses]}``, NaN = not shown, threads of equal length.
        alpha: success level (:func:`thread_success`).
        min_images: see :func:`drop_short_last_block`.
        min_blocks: blocks a valid session needs after dropping ("more than 14 blocks").
        shared: see :func:`normalised_trajectories`.
        fraction: see :func:`time_constant`.

    Returns:
        ``{thread: ThreadSummary}`` in the input's order.

    Raises:
        ValueError: the threads have different numbers of blocks.
    """
    kept = drop_short_last_block(threads, min_images=min_images)
    count = _block_count(kept)
    trajectories = normalised_trajectories(kept, shared=shared)
    out = {}
    for name, blocks in kept.items():
        success = thread_success(blocks, alpha=alpha)
        trajectory = trajectories[name]
        first, last = (float(trajectory[0]), float(trajectory[-1])) if count else (np.nan, np.nan)
        out[name] = ThreadSummary(success.success, success.t, success.p, first, last,
                                  time_constant(trajectory, fraction=fraction), count, count >= min_blocks)
    return out


_ROW_KEYS = ("area", "generator", "session", "success", "last_norm", "first_norm")
_PAIR_FILTERS: dict[str, Callable[[bool, bool], bool]] = {
    "any_success": lambda a, b: a or b,
    "both_success": lambda a, b: a and b,
    "all": lambda a, b: True,
}


def _index_rows(rows: Sequence[Mapping[str, Any]], generators: tuple[str, str]) -> dict[Any, dict]:
    """``{area: {generator: {session: row}}}`` in order of first appearance; rows with valid False left out."""
    table: dict[Any, dict] = {}
    for i, row in enumerate(rows):
        missing = [key for key in _ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"area_table row {i} lacks {', '.join(missing)} (has {', '.join(map(str, row))})")
        if not row.get("valid", True):
            continue
        if row["generator"] not in generators:
            raise ValueError(f"area_table row {i}: generator {row['generator']!r} is not one of {generators}")
        sessions = table.setdefault(row["area"], {g: {} for g in generators})[row["generator"]]
        if row["session"] in sessions:
            raise ValueError(f"area_table row {i}: session {row['session']!r} appears twice for area "
                             f"{row['area']!r}, generator {row['generator']!r}")
        sessions[row["session"]] = row
    return table


def area_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    generators: tuple[str, str],
    level: float = 0.90,
    pairs: Literal["any_success", "both_success", "all"] = "any_success",
) -> list[dict[str, Any]]:
    """Per visual area: success counts with exact intervals, and paired t (A − B) of normalised activation.

    Args:
        rows: one mapping per (session, thread) with keys ``area``, ``generator``, ``session``, ``success``
            (bool), ``last_norm``, ``first_norm`` (float); a row with ``valid`` False is left out.
        generators: the two generator names (A, B), e.g. ``("DeePSim", "BigGAN")``; t > 0 means A higher.
        level: confidence level of the Clopper–Pearson intervals (0.90).
        pairs: which sessions with both generators enter the paired tests: ``"any_success"`` (original Fig. 4B:
            sessions where either thread succeeded, which gives the published N 10 / 37 / 86), ``"both_success"``,
            or ``"all"``.

    Returns:
        One dict per area in order of first appearance with ``area``; for each generator g: ``{g}_successes``,
        ``{g}_sessions``, ``{g}_rate`` (NaN with no session), ``{g}_ci_lo``, ``{g}_ci_hi`` (NaN with no session);
        and ``last_t``, ``last_p``, ``last_n``, ``first_t``, ``first_p``, ``first_n`` (:func:`paired_t`).

    Raises:
        ValueError: a row lacking a key, naming a generator not in ``generators``, or a repeated session.
    """
    if len(generators) != 2 or generators[0] == generators[1]:
        raise ValueError(f"generators must be two different names, got {generators!r}")
    if pairs not in _PAIR_FILTERS:
        raise ValueError(f"pairs must be one of {', '.join(_PAIR_FILTERS)}; got {pairs!r}")
    keep_pair = _PAIR_FILTERS[pairs]
    out = []
    for area, by_generator in _index_rows(rows, generators).items():
        entry: dict[str, Any] = {"area": area}
        for g in generators:
            n = len(by_generator[g])
            k = sum(bool(row["success"]) for row in by_generator[g].values())
            lo, hi = clopper_pearson(k, n, level=level) if n else (np.nan, np.nan)
            entry.update({f"{g}_successes": k, f"{g}_sessions": n, f"{g}_rate": k / n if n else np.nan,
                          f"{g}_ci_lo": lo, f"{g}_ci_hi": hi})
        first_a, first_b = (by_generator[g] for g in generators)
        paired = [(first_a[s], first_b[s]) for s in first_a
                  if s in first_b and keep_pair(bool(first_a[s]["success"]), bool(first_b[s]["success"]))]
        for key in ("last", "first"):
            a = np.array([float(ra[f"{key}_norm"]) for ra, _ in paired])
            b = np.array([float(rb[f"{key}_norm"]) for _, rb in paired])
            entry[f"{key}_t"], entry[f"{key}_p"], entry[f"{key}_n"] = paired_t(a, b)
        out.append(entry)
    return out

