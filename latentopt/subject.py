"""The Subject interface: images in, responses out.

A subject is a simulated neuron (units of a CNN, an analytic model neuron) or a real one behind a
recording rig. It returns raw responses; what counts as "good" is the Objective's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class Subject(ABC):
    """Base class of every subject.

    Attributes:
        channel_names: one name per response channel (unit, electrode channel).
        time_bins_ms: ``(time_bins + 1,)`` bin edges in ms when responses are time-binned, else None.
        differentiable: True when :meth:`respond_torch` is differentiable w.r.t. the images.
    """

    channel_names: list[str]
    time_bins_ms: np.ndarray | None = None
    differentiable: bool = False

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    @abstractmethod
    def respond(
        self,
        images: torch.Tensor,
        *,
        image_ids: Sequence[str],
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Show a block of images and return the responses.

        Args:
            images: ``(n, 3, H, W)`` float32 RGB in [0, 1].
            image_ids: ``n`` unique ids, used by rigs to name and match stimuli.
            rng: source of trial-to-trial noise; the experiment seeds it per generation so a
                resumed run draws the same noise.

        Returns:
            ``(n, channels)`` or ``(n, channels, time_bins)`` float64. An image that was not
            shown (aborted trial) has NaN responses.
        """

    def respond_torch(self, images: torch.Tensor) -> torch.Tensor:
        """Noise-free, differentiable responses ``(n, channels)`` for white-box methods."""
        raise NotImplementedError(f"{type(self).__name__} is not differentiable")

    def provenance(self) -> dict[str, Any]:
        """What a run records about this subject (weights, layer, noise, ...)."""
        return {}

    def close(self) -> None:
        """Release resources (forward hooks, files). Safe to call twice."""
