"""Response dynamics of paired-generator alignment sessions (Wang & Ponce, Nature Neuroscience 2026).

The paper re-bins each block's mean PSTH into 10 ms bins from 0 to 200 ms, divides every bin by one universal
normaliser (the largest 50-200 ms evoked block mean over both threads), and compares the generators across
sessions with a paired t-test per block (Benjamini–Hochberg across blocks) or per time bin (BH across bins:
"temporal attribution", which finds BigGAN driving PIT beyond ~80 ms).

A thread's PSTH input is ``{thread: [per block (trials, time_bins) rates per bin]}`` with the recorded
``(time_bins + 1,)`` bin edges in ms; a trial (row) with any non-finite bin counts as not shown and is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentopt.analysis.alignment import benjamini_hochberg, paired_t
from latentopt.responses import BASELINE_WINDOW_MS, RESPONSE_WINDOW_MS, evoked_response, window_mask

__all__ = [
    "Attribution",
    "bin_trajectories",
    "per_block_paired_tests",
    "rebinned_edges",
    "temporal_attribution",
    "universal_normaliser",
]

_EDGE_TOLERANCE_MS = 1e-6  # a bin edge this close to another counts as the same time (float edges such as 0.1 k)


def rebinned_edges(*, bin_ms: float = 10.0, span_ms: Sequence[float] = (0.0, 200.0)) -> np.ndarray:
    """``(bins + 1,)`` float64 edges in ms of non-overlapping ``bin_ms`` bins covering ``span_ms``.

    Raises:
        ValueError: bin_ms not positive, or the span not a whole number of bins (naming both).
    """
    start, end = float(span_ms[0]), float(span_ms[1])
    if not bin_ms > 0 or not end > start:
        raise ValueError(f"bin_ms must be positive and span_ms increasing, got bin_ms={bin_ms}, span_ms={span_ms}")
    count = round((end - start) / bin_ms)
    if count < 1 or abs(count * bin_ms - (end - start)) > _EDGE_TOLERANCE_MS:
        raise ValueError(f"span [{start:g}, {end:g}] ms is not a whole number of {bin_ms:g} ms bins")
    return start + bin_ms * np.arange(count + 1, dtype=np.float64)


def _rebin_weights(edges: np.ndarray, bin_ms: float, span_ms: Sequence[float]) -> np.ndarray:
    """``(time_bins, bins)`` weights: column j averages the recorded bins inside new bin j, weighted by width."""
    new = rebinned_edges(bin_ms=bin_ms, span_ms=span_ms)
    shown = np.array2string(edges, separator=", ", threshold=12, formatter={"float_kind": lambda x: f"{x:g}"})
    for edge in new:
        if not np.any(np.abs(edges - edge) <= _EDGE_TOLERANCE_MS):
            raise ValueError(f"bins of {bin_ms:g} ms over [{new[0]:g}, {new[-1]:g}] ms are not tiled by the "
                             f"recorded bins (edges {shown} ms): no recorded edge at {edge:g} ms")
    widths = np.diff(edges)
    weights = np.zeros((edges.size - 1, new.size - 1))
    for j in range(new.size - 1):
        inside = window_mask(edges, (new[j], new[j + 1]), name=f"bin {j}")
        weights[inside, j] = widths[inside] / widths[inside].sum()
    return weights


def _block_mean_psth(name: str, blocks: Sequence[Any], time_bins: int) -> np.ndarray:
    """``(blocks, time_bins)`` mean over each block's fully finite trials; NaN rows for blocks with none."""
    means = np.full((len(blocks), time_bins), np.nan)
    for i, block in enumerate(blocks):
        trials = np.asarray(block, dtype=np.float64)
        if trials.ndim != 2 or trials.shape[1] != time_bins:
            raise ValueError(f"thread {name!r} block {i}: PSTH must be (trials, {time_bins}) to fit the bin "
                             f"edges, got shape {trials.shape}")
        kept = trials[np.isfinite(trials).all(axis=1)]
        if kept.shape[0]:
            means[i] = kept.mean(axis=0)
    return means


def _edges(edges_ms: Any) -> np.ndarray:
    edges = np.asarray(edges_ms, dtype=np.float64).reshape(-1)
    if edges.size < 2 or not bool(np.all(np.diff(edges) > 0)):
        raise ValueError(f"bin edges must be 2 or more increasing times in ms, got {edges}")
    return edges


def bin_trajectories(
    psth_per_thread: Mapping[str, Sequence[Any]],
    edges_ms: Any,
    *,
    bin_ms: float = 10.0,
    span_ms: Sequence[float] = (0.0, 200.0),
) -> dict[str, np.ndarray]:
    """Block-mean rates re-binned into non-overlapping ``bin_ms`` bins: one trajectory over blocks per bin.

    Each block's fully finite trials are averaged per recorded bin, then the recorded bins inside each new bin
    are averaged weighted by their widths (rates, so a 20 ms bin of two 10 ms bins is their mean). Divide by
    :func:`universal_normaliser` for the paper's normalised trajectories.

    Args:
        psth_per_thread: ``{thread: [per block (trials, time_bins) rates per bin]}``.
        edges_ms: ``(time_bins + 1,)`` increasing recorded bin edges in ms from image onset.
        bin_ms: new bin width in ms (10 in Wang & Ponce 2026; 20, 25, 50 are options).
        span_ms: ``(start, end)`` ms the new bins cover (0-200).

    Returns:
        ``{thread: (blocks, bins) float64}`` with ``bins = (end − start) / bin_ms``; NaN rows for blocks with no
        finite trial. The bins' edges are :func:`rebinned_edges` of the same options.

    Raises:
        ValueError: the recorded bins do not tile the new ones (naming bin_ms and the recorded edges), or a
            block's PSTH does not fit the edges (naming thread and block).
    """
    edges = _edges(edges_ms)
    weights = _rebin_weights(edges, bin_ms, span_ms)
    return {name: _block_mean_psth(name, blocks, edges.size - 1) @ weights for name, blocks in psth_per_thread.items()}


def universal_normaliser(
    psth_per_thread: Mapping[str, Sequence[Any]],
    edges_ms: Any,
    *,
    window_ms: Sequence[float] = RESPONSE_WINDOW_MS,
    baseline_ms: Sequence[float] | None = BASELINE_WINDOW_MS,
) -> float:
    """The one normaliser of a session's dynamics: the largest evoked block mean over both threads and blocks.

    The evoked response of a block mean PSTH (mean in ``window_ms`` minus mean in ``baseline_ms``, as
    :func:`latentopt.analysis.alignment.evoked_trials`); the same trials as :func:`bin_trajectories` are used.
    Every bin of every block of both threads is divided by this one number, so bins stay comparable in time.

    Args:
        psth_per_thread: ``{thread: [per block (trials, time_bins) rates per bin]}``.
        edges_ms: ``(time_bins + 1,)`` increasing bin edges in ms.
        window_ms: the response window (50-200 ms).
        baseline_ms: the baseline window (0-45 ms), or None for none.

    Returns:
        The maximum (unit of the rates), NaN when no block has a finite trial.
    """
    edges = _edges(edges_ms)
    best = np.nan
    for name, blocks in psth_per_thread.items():
        means = _block_mean_psth(name, blocks, edges.size - 1)
        evoked = evoked_response(means[:, None, :], edges, response_window_ms=window_ms,
                                 baseline_window_ms=baseline_ms)[:, 0]
        if np.isfinite(evoked).any():
            best = float(np.nanmax(evoked)) if not np.isfinite(best) else max(best, float(np.nanmax(evoked)))
    return best


def _columns(a: Any, b: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"a and b must both be (sessions, {what}) of one shape, got {x.shape} and {y.shape}")
    return x, y


def _paired_columns(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tests = [paired_t(x[:, j], y[:, j]) for j in range(x.shape[1])]
    return np.array([t for t, _, _ in tests]), np.array([p for _, p, _ in tests])


def per_block_paired_tests(a: Any, b: Any, *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block, a paired t-test of A against B across sessions; Benjamini–Hochberg across blocks.

    Args:
        a, b: ``(sessions, blocks)`` normalised activation of generators A and B, paired by row (the paper uses
            sessions where both threads succeeded); NaN where a session has no such block (left out pairwise).
        alpha: the FDR level.

    Returns:
        ``(t, p, rejected)``, each ``(blocks,)``: scipy.stats.ttest_rel of A − B on the finite pairs (NaN with
        fewer than 2), and the BH rejections at ``alpha`` (a NaN p is never rejected).
    """
    x, y = _columns(a, b, "blocks")
    t, p = _paired_columns(x, y)
    return t, p, benjamini_hochberg(p, alpha=alpha)[0]


@dataclass(frozen=True)
class Attribution:
    """Which generator drives which part of the response in time.

    Attributes:
        t, p: ``(bins,)`` paired t (A − B) and two-sided p per time bin.
        rejected: ``(bins,)`` bool, Benjamini–Hochberg across bins.
        advantage_a_ms: ``(start, end)`` ms of each run of contiguous rejected bins with t > 0 (A higher).
        advantage_b_ms: the same for t < 0 (B higher).
    """

    t: np.ndarray
    p: np.ndarray
    rejected: np.ndarray
    advantage_a_ms: list[tuple[float, float]]
    advantage_b_ms: list[tuple[float, float]]


def _runs(mask: np.ndarray, edges: np.ndarray) -> list[tuple[float, float]]:
    """``(start, end)`` ms of each run of True bins."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
    return [(float(edges[s]), float(edges[e])) for s, e in zip(starts, ends, strict=True)]


def temporal_attribution(a: Any, b: Any, bin_edges_ms: Any, *, alpha: float = 0.05) -> Attribution:
    """Per time bin, a two-sided paired t-test of A against B across sessions; BH across bins; runs in ms.

    Args:
        a, b: ``(sessions, bins)`` normalised responses per time bin (e.g. of the last block), paired by row;
            NaN pairs are left out per bin.
        bin_edges_ms: ``(bins + 1,)`` the bins' edges in ms (:func:`rebinned_edges`).
        alpha: the FDR level.

    Returns:
        An :class:`Attribution`.

    Raises:
        ValueError: shapes that do not agree.
    """
    x, y = _columns(a, b, "bins")
    edges = _edges(bin_edges_ms)
    if edges.size != x.shape[1] + 1:
        raise ValueError(f"{x.shape[1]} time bins need {x.shape[1] + 1} bin edges, got {edges.size}")
    t, p = _paired_columns(x, y)
    rejected = benjamini_hochberg(p, alpha=alpha)[0]
    return Attribution(t, p, rejected, _runs(rejected & (t > 0), edges), _runs(rejected & (t < 0), edges))
