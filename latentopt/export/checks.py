"""Check the rebuilt images against what the run stored: the best image of each thread per generation
(``images/best_<thread>_NNNNN.png``) and a fixed design's thumbnails (``design/thumbnails`` of each block).

A generator rebuilt from ``config.yaml`` that is not the one that ran (other weights, another version, another
device) would export images the subject never saw; the first stored image that differs by more than
``tolerance`` levels of 255 at any pixel stops the export with an error naming its file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentopt.blocks import fit_images
from latentopt.export.session import ExportError, Session
from latentopt.records import GENERATION_DIR, IMAGE_DIR

DEFAULT_TOLERANCE = 2
"""Levels of 255: float rounding of the same generator on the same device moves a pixel by at most one."""


def _difference(stored: np.ndarray, rebuilt: np.ndarray) -> int | None:
    """The largest difference in levels (None: the shapes differ)."""
    if stored.shape != rebuilt.shape:
        return None
    return int(np.abs(stored.astype(np.int16) - rebuilt.astype(np.int16)).max(initial=0))


def _refuse(path: Path, what: str, difference: int | None, tolerance: int, shape: tuple[int, ...],
            rebuilt: tuple[int, ...]) -> ExportError:
    how = (f"its shape {shape} is not the rebuilt {rebuilt}" if difference is None
           else f"it differs by up to {difference}/255 (tolerance {tolerance})")
    return ExportError(f"{path} does not match the image rebuilt from {what}: {how}; the generator rebuilt from "
                       "config.yaml is not the one that ran (weights, version or device changed?), so nothing "
                       "was exported (--tolerance N accepts larger differences, e.g. for a run recorded on a GPU)")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise ExportError(f"{path} is missing: the rebuilt images cannot be checked against the run's best "
                          "images") from None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ExportError(f"{path} is not a readable image ({type(err).__name__})") from None


def check_best_images(session: Session, *, tolerance: int = DEFAULT_TOLERANCE) -> int:
    """Compare each thread's best image of each generation with its PNG; return how many were compared."""
    index = {key: k for k, key in enumerate(session.image_ids)}
    checked = 0
    for block in session.blocks:
        for owner, name in enumerate(block.thread_names):
            scores = np.asarray(block.threads[name]["scores"], dtype=np.float64)
            rows = np.flatnonzero(block.owner == owner)
            if not np.isfinite(scores).any() or scores.shape != rows.shape:
                continue  # no best image was stored for this generation
            best = str(block.image_ids[rows[int(np.nanargmax(scores))]])
            path = session.run.path / IMAGE_DIR / f"best_{name}_{block.generation:05d}.png"
            stored, rebuilt = _read_png(path), session.images[index[best]]
            difference = _difference(stored, rebuilt)
            if difference is None or difference > tolerance:
                raise _refuse(path, f"generation {block.generation}'s codes ({best})", difference, tolerance,
                              stored.shape, rebuilt.shape)
            checked += 1
    return checked


def check_thumbnails(session: Session, *, tolerance: int = DEFAULT_TOLERANCE) -> int:
    """Compare a fixed design's recorded thumbnails with the rebuilt images; return how many were compared."""
    checked = 0
    offset = 0
    for block in session.blocks:
        design, count = block.design, len(block.image_ids)
        thumbnails = design.get("thumbnails")
        repeat = np.asarray(design.get("repeat", []))
        rows = np.flatnonzero(block.owner == 0)
        if thumbnails is None or repeat.shape != rows.shape:
            offset += count
            continue
        first = rows[repeat == 0]
        thumbnails = np.asarray(thumbnails)
        if len(first) != len(thumbnails):
            offset += count
            continue
        templates = session.images[session.image_of[offset + first]]
        side = tuple(thumbnails.shape[1:3])
        # the thumbnail was made from the float image; the template is its uint8: allow that rounding too
        small = fit_images(torch.from_numpy(templates).permute(0, 3, 1, 2).float() / 255, side)
        rebuilt = (small.clamp(0, 1).permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).numpy()
        difference = _difference(thumbnails, rebuilt)
        if difference is None or difference > tolerance + 2:
            path = session.run.path / GENERATION_DIR / f"gen_{block.generation:05d}.npz"
            raise _refuse(path, "design.npz's codes (design/thumbnails)", difference, tolerance + 2,
                          thumbnails.shape, rebuilt.shape)
        checked += len(first)
        offset += count
    return checked
