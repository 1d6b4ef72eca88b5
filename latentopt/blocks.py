"""Show one block of images to a subject: the piece every experiment uses, evolution or fixed design.

A block is what the subject sees at once (one generation of an evolution, one chunk of a manifold
grid): the experiment's images, resized to the block's image size, then (when due) the natural
reference images. :func:`show_block` calls ``start_block``, ``respond`` and ``block_extras`` and times
the subject, so an experiment runs on a rig exactly as on a simulated subject.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentopt.subject import Subject

REFERENCE = -1
"""Owner index of a natural reference image in a block."""


def noise_rng(seed: int, block: int) -> np.random.Generator:
    """The subject's noise stream for one block (a resumed run draws the same noise)."""
    return np.random.default_rng([int(seed), int(block), 7919])


def fit_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(n, 3, h, w)`` RGB in [0, 1] resized to ``size`` (antialiased bilinear; unchanged if it fits)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


@dataclass
class ShownBlock:
    """What one block showed and what the subject answered.

    Attributes:
        block: the block number (an evolution's generation).
        image_ids: ``n`` unique ids, in the order shown.
        owner: ``(n,)`` int16: the index of the part (thread, grid) each image came from, or
            :data:`REFERENCE` for a natural reference image.
        images: ``(n, 3, H, W)`` float32 RGB in [0, 1] on the CPU, as shown.
        responses: ``(n, channels[, time_bins])`` float64; NaN where an image was not shown.
        extras: what the subject asked to record (:meth:`Subject.block_extras`).
        subject_s: seconds spent in the subject (for a rig: waiting for the response file).
    """

    block: int
    image_ids: list[str]
    owner: np.ndarray
    images: torch.Tensor
    responses: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)
    subject_s: float = 0.0

    def of(self, owner: int) -> np.ndarray:
        """Indices (into the block) of the images of one part (or of the references)."""
        return np.flatnonzero(self.owner == owner)


def show_block(
    subject: Subject,
    block: int,
    parts: Sequence[tuple[Sequence[str], torch.Tensor]],
    *,
    size: tuple[int, int],
    seed: int,
    references: tuple[Sequence[str], torch.Tensor] | None = None,
) -> ShownBlock:
    """Show one block: every part's images (resized to ``size``), then the references, if given.

    Args:
        subject: who responds.
        block: the block number, passed to ``subject.start_block`` (rigs name their files by it).
        parts: per part (thread, grid): ``(image_ids, images (k, 3, h, w))``; part ``i`` is owner ``i``.
        size: ``(H, W)`` of the images shown.
        seed: the run's seed: the subject's noise for this block is :func:`noise_rng` ``(seed, block)``.
        references: ``(ids, images)`` natural images shown after the parts, or None.

    Raises:
        RuntimeError: the subject returned a number of responses other than the images shown.
    """
    ids: list[str] = []
    owner: list[int] = []
    images: list[torch.Tensor] = []
    for index, (part_ids, part_images) in enumerate(parts):
        images.append(fit_images(part_images, size).detach().cpu())
        ids += list(part_ids)
        owner += [index] * len(part_ids)
    if references is not None and len(references[0]):
        images.append(fit_images(references[1], size).detach().cpu())
        ids += list(references[0])
        owner += [REFERENCE] * len(references[0])
    shown = torch.cat(images) if images else torch.zeros(0, 3, *size)
    t0 = time.perf_counter()
    subject.start_block(block)
    responses = np.asarray(subject.respond(shown, image_ids=ids, rng=noise_rng(seed, block)))
    if responses.shape[0] != len(ids):
        raise RuntimeError(f"the subject returned {responses.shape[0]} responses for {len(ids)} images")
    extras = subject.block_extras()
    return ShownBlock(block, ids, np.asarray(owner, dtype=np.int16), shown, responses, extras,
                      time.perf_counter() - t0)
