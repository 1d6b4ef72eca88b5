"""The Objective interface: responses in, one score per image out (higher is better)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from latentopt.responses import BASELINE_WINDOW_MS, RESPONSE_WINDOW_MS, Array, evoked_response

# Re-exported for one release: the windows, the mask and the evoked response moved to
# latentopt.responses; import them from there (``_window_mask`` is ``responses.window_mask``).
from latentopt.responses import window_mask as _window_mask  # noqa: F401

__all__ = ["BASELINE_WINDOW_MS", "RESPONSE_WINDOW_MS", "Array", "Objective", "evoked_response"]


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
                see :func:`latentopt.responses.evoked_response`) when ``time_bins_ms`` is given, else their mean.
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
