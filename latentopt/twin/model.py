"""The digital twin as a torch module, and its folder format (JSON + npz, no pickle).

A twin folder holds two files:

* ``twin.json``: ``format`` ("latentopt-twin"), ``format_version`` (:data:`FORMAT_VERSION`), ``channel_names``,
  ``backbone`` {``name``, ``weights_sha256``, ``input_size``}, ``layers``, ``pooling``, ``grid``, ``method``,
  ``alpha`` (per channel, ridge) or ``n_components`` (pls), ``folds``, ``seed``, ``details`` (method settings),
  ``r`` (held-out r per channel), ``reliability`` and ``normalised_r`` (or null), ``ceiling`` (the
  normalisation's formula), ``n_images``, ``readout_sha256`` (of ``readout.npz``) and ``provenance`` (what the
  caller passes: runs used, number of images, date...). Non-finite numbers are written as null.
* ``readout.npz``: ``weights`` ``(F, C)`` (factorised ``(K, C)``), ``bias`` ``(C,)``, ``x_mean``, ``x_std``
  ``(F,)`` (factorised ``(K,)``) and, for the factorised readout, ``spatial`` ``(C, h, w)``; float64, read with
  ``allow_pickle=False``.

:func:`load_twin` checks all of it (format, hashes, shapes against the backbone) and raises one-line
:class:`~latentopt.checks.ConfigError` naming the file; a twin fitted on other backbone weights is refused.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.builtins.subjects import INPUT_SIZE
from latentopt.checks import ConfigError
from latentopt.twin.features import BACKBONE_NAME, Backbone, check_pooling, pool, weights_sha256
from latentopt.twin.fit import ReadoutFit
from latentopt.weights import sha256_file

FORMAT = "latentopt-twin"
FORMAT_VERSION = 1
JSON_FILE = "twin.json"
NPZ_FILE = "readout.npz"
CEILINGS = {"attenuation": "r / sqrt(reliability)", "brainscore": "r / reliability"}


class Twin(torch.nn.Module):
    """Backbone features -> standardised -> linear (or factorised) readout: ``(n, 3, H, W)`` [0, 1] -> ``(n, C)``.

    Args:
        backbone: the frozen :class:`~latentopt.twin.features.Backbone` (its layers are the twin's).
        arrays: ``weights``, ``bias``, ``x_mean``, ``x_std`` (and ``spatial`` for ``factorised``) as in ``readout.npz``.
        pooling, grid: how the maps are pooled (:func:`~latentopt.twin.features.pool`).
        channel_names: one per readout column.
        meta: the twin's ``twin.json`` (or ``{}``).
    """

    def __init__(self, backbone: Backbone, arrays: dict[str, np.ndarray], *, pooling: str, grid: int,
                 channel_names: Sequence[str], meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        check_pooling(pooling, grid)
        self.backbone = backbone
        self.pooling, self.grid = pooling, int(grid)
        self.channel_names = list(channel_names)
        self.meta = dict(meta or {})
        device = backbone.device
        for name in ("weights", "bias", "x_mean", "x_std", "spatial"):
            if name in arrays:
                tensor = torch.as_tensor(np.asarray(arrays[name]), dtype=torch.float32, device=device)
                self.register_buffer(name, tensor)
        self.weights: torch.Tensor
        self.bias: torch.Tensor
        self.x_mean: torch.Tensor
        self.x_std: torch.Tensor
        self.spatial: torch.Tensor

    def subset(self, indices: Sequence[int]) -> Twin:
        """Keep only the readout columns ``indices`` (in that order); returns self."""
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.bias.device)
        self.weights = self.weights[:, idx]
        self.bias = self.bias[idx]
        if self.pooling == "factorised":
            self.spatial = self.spatial[idx]
        self.channel_names = [self.channel_names[i] for i in indices]
        return self

    def readout(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features (``(n, F)``, factorised ``(n, K, h, w)``) -> ``(n, C)``."""
        if self.pooling == "factorised":
            z = (pooled - self.x_mean[None, :, None, None]) / self.x_std[None, :, None, None]
            per_channel = torch.einsum("nkhw,chw->nkc", z, self.spatial)
            return torch.einsum("nkc,kc->nc", per_channel, self.weights) + self.bias
        return ((pooled - self.x_mean) / self.x_std) @ self.weights + self.bias

    def respond_torch(self, images: torch.Tensor) -> torch.Tensor:
        """Noise-free responses ``(n, C)`` float32 of ``(n, 3, H, W)`` RGB in [0, 1]; differentiable."""
        return torch.cat([self.readout(pool(self.backbone.maps_torch(part), self.pooling, self.grid))
                          for part in torch.split(images, self.backbone.batch_size)])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.respond_torch(images)

    def close(self) -> None:
        self.backbone.close()


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _json_list(values: np.ndarray | None) -> list[float | None] | None:
    return None if values is None else [_json_number(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def save_twin(folder: str | os.PathLike[str], fit: ReadoutFit, *, layers: Sequence[str], pooling: str, grid: int,
              channel_names: Sequence[str], weights_sha256: str, provenance: dict[str, Any],
              reliability: np.ndarray | None = None, ceiling: str = "attenuation",
              overwrite: bool = False) -> Path:
    """Write a twin folder (see the module docstring); returns it.

    Args:
        folder: created if missing; an existing non-empty folder is refused unless ``overwrite``.
        fit: the fitted readout (:func:`~latentopt.twin.fit.ridge_cv`, ``pls_cv``, ``factorised_cv``).
        layers: the backbone's module names (``Backbone.layers``); pooling, grid: as the features were pooled.
        channel_names: one per channel of ``fit``.
        weights_sha256: SHA-256 of the backbone weights the features came from (``Backbone.weights_sha256``).
        provenance: JSON-serialisable facts to keep (runs used, number of images, date, ...).
        reliability: ``(C,)`` split-half reliability; then ``normalised_r`` is written too.
        ceiling: ``attenuation`` (``r / sqrt(reliability)``) or ``brainscore`` (``r / reliability``).
    """
    from latentopt.twin.reliability import noise_ceiling_normalised

    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"twin folder {path} is a file")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ConfigError(f"twin folder {path} is not empty (pass overwrite=True to replace the twin)")
    check_pooling(pooling, grid)
    names = [str(n) for n in channel_names]
    if len(names) != fit.n_channels or len(set(names)) != len(names):
        raise ConfigError(f"twin channel_names: {len(names)} distinct names needed for {fit.n_channels} channels")
    path.mkdir(parents=True, exist_ok=True)
    arrays = {"weights": fit.weights, "bias": fit.bias, "x_mean": fit.x_mean, "x_std": fit.x_std}
    if fit.spatial is not None:
        arrays["spatial"] = fit.spatial
    npz = path / NPZ_FILE
    tmp = path / f".{NPZ_FILE}.tmp.npz"
    np.savez(tmp, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})  # type: ignore[arg-type]
    os.replace(tmp, npz)
    normalised = None if reliability is None else noise_ceiling_normalised(fit.r, reliability, convention=ceiling)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "channel_names": names,
        "backbone": {"name": BACKBONE_NAME, "weights_sha256": weights_sha256, "input_size": INPUT_SIZE},
        "layers": list(layers), "pooling": pooling, "grid": int(grid), "method": fit.method,
        "alpha": _json_list(fit.alphas), "n_components": fit.n_components, "folds": fit.folds, "seed": fit.seed,
        "details": fit.details, "n_images": fit.n_images, "r": _json_list(fit.r),
        "reliability": _json_list(reliability), "normalised_r": _json_list(normalised),
        "ceiling": CEILINGS.get(ceiling, ceiling) if reliability is not None else None,
        "readout_sha256": sha256_file(npz), "provenance": provenance,
    }
    text = json.dumps(meta, indent=1, allow_nan=False)
    (path / f".{JSON_FILE}.tmp").write_text(text)
    os.replace(path / f".{JSON_FILE}.tmp", path / JSON_FILE)
    return path


def read_twin_meta(folder: str | os.PathLike[str], key: str = "subject.path") -> dict[str, Any]:
    """``twin.json`` of a twin folder, checked (format, version, keys, the readout file's SHA-256)."""
    path = Path(folder)
    file = path / JSON_FILE
    if not file.is_file():
        raise ConfigError(f"{key}: {file} is missing (not a twin folder)")
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{key}: {file} is not readable JSON ({type(err).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{key}: {file} is not a latentopt twin (format {FORMAT!r} expected)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{key}: {file} has format_version {meta.get('format_version')!r}; "
                          f"this latentopt reads version {FORMAT_VERSION}")
    required = ("channel_names", "backbone", "layers", "pooling", "grid", "method", "readout_sha256")
    missing = [k for k in required if k not in meta]
    if missing or not isinstance(meta["backbone"], dict) or "weights_sha256" not in meta["backbone"]:
        raise ConfigError(f"{key}: {file} lacks {missing or ['backbone.weights_sha256']}")
    npz = path / NPZ_FILE
    if not npz.is_file():
        raise ConfigError(f"{key}: {npz} is missing")
    if sha256_file(npz) != meta["readout_sha256"]:
        raise ConfigError(f"{key}: {npz} does not match the readout_sha256 of {file} (damaged or replaced)")
    return meta


def _read_arrays(npz: Path, method: str, key: str) -> dict[str, np.ndarray]:
    names = ["weights", "bias", "x_mean", "x_std"] + (["spatial"] if method == "factorised" else [])
    try:
        with np.load(npz, allow_pickle=False) as data:
            missing = [n for n in names if n not in data.files]
            if missing:
                raise ConfigError(f"{key}: {npz} lacks the arrays {missing}")
            arrays = {n: np.asarray(data[n]) for n in names}
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ConfigError(f"{key}: {npz} is not a readable npz of arrays ({type(err).__name__})") from None
    bad = [n for n, a in arrays.items() if a.dtype.kind != "f" or not np.isfinite(a).all()]
    if bad:
        raise ConfigError(f"{key}: {npz} holds non-float or non-finite values in {bad}")
    return arrays


def _check_shapes(arrays: dict[str, np.ndarray], backbone: Backbone, meta: dict[str, Any], npz: Path,
                  key: str) -> None:
    pooling, grid, n_ch = meta["pooling"], int(meta["grid"]), len(meta["channel_names"])
    channels = sum(backbone.shapes[layer][0] for layer in backbone.layers)
    features = channels * grid * grid if pooling == "grid" else channels
    expected = {"weights": (features, n_ch), "bias": (n_ch,), "x_mean": (features,), "x_std": (features,)}
    if pooling == "factorised":
        _, h, w = backbone.shapes[backbone.layers[0]]
        expected["spatial"] = (n_ch, min(h, 7), min(w, 7))
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != shape:
            raise ConfigError(f"{key}: {npz} has {name} of shape {tuple(arrays[name].shape)}; the layers "
                              f"{backbone.layers} with pooling {pooling!r} and {n_ch} channels need {shape}")


def load_twin(folder: str | os.PathLike[str], *, device: str = "auto", weights: str | None = None,
              batch_size: int | None = None, key: str = "subject.path") -> Twin:
    """A twin folder written by :func:`save_twin` as a :class:`Twin` (eval mode, frozen).

    Args:
        folder: the twin folder.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        weights: the backbone state-dict file (default: the packaged ImageNet weights); its SHA-256 must be
            the one the twin was fitted on.
        batch_size: images per forward pass (None = 10 on the CPU).
        key: the config key named in errors.

    Raises:
        ConfigError: one line naming the file (missing, damaged, wrong version, shapes, other backbone weights).
    """
    path = Path(folder)
    meta = read_twin_meta(path, key)
    recorded = str(meta["backbone"]["weights_sha256"])
    actual = weights_sha256(weights)
    if actual != recorded:
        raise ConfigError(f"{key}: {path} was fitted on backbone weights sha256 {recorded[:16]}... but "
                          f"subject.weights gives {actual[:16]}... ({weights or 'the packaged ImageNet weights'})")
    try:
        check_pooling(meta["pooling"], meta["grid"])
        names = [str(n) for n in meta["channel_names"]]
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"{key}: {path / JSON_FILE}: {err}") from None
    arrays = _read_arrays(path / NPZ_FILE, str(meta["method"]), key)
    try:
        backbone = Backbone(meta["layers"], weights=weights, device=device, batch_size=batch_size)
    except ConfigError as err:
        raise ConfigError(f"{key}: {path / JSON_FILE}: {err}") from None
    try:
        _check_shapes(arrays, backbone, meta, path / NPZ_FILE, key)
    except ConfigError:
        backbone.close()
        raise
    return Twin(backbone, arrays, pooling=meta["pooling"], grid=int(meta["grid"]), channel_names=names,
                meta=meta).eval()
