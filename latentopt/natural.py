"""Natural image sets for population control: "naturally observed" maxima need more than a handful of photographs.

:func:`natural_set` builds an offline set of up to 1260 images: the 21 photographs that scikit-image ships inside
its wheel (:data:`latentopt.references.PHOTOGRAPHS`), each as 30 square crops (the whole image; 2 x 2 crops of 3/4
of its side; 3 x 3 of 1/2; 4 x 4 of 0.35) and their mirror images. They are crops of few scenes, not 1260
independent photographs: a stand-in for a lab's image set, documented as such. :func:`folder_set` loads any
folder of images a lab uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentopt.checks import ConfigError
from latentopt.references import PHOTOGRAPHS

SCALES = ((1.0, 1), (0.75, 2), (0.5, 3), (0.35, 4))
"""(side as a fraction of the photograph's shorter side, crops per row and column)."""
NATURAL_SET_SIZE = len(PHOTOGRAPHS) * 2 * sum(per_side**2 for _, per_side in SCALES)
"""Images in the whole natural set (1260: 21 photographs x 30 crops x plain and mirrored)."""
MAX_FOLDER_IMAGES = 100_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _rgb(array: np.ndarray) -> np.ndarray:
    """An image array as ``(H, W, 3)`` float32 in [0, 1]."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    array = array[..., :3]
    scale = 255.0 if array.dtype == np.uint8 else max(float(array.max()), 1.0)
    return (array.astype(np.float32) / scale).clip(0, 1)


def _resized(crop: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
    return F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _crops(name: str, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    h, w = array.shape[:2]
    side_full = min(h, w)
    out = []
    for fraction, per_side in SCALES:
        side = max(1, round(fraction * side_full))
        tops = np.linspace(0, h - side, per_side).round().astype(int) if per_side > 1 else [(h - side) // 2]
        lefts = np.linspace(0, w - side, per_side).round().astype(int) if per_side > 1 else [(w - side) // 2]
        for r, top in enumerate(tops):
            for c, left in enumerate(lefts):
                crop = array[top:top + side, left:left + side]
                tag = f"nat_{name}_s{int(fraction * 100):03d}_r{r}c{c}"
                out += [(tag, crop), (f"{tag}_m", crop[:, ::-1])]
    return out


def natural_set(n: int = 500, size: tuple[int, int] = (224, 224), *, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """``n`` natural images, offline: crops and mirror images of scikit-image's bundled photographs.

    Args:
        n: how many (at most 1260); a seeded choice spread over all photographs when fewer.
        size: ``(H, W)`` of the images.
        seed: seed of the choice.

    Returns:
        ids (``nat_<photo>_s<scale%>_r<row>c<col>[_m]``) and images ``(n, 3, H, W)`` float32 RGB in [0, 1].

    Raises:
        ConfigError: ``n`` is not in [1, 1260].
    """
    from skimage import data

    candidates = [item for name in PHOTOGRAPHS for item in _crops(name, _rgb(np.asarray(getattr(data, name)())))]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(candidates):
        raise ConfigError(f"the natural set holds 1 to {len(candidates)} images, not {n!r}")
    chosen = sorted(np.random.default_rng(seed).choice(len(candidates), size=n, replace=False))
    ids = [candidates[k][0] for k in chosen]
    return ids, torch.stack([_resized(candidates[k][1], size) for k in chosen]).clamp(0, 1)


def folder_set(folder: Path | str, size: tuple[int, int] = (224, 224)) -> tuple[list[str], torch.Tensor]:
    """Every image file in ``folder`` (sorted by name), centre-cropped to a square and resized.

    Returns:
        ids (the file names without suffix) and images ``(n, 3, H, W)`` float32 RGB in [0, 1].

    Raises:
        ConfigError: the folder is missing or empty, holds too many images, or a file is not a readable image
            (one line naming it).
    """
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"natural image folder {path}: no such folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"natural image folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    if len(files) > MAX_FOLDER_IMAGES:
        raise ConfigError(f"natural image folder {path} holds {len(files)} images (at most {MAX_FOLDER_IMAGES})")
    images = [load_image_file(file, size) for file in files]
    ids = [p.stem for p in files]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"natural image folder {path}: two files share a name without their suffix")
    return ids, torch.stack(images).clamp(0, 1)


def load_image_file(file: Path | str, size: tuple[int, int] | None) -> torch.Tensor:
    """One image file, centre-cropped to a square and resized to ``size`` (None: the crop's own size).

    Returns:
        ``(3, H, W)`` float32 RGB in [0, 1].

    Raises:
        ConfigError: the file is not a readable image (one line naming it).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            array = _rgb(np.asarray(image.convert("RGB")))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ConfigError(f"natural image {file} is not a readable image ({type(err).__name__})") from None
    h, w = array.shape[:2]
    side = min(h, w)
    crop = array[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    return _resized(crop, size or (side, side)).clamp(0, 1)
