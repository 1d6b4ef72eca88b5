"""Natural reference images shown alongside evolved ones (scikit-image's bundled photographs load offline)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_REFERENCES = ("astronaut", "chelsea", "coffee", "rocket")


def load_references(names: Sequence[str], size: tuple[int, int]) -> tuple[list[str], torch.Tensor]:
    """Load scikit-image photographs by name, centre-cropped to a square and resized.

    Args:
        names: names of ``skimage.data`` images (``astronaut``, ``chelsea``, ``coffee``, ...).
        size: ``(H, W)`` of the returned images.

    Returns:
        ids ``ref_<name>`` and images ``(n, 3, H, W)`` float32 RGB in [0, 1].
    """
    from skimage import data

    images = []
    for name in names:
        loader = getattr(data, str(name), None)
        if loader is None or not callable(loader):
            raise ValueError(f"experiment.references: {name!r} is not a scikit-image photograph")
        array = np.asarray(loader())
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        array = array[..., :3].astype(np.float32) / (255.0 if array.dtype == np.uint8 else max(array.max(), 1))
        h, w = array.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = torch.from_numpy(np.ascontiguousarray(array[top : top + side, left : left + side]))
        tensor = crop.permute(2, 0, 1)[None]
        images.append(F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)[0])
    if not images:
        return [], torch.zeros(0, 3, *size)
    return [f"ref_{n}" for n in names], torch.stack(images).clamp(0, 1)
