"""The Objective interface: responses in, one score per image out (higher is better)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


class Objective(ABC):
    """Base class of every objective.

    :meth:`score` accepts numpy arrays (the evolution loop) and torch tensors (white-box gradient
    ascent) alike; implementations use operations valid for both.
    """

    @abstractmethod
    def _score(self, responses: Array) -> Array:
        """``(n, channels)`` -> ``(n,)``; higher is better."""

    def score(self, responses: Array) -> Array:
        """Score responses.

        Args:
            responses: ``(n, channels)`` or ``(n, channels, time_bins)``; time bins are averaged
                unless the objective handles them itself.

        Returns:
            ``(n,)`` scores, higher is better; NaN where the responses are NaN (image not shown).
        """
        if responses.ndim == 3:
            responses = responses.mean(2)
        if responses.ndim != 2:
            raise ValueError(f"{type(self).__name__}: responses must be (n, channels[, time_bins])")
        scores = self._score(responses)
        if tuple(scores.shape) != (responses.shape[0],):
            raise RuntimeError(f"{type(self).__name__} returned scores of shape {tuple(scores.shape)}")
        return scores

    def describe(self) -> dict[str, Any]:
        return {}
