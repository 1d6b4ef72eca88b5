"""The Subject interface: images in, responses out.

A subject is a simulated neuron (units of a CNN, an analytic model neuron) or a real one behind a
recording rig. It returns raw responses; what counts as "good" is the Objective's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.errors import LatentoptError


class SubjectUnavailable(LatentoptError, RuntimeError):
    """The subject cannot respond now (e.g. a rig sent no response before its timeout).

    Raised from :meth:`Subject.respond`; the generation in flight is not recorded, so the run stops
    in a resumable state (``latentopt-resume RUN_DIR`` re-runs that generation).
    """


class Subject(ABC):
    """Base class of every subject.

    Attributes:
        channel_names: one name per response channel (unit, electrode channel).
        time_bins_ms: ``(time_bins + 1,)`` bin edges in ms when responses are time-binned, else None.
        differentiable: True when :meth:`respond_torch` is differentiable w.r.t. the images.
        live: True for a subject behind a real (or simulated) rig: the CLI prints one operator
            line per block instead of a progress bar.
    """

    channel_names: list[str]
    time_bins_ms: np.ndarray | None = None
    differentiable: bool = False
    live: bool = False

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

    def bind_run(self, run_dir: Path) -> None:
        """Called once before the first block with the run folder the blocks are recorded in.

        Rigs keep their session identity there, so a resumed run goes on as the same session.
        Default: nothing.
        """

    def start_block(self, block: int) -> None:
        """Called before :meth:`respond` with the block number (= the generation).

        Rigs name their files by block; a resumed run calls it again with the same number, so a
        response written while latentopt was down is found. Default: nothing.
        """

    def block_extras(self) -> dict[str, Any]:
        """What the last :meth:`respond` wants recorded beside the responses.

        A nested dict of numpy arrays (no object dtype), bytes, strings and numbers (raw PSTH bins,
        archived raw response files, logs); the experiment stores it under ``"subject"`` in the
        generation record, and ``load_generation(run, g)["subject"]`` reads it back. Default: ``{}``.
        """
        return {}

    def respond_torch(self, images: torch.Tensor) -> torch.Tensor:
        """Noise-free, differentiable responses ``(n, channels)`` for white-box methods."""
        raise NotImplementedError(f"{type(self).__name__} is not differentiable")

    def provenance(self) -> dict[str, Any]:
        """What a run records about this subject: ``{"class": <class name>, <weights, layer, noise>...}``.

        JSON-serialisable; subclasses extend ``super().provenance()`` so ``"class"`` comes first.
        """
        return {"class": type(self).__name__}

    def close(self) -> None:
        """Release resources (forward hooks, files). Safe to call twice."""
