"""Natural reference images shown alongside evolved ones: ``experiment.references``.

The spec takes one of three forms (:func:`check_reference_spec`, :func:`reference_set`):

- a list of names of scikit-image's bundled photographs (:data:`PHOTOGRAPHS`, offline): ids ``ref_<name>``;
- ``{set: natural, n: 500, seed: 0}``: the offline natural set of :func:`latentopt.natural.natural_set`
  (crops and mirrors of those photographs, up to 1260): ids ``nat_<photo>_s<scale%>_r<row>c<col>[_m]``;
- ``{folder: /path/to/images}``: every image of a lab's folder (:func:`latentopt.natural.folder_set`):
  ids ``nat_<file stem>`` (the prefix keeps them apart from generated ids such as ``g00003_main_012``;
  stems are unique within a folder, so the ids are unique, and they stay the same as long as the files do).

An empty list (or null) shows no references. A list holding one mapping, ``[{set: natural, n: 500}]``, is that
mapping: Hydra cannot put a mapping in place of the default list, so on the command line write
``experiment.references='[{set: natural, n: 500}]'`` (or ``~experiment.references '+experiment.references={...}'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentopt.checks import ConfigError

DEFAULT_REFERENCES = ("astronaut", "chelsea", "coffee", "rocket")
KEY = "experiment.references"
FOLDER_PREFIX = "nat_"
"""Prefix of the ids of a folder's images (``nat_<file stem>``)."""
SPEC_KEYS = {"set": ("set", "n", "seed"), "folder": ("folder",)}

PHOTOGRAPHS = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
    "rocket", "text",
)
"""The 2-D images that scikit-image ships inside its wheel (the others need a download)."""


def check_reference_names(names: object) -> list[str]:
    """``experiment.references`` as a list of names from :data:`PHOTOGRAPHS` (a ConfigError otherwise)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"experiment.references must be a list of image names or a mapping "
                          f"({{set: natural, n: 500}} or {{folder: <path>}}), got {names!r}")
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


def check_reference_spec(spec: object) -> list[str] | dict[str, object]:
    """``experiment.references`` checked without loading an image: a list of photograph names, or a mapping.

    Returns:
        the list of names, or the mapping with its defaults filled in (``{"set": "natural", "n": 500,
        "seed": 0}`` or ``{"folder": "<path>"}``); ``[]`` for null or an empty list.

    Raises:
        ConfigError: one line naming ``experiment.references`` (unknown key or set, ``n`` out of range,
            missing folder, a name that is no bundled photograph).
    """
    from latentopt.checks import integer
    from latentopt.natural import NATURAL_SET_SIZE

    if spec is None:
        return []
    if isinstance(spec, (list, tuple)) and len(spec) == 1 and isinstance(spec[0], Mapping):
        spec = spec[0]  # [{set: natural, n: 500}]: the form a command line can put in place of the default list
    if not isinstance(spec, Mapping):
        return check_reference_names(spec)
    keys = {str(k) for k in spec}
    kinds = [kind for kind in SPEC_KEYS if kind in keys]
    if len(kinds) != 1:
        raise ConfigError(f"{KEY}: a mapping needs exactly one of 'set' (set: natural) or 'folder', got "
                          f"{sorted(keys)}")
    kind = kinds[0]
    unknown = sorted(keys - set(SPEC_KEYS[kind]))
    if unknown:
        raise ConfigError(f"{KEY}: unknown key(s) {unknown} for a {kind} spec; use {', '.join(SPEC_KEYS[kind])}")
    if kind == "folder":
        folder = spec["folder"]
        if not isinstance(folder, str) or not folder:
            raise ConfigError(f"{KEY}.folder must be a folder path, got {folder!r}")
        if not Path(folder).is_dir():
            raise ConfigError(f"{KEY}.folder: {folder}: no such folder")
        return {"folder": folder}
    if spec["set"] != "natural":
        raise ConfigError(f"{KEY}.set: unknown set {spec['set']!r}; the built-in set is 'natural'")
    n = integer(spec.get("n", 500), f"{KEY}.n", minimum=1, maximum=NATURAL_SET_SIZE)
    seed = integer(spec.get("seed", 0), f"{KEY}.seed", minimum=0, maximum=2**32 - 1)
    return {"set": "natural", "n": n, "seed": seed}


def reference_set(spec: object, size: tuple[int, int]) -> tuple[list[str], torch.Tensor]:
    """The reference images ``experiment.references`` describes (see the module docstring), at ``size``.

    Args:
        spec: a list of photograph names, ``{set: natural, n, seed}``, ``{folder: path}``, or null.
        size: ``(H, W)`` of the images (the block's image size).

    Returns:
        unique ids and images ``(r, 3, H, W)`` float32 RGB in [0, 1] (``r = 0`` for no references).

    Raises:
        ConfigError: one line naming ``experiment.references`` (see :func:`check_reference_spec`; also an
            unreadable image of the folder).
    """
    from latentopt.natural import folder_set, natural_set

    checked = check_reference_spec(spec)
    if isinstance(checked, list):
        return load_references(checked, size) if checked else ([], torch.zeros(0, 3, *size))
    if "folder" in checked:
        try:
            stems, images = folder_set(str(checked["folder"]), size)
        except ConfigError as err:
            raise ConfigError(f"{KEY}.folder: {err}") from None
        return [f"{FOLDER_PREFIX}{stem}" for stem in stems], images
    n, seed = checked["n"], checked["seed"]
    assert isinstance(n, int) and isinstance(seed, int)
    return natural_set(n, size, seed=seed)
