"""BigGAN-deep weights: find them, load them strictly, and prepare the network for fast inference.

Weights come from a folder holding ``config.json`` and ``pytorch_model.bin`` (the layout
``pytorch-pretrained-biggan`` reads), or from that library's own cache
(``$PYTORCH_PRETRAINED_BIGGAN_CACHE``, default ``~/.pytorch_pretrained_biggan``), downloading into it
on first use through the library's own code. The library loads leniently (missing keys pass); here the file
is read with ``torch.load(..., weights_only=True)`` and every key and shape is checked first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from latentopt.checks import ConfigError
from latentopt.weights import WeightsError, WeightsUnavailable, read_state_dict
from latentopt.weights import check_state_dict as check_shapes

RESOLUTIONS = {"biggan-deep-128": 128, "biggan-deep-256": 256, "biggan-deep-512": 512}
CACHE_ENV = "PYTORCH_PRETRAINED_BIGGAN_CACHE"
N_CLASSES = 1000


def check_model_name(model: str) -> int:
    """Resolution of a model name; a clear error lists the known names."""
    if model not in RESOLUTIONS:
        raise ConfigError(f"unknown BigGAN model {model!r}; known: {', '.join(RESOLUTIONS)}")
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
    state = read_state_dict(state_path)
    check_state_dict(state, network.state_dict(), source=str(state_path))
    network.load_state_dict(state, strict=True)
    return network


def check_state_dict(state: Any, expected: Mapping[str, torch.Tensor], *, source: str) -> None:
    """One-line ``WeightsError`` naming the first missing, unexpected or misshapen key."""
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source}: expected a state dict, got {type(state).__name__}")
    shapes = {key: tuple(value.shape) for key, value in expected.items()}
    check_shapes(state, shapes, source=source, model="the config", hint=" (is config.json the one of these weights?)",
                 floating=False)
