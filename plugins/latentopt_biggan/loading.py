"""BigGAN-deep weights: find them, load them strictly, and prepare the network for fast inference.

Weights come from a folder holding ``config.json`` and ``pytorch_model.bin`` (the layout
``pytorch-pretrained-biggan`` reads), or from that library's own cache
(``$PYTORCH_PRETRAINED_BIGGAN_CACHE``, default ``~/.pytorch_pretrained_biggan``), downloading into it
on first use through the library's own code. The library loads with ``strict=False``; here the file
is read with ``torch.load(..., weights_only=True)`` and every key and shape is checked first.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentopt.weights import WeightsError

RESOLUTIONS = {"biggan-deep-128": 128, "biggan-deep-256": 256, "biggan-deep-512": 512}
CACHE_ENV = "PYTORCH_PRETRAINED_BIGGAN_CACHE"
N_CLASSES = 1000


class WeightsUnavailable(WeightsError):
    """The BigGAN weights are not on this machine and could not be downloaded."""


def check_model_name(model: str) -> int:
    """Resolution of a model name; a clear error lists the known names."""
    if model not in RESOLUTIONS:
        raise ValueError(f"unknown BigGAN model {model!r}; known: {', '.join(RESOLUTIONS)}")
    return RESOLUTIONS[model]


def library_cache() -> Path:
    """The cache folder of ``pytorch-pretrained-biggan``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".pytorch_pretrained_biggan").expanduser()


def _urls(model: str) -> tuple[str, str]:
    from pytorch_pretrained_biggan.model import PRETRAINED_CONFIG_ARCHIVE_MAP, PRETRAINED_MODEL_ARCHIVE_MAP

    return PRETRAINED_CONFIG_ARCHIVE_MAP[model], PRETRAINED_MODEL_ARCHIVE_MAP[model]


def _cached_file(url: str) -> Path | None:
    """A file the library cached for ``url`` (it names files by hashes and keeps ``<file>.json``)."""
    folder = library_cache()
    if not folder.is_dir():
        return None
    for meta in sorted(folder.glob("*.json")):
        try:
            if json.loads(meta.read_text()).get("url") == url:
                data = meta.with_suffix("")
                if data.is_file():
                    return data
        except (ValueError, OSError, AttributeError):
            continue
    return None


def unavailable_message(model: str, reason: str) -> str:
    config_url, weights_url = _urls(model)
    return (
        f"BigGAN weights for {model} are not on this machine and could not be downloaded ({reason}). "
        f"Get {weights_url} and {config_url}, save them as pytorch_model.bin and config.json in one folder, "
        f"and set generator.weights=<folder> (or let pytorch-pretrained-biggan fill {library_cache()})."
    )


def resolve(model: str, weights: str | os.PathLike[str] | None = None, *,
            allow_download: bool = True) -> tuple[Path, Path]:
    """``(config.json, pytorch_model.bin)`` for ``model``: from ``weights`` (a folder), else the cache.

    Raises:
        WeightsError: ``weights`` is not a folder with both files.
        WeightsUnavailable: nothing cached and the download is disabled or failed.
    """
    check_model_name(model)
    if weights is not None:
        folder = Path(weights).expanduser()
        config, state = folder / "config.json", folder / "pytorch_model.bin"
        for path in (config, state):
            if not path.is_file():
                raise WeightsError(f"BigGAN weights folder {folder}: no {path.name} (it needs config.json "
                                   "and pytorch_model.bin)")
        return config, state
    config_url, weights_url = _urls(model)
    config_file, state_file = _cached_file(config_url), _cached_file(weights_url)
    if config_file is not None and state_file is not None:
        return config_file, state_file
    if not allow_download:
        raise WeightsUnavailable(unavailable_message(model, "downloads are disabled"))
    from pytorch_pretrained_biggan.file_utils import cached_path

    try:
        return (Path(cached_path(config_url, cache_dir=library_cache())),
                Path(cached_path(weights_url, cache_dir=library_cache())))
    except Exception as err:  # requests, boto and OS errors alike mean "not available here"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsUnavailable(unavailable_message(model, first)) from None


def load_config(path: Path, model: str) -> Any:
    """Read ``config.json``; its output size must be the model's."""
    from pytorch_pretrained_biggan import BigGANConfig

    try:
        config = BigGANConfig.from_json_file(str(path))
    except (ValueError, OSError) as err:
        raise WeightsError(f"{path}: not a BigGAN config.json ({err})") from None
    resolution = check_model_name(model)
    if getattr(config, "output_dim", None) != resolution:
        raise WeightsError(f"{path}: output_dim is {getattr(config, 'output_dim', None)}, {model} makes "
                           f"{resolution}x{resolution} images")
    return config


def load_model(config_path: Path, state_path: Path, model: str) -> Any:
    """Build the library's ``BigGAN`` from ``config.json`` and load ``pytorch_model.bin`` strictly."""
    from pytorch_pretrained_biggan import BigGAN

    config = load_config(config_path, model)
    network = BigGAN(config)
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors alike
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"{state_path}: not a loadable torch state dict ({first})") from None
    check_state_dict(state, network.state_dict(), source=str(state_path))
    network.load_state_dict(state, strict=True)
    return network


def check_state_dict(state: Any, expected: Mapping[str, torch.Tensor], *, source: str) -> None:
    """One-line ``WeightsError`` naming the first missing, unexpected or misshapen key."""
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source}: expected a state dict, got {type(state).__name__}")
    for key, reference in expected.items():
        if key not in state:
            raise WeightsError(f"{source}: missing key {key!r} (is config.json the one of these weights?)")
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{source}: key {key!r} holds a {type(value).__name__}, not a tensor")
        if value.shape != reference.shape:
            raise WeightsError(f"{source}: key {key!r} has shape {tuple(value.shape)}, the config needs "
                               f"{tuple(reference.shape)}")
    for key in state:
        if key not in expected:
            raise WeightsError(f"{source}: unexpected key {key!r} for this config")


def truncation_statistics(means: torch.Tensor, variances: torch.Tensor,
                          truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-norm statistics at ``truncation`` from the per-truncation table (rows on a 0.02 grid).

    On the grid (0.02, 0.04, ..., 1.0, to 1e-6) the row is taken exactly. Between grid points the
    two neighbours are interpolated linearly. (The library's own forward weights the neighbours the
    wrong way round and, by float rounding, takes 0.68's row for 0.7.)
    """
    steps = means.shape[0] - 1
    position = truncation * steps
    nearest = round(position)
    if abs(position - nearest) < 1e-6:
        return means[nearest], variances[nearest]
    low = math.floor(position)
    frac = position - low
    return ((1 - frac) * means[low] + frac * means[low + 1], (1 - frac) * variances[low] + frac * variances[low + 1])


class FrozenBatchNorm(nn.Module):
    """BigGAN's (class-)conditional batch norm with its statistics fixed at one truncation.

    ``out = x * s + b`` with ``s = gain / sqrt(var + eps)`` and ``b = offset - mean * s`` per image
    and channel: one fused multiply-add on the activation instead of the library's five passes.
    """

    mean: torch.Tensor
    inv_std: torch.Tensor
    fixed_scale: torch.Tensor
    fixed_shift: torch.Tensor

    def __init__(self, source: Any, truncation: float) -> None:
        super().__init__()
        mean, var = truncation_statistics(source.running_means, source.running_vars, truncation)
        inv_std = torch.rsqrt(var + source.eps)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("inv_std", inv_std)
        self.conditional = bool(source.conditional)
        self.gain: nn.Module | None = source.scale if self.conditional else None
        self.offset: nn.Module | None = source.offset if self.conditional else None
        if not self.conditional:
            scale = source.weight.detach() * inv_std
            self.register_buffer("fixed_scale", scale.view(1, -1, 1, 1).clone())
            self.register_buffer("fixed_shift", (source.bias.detach() - mean * scale).view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor, truncation: float, condition_vector: torch.Tensor | None = None) -> torch.Tensor:
        if self.gain is None or self.offset is None or condition_vector is None:
            return torch.addcmul(self.fixed_shift, x, self.fixed_scale)
        scale = (1.0 + self.gain(condition_vector)) * self.inv_std
        shift = self.offset(condition_vector) - self.mean * scale
        return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])


def prepare_for_inference(network: Any, truncation: float) -> nn.Module:
    """Make a loaded ``BigGAN`` fast and exact at one truncation; returns its ``generator``.

    * spectral norm is baked into plain weights (eval-mode ``W / sigma``, as the hooks compute);
    * every batch norm takes its statistics at ``truncation`` (:class:`FrozenBatchNorm`);
    * ``conv_to_rgb`` keeps only the 3 output channels the library keeps (``z[:, :3]``), which
      saves most of the last layer's work (128 -> 3 channels at full resolution);
    * ReLUs run in place; weights are channels_last and need no gradient.
    """
    from pytorch_pretrained_biggan.model import BigGANBatchNorm

    for module in list(network.modules()):
        if hasattr(module, "weight_orig"):
            nn.utils.remove_spectral_norm(module)
    generator: Any = network.generator

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, BigGANBatchNorm):
                setattr(parent, name, FrozenBatchNorm(child, truncation))
            elif isinstance(child, nn.ReLU):
                setattr(parent, name, nn.ReLU(inplace=True))
            else:
                swap(child)

    swap(generator)
    old: Any = generator.conv_to_rgb
    rgb = nn.Conv2d(old.in_channels, 3, old.kernel_size, padding=old.padding, bias=True)
    with torch.no_grad():
        rgb.weight.copy_(old.weight[:3])
        rgb.bias.copy_(old.bias[:3])  # type: ignore[union-attr]
    generator.conv_to_rgb = rgb
    generator.requires_grad_(False).eval()
    prepared: nn.Module = generator.to(memory_format=torch.channels_last)
    return prepared
