"""Weight files for tests: random or hand-built DeePSim state dicts written like the real ones."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from latentopt_deepsim.architecture import BGR_MEAN, DeePSimNetwork, get_variant


def random_state_dict(variant: str = "fc6", *, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the keys and shapes of ``upconvGAN_<variant>.pt`` and torch's default init."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return {k: v.clone() for k, v in DeePSimNetwork(get_variant(variant)).G.state_dict().items()}


def constant_colour_state_dict(variant: str, rgb: tuple[float, float, float]) -> dict[str, torch.Tensor]:
    """Weights whose every image is the uniform colour ``rgb`` (in [0, 1]) whatever the code.

    All weights are zero and the last layer's bias holds the raw (BGR, mean-subtracted, 0-255) value
    of ``rgb``, so the output is known exactly. Only for variants whose last layer is linear in raw
    units (fc6, fc7, fc8, pool5).
    """
    spec = get_variant(variant)
    if spec.tanh_output:
        raise ValueError(f"{variant} ends in tanh; use fc6, fc7, fc8 or pool5")
    state = {k: torch.zeros(shape) for k, shape in spec.state_shapes().items()}
    bgr = (rgb[2], rgb[1], rgb[0])
    last = spec.layers[-1].name
    state[f"{last}.bias"] = torch.tensor([255.0 * c - m for c, m in zip(bgr, BGR_MEAN, strict=True)])
    return state


def write_state_dict(path: str | os.PathLike[str], state: Mapping[str, torch.Tensor], *, legacy: bool = False) -> Path:
    """Save like the published files: ``torch.save`` of an ordered dict of tensors (``legacy``: the
    pre-1.6 non-zip format that files converted years ago may use)."""
    from collections import OrderedDict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(OrderedDict(state), path, _use_new_zipfile_serialization=not legacy)
    return path


def write_random_weights(path: str | os.PathLike[str], variant: str = "fc6", *, seed: int = 0) -> Path:
    """Write a random-weight ``upconvGAN_<variant>.pt`` (fc6: 224 MB) and return its path."""
    return write_state_dict(path, random_state_dict(variant, seed=seed))
