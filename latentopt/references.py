"""Natural reference images shown alongside evolved ones (scikit-image's bundled photographs load offline)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latentopt.checks import ConfigError

DEFAULT_REFERENCES = ("astronaut", "chelsea", "coffee", "rocket")

PHOTOGRAPHS = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
    "rocket", "text",
)
"""The 2-D images that scikit-image ships inside its wheel (the others need a download)."""


def check_reference_names(names: object) -> list[str]:
    """``experiment.references`` as a list of names from :data:`PHOTOGRAPHS` (a ConfigError otherwise)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"experiment.references must be a list of image names, got {names!r}")
    for name in names:
        if not isinstance(name, str) or name not in PHOTOGRAPHS:
            raise ConfigError(f"experiment.references: {name!r} is not one of the bundled scikit-image "
                              f"photographs ({', '.join(PHOTOGRAPHS)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"experiment.references: {list(names)} names an image twice")
    return list(names)


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
    for name in check_reference_names(list(names)):
        array = np.asarray(getattr(data, name)())
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
