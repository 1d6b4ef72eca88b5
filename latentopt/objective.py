"""The Objective interface: responses in, one score per image out (higher is better)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Wang & Ponce 2026: response window 50-200 ms after image onset, baseline 0-45 ms.
RESPONSE_WINDOW_MS = (50.0, 200.0)
BASELINE_WINDOW_MS = (0.0, 45.0)


def _window_mask(edges: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Bins ``[edges[i], edges[i+1])`` lying inside ``window`` (ms)."""
    lo, hi = float(window[0]), float(window[1])
    mask = (edges[:-1] >= lo - 1e-9) & (edges[1:] <= hi + 1e-9)
    if not mask.any():
        raise ValueError(f"no time bin lies inside the window {lo:g}-{hi:g} ms (bin edges {edges[0]:g}-{edges[-1]:g})")
    return mask


def evoked_response(
    responses: Array,
    time_bins_ms: np.ndarray | Sequence[float],
    *,
    response_window_ms: tuple[float, float] = RESPONSE_WINDOW_MS,
    baseline_window_ms: tuple[float, float] | None = BASELINE_WINDOW_MS,
) -> Array:
    """Evoked response from time-binned responses: mean over the response window minus the baseline.

    Args:
        responses: ``(n, channels, time_bins)`` (spike counts or rates per bin).
        time_bins_ms: ``(time_bins + 1,)`` bin edges in ms from image onset.
        response_window_ms: ``(start, end)`` ms; bins wholly inside it are averaged.
        baseline_window_ms: ``(start, end)`` ms subtracted (same averaging), or None.

    Returns:
        ``(n, channels)`` in the unit of ``responses`` per bin.
    """
    edges = np.asarray(time_bins_ms, dtype=np.float64).reshape(-1)
    if responses.ndim != 3 or edges.shape[0] != responses.shape[2] + 1:
        raise ValueError(f"responses {tuple(responses.shape)} do not fit {edges.shape[0]} bin edges")
    evoked = responses[..., _window_mask(edges, response_window_ms)].mean(2)
    if baseline_window_ms is not None:
        evoked = evoked - responses[..., _window_mask(edges, baseline_window_ms)].mean(2)
    return evoked


class Objective(ABC):
    """Base class of every objective.

    :meth:`score` accepts numpy arrays (the evolution loop) and torch tensors (white-box gradient
    ascent) alike; implementations use operations valid for both.
    """

    response_window_ms: tuple[float, float] = RESPONSE_WINDOW_MS
    baseline_window_ms: tuple[float, float] | None = BASELINE_WINDOW_MS

    @abstractmethod
    def _score(self, responses: Array) -> Array:
        """``(n, channels)`` -> ``(n,)``; higher is better."""

    def score(self, responses: Array, *, time_bins_ms: np.ndarray | None = None) -> Array:
        """Score responses.

        Args:
            responses: ``(n, channels)`` or ``(n, channels, time_bins)``. Time-binned responses
                become the evoked response (``response_window_ms`` minus ``baseline_window_ms``,
                see :func:`evoked_response`) when ``time_bins_ms`` is given, else their mean.
            time_bins_ms: ``(time_bins + 1,)`` bin edges in ms (the subject's ``time_bins_ms``).

        Returns:
            ``(n,)`` scores, higher is better; NaN where the responses are NaN (image not shown).
        """
        if responses.ndim == 3 and time_bins_ms is not None:
            responses = evoked_response(responses, time_bins_ms, response_window_ms=self.response_window_ms,
                                        baseline_window_ms=self.baseline_window_ms)
        elif responses.ndim == 3:
            responses = responses.mean(2)
        if responses.ndim != 2:
            raise ValueError(f"{type(self).__name__}: responses must be (n, channels[, time_bins])")
        scores = self._score(responses)
        if tuple(scores.shape) != (responses.shape[0],):
            raise RuntimeError(f"{type(self).__name__} returned scores of shape {tuple(scores.shape)}")
        return scores

    def check_channels(self, n_channels: int) -> None:
        """Raise a :class:`~latentopt.checks.ConfigError` unless the objective can score ``n_channels`` channels.

        Called once when an experiment is built, so a channel beyond the subject's channels fails
        before any generation is shown. The default accepts any number.
        """

    def provenance(self) -> dict[str, Any]:
        """What a run records about this objective: ``{"class": <class name>, <settings>...}`` (JSON-serialisable)."""
        return {"class": type(self).__name__}
