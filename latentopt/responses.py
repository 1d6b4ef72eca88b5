"""Responses in time: time bins, response and baseline windows, and the evoked response.

A subject with time-binned responses returns ``(n, channels, time_bins)`` arrays (spike counts or
rates per bin) and its ``time_bins_ms``: the ``(time_bins + 1,)`` bin edges in ms from image onset,
increasing. Bin ``i`` is ``[edges[i], edges[i + 1])``; a window ``(start, end)`` in ms selects the
bins lying wholly inside it (a bin that straddles a window's end is left out). The evoked response
is the mean over the response window's bins minus the mean over the baseline window's bins.

The default windows are those of Wang & Ponce 2026 (Nature Neuroscience, "Neuronal tuning aligns
dynamically with object and texture manifolds across the visual hierarchy"): response 50-200 ms
after image onset, baseline 0-45 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from latentopt.checks import ConfigError

__all__ = ["BASELINE_WINDOW_MS", "RESPONSE_WINDOW_MS", "Array", "check_window", "evoked_response", "window_mask"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

RESPONSE_WINDOW_MS = (50.0, 200.0)
"""Response window (ms after image onset) of Wang & Ponce 2026."""

BASELINE_WINDOW_MS = (0.0, 45.0)
"""Baseline window (ms after image onset) of Wang & Ponce 2026."""

_TOLERANCE_MS = 1e-9  # an edge within this of a window's end counts as on it (float edges such as 0.1 * k)


def check_window(value: Any, key: str) -> tuple[float, float]:
    """A window from a config: two finite numbers ``start < end`` in ms, as floats.

    Raises:
        ConfigError: naming ``key`` when ``value`` is not two finite numbers with ``start < end``.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{key} must be [start, end] in ms, got {value!r}")
    bounds = []
    for number in value:
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ConfigError(f"{key} must be two finite numbers [start, end] in ms, got {value!r}")
        bounds.append(float(number))
    if bounds[0] >= bounds[1]:
        raise ConfigError(f"{key}: the start must be before the end, got {value!r}")
    return bounds[0], bounds[1]


def window_mask(edges: np.ndarray | Sequence[float], window: Sequence[float], *, name: str = "window") -> np.ndarray:
    """Which bins lie wholly inside ``window``.

    Args:
        edges: ``(time_bins + 1,)`` increasing bin edges in ms.
        window: ``(start, end)`` in ms.
        name: what the window is, for the error message (``"response window"``).

    Returns:
        ``(time_bins,)`` bool mask: ``start <= edges[i]`` and ``edges[i + 1] <= end``.

    Raises:
        ValueError: naming the window when no bin lies inside it, or when the edges do not increase.
    """
    edges = np.asarray(edges, dtype=np.float64).reshape(-1)
    lo, hi = float(window[0]), float(window[1])
    if edges.shape[0] < 2 or not bool(np.all(np.diff(edges) > 0)):
        raise ValueError(f"{name} [{lo:g}, {hi:g}] ms: bin edges must be 2 or more increasing times, got {edges}")
    mask = (edges[:-1] >= lo - _TOLERANCE_MS) & (edges[1:] <= hi + _TOLERANCE_MS)
    if not mask.any():
        raise ValueError(f"no time bin lies inside the {name} [{lo:g}, {hi:g}] ms "
                         f"(bin edges {edges[0]:g} to {edges[-1]:g} ms)")
    return mask


def evoked_response(
    responses: Array,
    time_bins_ms: np.ndarray | Sequence[float],
    *,
    response_window_ms: Sequence[float] = RESPONSE_WINDOW_MS,
    baseline_window_ms: Sequence[float] | None = BASELINE_WINDOW_MS,
) -> Array:
    """Evoked response from time-binned responses: mean over the response window minus the baseline.

    Works on numpy arrays and torch tensors alike (a tensor stays differentiable). NaN in a bin
    that is averaged gives NaN (an image not shown).

    Args:
        responses: ``(n, channels, time_bins)`` spike counts or rates per bin.
        time_bins_ms: ``(time_bins + 1,)`` increasing bin edges in ms from image onset.
        response_window_ms: ``(start, end)`` ms; the bins wholly inside it are averaged.
        baseline_window_ms: ``(start, end)`` ms averaged the same way and subtracted, or None.

    Returns:
        ``(n, channels)`` in the unit of ``responses`` per bin, the type of ``responses``.

    Raises:
        ValueError: the responses do not fit the edges, or a window holds no bin (naming it).
    """
    edges = np.asarray(time_bins_ms, dtype=np.float64).reshape(-1)
    if responses.ndim != 3 or edges.shape[0] != responses.shape[2] + 1:
        raise ValueError(f"responses {tuple(responses.shape)} do not fit {edges.shape[0]} bin edges "
                         "(expected (n, channels, time_bins) with time_bins + 1 edges)")
    evoked = responses[..., window_mask(edges, response_window_ms, name="response window")].mean(2)
    if baseline_window_ms is not None:
        evoked = evoked - responses[..., window_mask(edges, baseline_window_ms, name="baseline window")].mean(2)
    return evoked
