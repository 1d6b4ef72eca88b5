"""Fit a digital twin from recorded sessions: what ``latentopt-twin fit`` and ``experiment=control`` call.

The images come back from the records (:func:`latentopt.stimuli.run_stimuli`: codes through the recorded
generators, natural sets rebuilt) or from a folder plus a CSV (:func:`latentopt.stimuli.folder_stimuli`). Several
sessions of the same channels are pooled: an image key seen in two sessions is one image (its trials pooled) when
the images are identical, and two images otherwise. Features of each distinct image are computed once through the
backbone and cached (:func:`latentopt.twin.features.cached_features`, keyed by the images' bytes, the layers, the
pooling and the backbone weights' SHA-256), so a second fit with other readout settings reuses them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.checks import ConfigError, integer
from latentopt.stimuli import Stimuli

METHODS = ("ridge", "pls")


def pool_stimuli(sessions: Sequence[Stimuli]) -> tuple[list[str], torch.Tensor, np.ndarray, np.ndarray, list[str]]:
    """Several sessions' stimuli as one: ``(keys, images (m, 3, H, W), image_of (p,), responses (p, C), names)``.

    Raises:
        ConfigError: the sessions record different channels, or their images differ in size.
    """
    if not sessions:
        raise ConfigError("latentopt-twin fit: give at least one session")
    names = list(sessions[0].channel_names)
    keys: list[str] = []
    index: dict[str, int] = {}
    images: list[torch.Tensor] = []
    image_of, responses = [], []
    for s, stimuli in enumerate(sessions):
        where = stimuli.source.get("run", f"session {s}")
        if list(stimuli.channel_names) != names:
            raise ConfigError(f"{where} records channels {stimuli.channel_names[:4]}... but the first session "
                              f"{names[:4]}...: a twin is fitted on sessions of the same channels")
        if images and tuple(stimuli.images.shape[1:]) != tuple(images[0].shape):
            raise ConfigError(f"{where} shows images of {tuple(stimuli.images.shape[2:])} pixels but the first "
                              f"session {tuple(images[0].shape[1:])}: fit with --size")
        local = np.empty(len(stimuli.keys), dtype=np.int64)
        for i, key in enumerate(stimuli.keys):
            known = index.get(key)
            if known is not None and torch.equal(images[known], stimuli.images[i]):
                local[i] = known
                continue
            name = key if known is None else f"s{s}:{key}"
            index[name] = len(keys)
            keys.append(name)
            images.append(stimuli.images[i])
            local[i] = index[name]
        image_of.append(local[stimuli.image_of])
        responses.append(np.asarray(stimuli.responses, dtype=np.float64))
    return keys, torch.stack(images), np.concatenate(image_of), np.concatenate(responses), names


def image_digest(images: torch.Tensor) -> str:
    """SHA-256 of the images' float32 bytes (the feature cache's key)."""
    digest = hashlib.sha256()
    array = images.detach().float().cpu().contiguous().numpy()
    digest.update(str(array.shape).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def fit_twin(sessions: Sequence[Stimuli], out: Path | str, *, layers: Sequence[str] | str = ("PIT",),
             pooling: str = "avg", grid: int = 2, method: str = "ridge", folds: int = 5, n_components: int = 25,
             seed: int = 0, device: str = "auto", weights: str | None = None, cache: bool = True,
             cache_folder: Path | str | None = None, overwrite: bool = False,
             provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fit a twin of the sessions' channels and save it in ``out``; returns its report (``twin.json``'s summary).

    Args:
        sessions: the sessions' stimuli (images, presentations, responses).
        out: the twin folder (refused when it holds a twin, unless ``overwrite``).
        layers: backbone layer(s): area presets or module names.
        pooling: ``avg`` (global mean per channel), ``grid`` (``grid`` x ``grid`` means) or ``factorised``
            (spatial x feature readout).
        method: ``ridge`` (cross-validated alpha per channel) or ``pls`` (``n_components``); ``factorised``
            pooling has its own alternating-ridge fit.
        folds: outer cross-validation folds (images never split across folds).
        cache: reuse cached features.
    """
    from latentopt.twin.factorised import factorised_cv
    from latentopt.twin.features import FACTORISED_MAX_SIDE, Backbone, cached_features, check_pooling
    from latentopt.twin.fit import pls_cv, ridge_cv
    from latentopt.twin.model import save_twin
    from latentopt.twin.reliability import noise_ceiling_normalised, split_half_reliability

    check_pooling(pooling, grid)
    if method not in METHODS:
        raise ConfigError(f"twin.method: one of {', '.join(METHODS)}, got {method!r}")
    integer(folds, "twin.folds", minimum=2, maximum=100)
    t0 = time.perf_counter()
    keys, images, image_of, responses, names = pool_stimuli(sessions)
    backbone = Backbone(layers, weights=weights, device=device)
    try:
        parts = {"images": image_digest(images), "layers": backbone.layers, "pooling": pooling,
                 "grid": grid if pooling == "grid" else None, "weights_sha256": backbone.weights_sha256,
                 "max_side": FACTORISED_MAX_SIDE if pooling == "factorised" else None}

        def compute() -> np.ndarray:
            return backbone.pooled_numpy(images, pooling, grid)

        if cache:
            features, reused = cached_features(parts, compute, cache_folder)
        else:
            features, reused = compute(), False
    finally:
        backbone.close()
    t_features = time.perf_counter() - t0
    X, groups = features[image_of], image_of
    if pooling == "factorised":
        fit = factorised_cv(X, responses, groups, folds=folds, seed=seed)
    elif method == "pls":
        fit = pls_cv(X, responses, groups, n_components=n_components, folds=folds, seed=seed)
    else:
        fit = ridge_cv(X, responses, groups, folds=folds, seed=seed)
    try:
        reliability = split_half_reliability(responses, groups, seed=seed)
    except ConfigError:  # fewer than 3 images shown twice: no ceiling
        reliability = np.full(responses.shape[1], np.nan)
    has_repeats = bool(np.isfinite(reliability).any())
    t_fit = time.perf_counter() - t0 - t_features
    record = {"sessions": [dict(s.source) for s in sessions], "images": len(keys), "presentations": len(groups),
              "fitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "features_s": round(t_features, 2), "fit_s": round(t_fit, 2), "features_reused": reused,
              **dict(provenance or {})}
    folder = save_twin(out, fit, layers=backbone.layers, pooling=pooling, grid=grid, channel_names=names,
                       weights_sha256=backbone.weights_sha256, provenance=record,
                       reliability=reliability if has_repeats else None, overwrite=overwrite)
    normalised = noise_ceiling_normalised(fit.r, reliability) if has_repeats else None
    return {"path": str(folder), "channels": names, "r": fit.r.tolist(),
            "median_r": float(np.nanmedian(fit.r)) if np.isfinite(fit.r).any() else None,
            "reliability": reliability.tolist() if has_repeats else None,
            "normalised_r": None if normalised is None else normalised.tolist(),
            "median_normalised_r": None if normalised is None or not np.isfinite(normalised).any()
            else float(np.nanmedian(normalised)),
            "method": fit.method, "layers": backbone.layers, "pooling": pooling, "images": len(keys),
            "presentations": len(groups), "features_s": t_features, "fit_s": t_fit, "features_reused": reused}


def fit_from_runs(runs: Sequence[Path | str], out: Path | str, *, size: int | None = None, device: str = "auto",
                  csv: tuple[Path, Path] | None = None, **settings: Any) -> dict[str, Any]:
    """:func:`fit_twin` on recorded runs (and/or a folder of images with a CSV of responses)."""
    from latentopt.stimuli import folder_stimuli, run_stimuli

    sessions = [run_stimuli(run, device=device, size=size) for run in runs]
    if csv is not None:
        sessions.append(folder_stimuli(csv[0], csv[1], size=size))
    return fit_twin(sessions, out, device=device, provenance={"runs": [str(Path(r).absolute()) for r in runs]},
                    **settings)


FIT_KEYS = ("layers", "pooling", "grid", "method", "folds", "n_components", "seed")


def twin_for_control(node: Any, *, device: str = "auto") -> tuple[Path, dict[str, Any]]:
    """``experiment.twin`` of a control config: the twin folder (fitted there first when ``runs`` are given and
    it holds no twin yet) and what the run records about it.

    Raises:
        ConfigError: naming ``experiment.twin`` (no path, a path that holds no twin and no runs to fit one).
    """
    from latentopt.twin.model import JSON_FILE, read_twin_meta

    if not isinstance(node, Mapping) or not node.get("path") or str(node.get("path")) == "???":
        raise ConfigError("experiment.twin.path: give the twin folder (latentopt-twin fit RUN --out TWIN), "
                          "with experiment.twin.runs to fit it there first")
    unknown = set(map(str, node)) - {"path", "runs", *FIT_KEYS}
    if unknown:
        raise ConfigError(f"experiment.twin: unknown key(s) {sorted(unknown)}; use path, runs, {', '.join(FIT_KEYS)}")
    path = Path(str(node["path"]))
    runs = node.get("runs") or []
    if isinstance(runs, (str, bytes)) or not isinstance(runs, Sequence):
        raise ConfigError(f"experiment.twin.runs must be a list of run folders, got {runs!r}")
    fitted_now = False
    if not (path / JSON_FILE).exists():
        if not runs:
            raise ConfigError(f"experiment.twin.path: {path} holds no twin ({JSON_FILE}); fit one with "
                              f"latentopt-twin fit RUN --out {path}, or give experiment.twin.runs")
        settings = {k: node[k] for k in FIT_KEYS if k in node and node[k] is not None}
        if isinstance(settings.get("layers"), str):
            settings["layers"] = [settings["layers"]]
        fit_from_runs([str(r) for r in runs], path, device=device, **settings)
        fitted_now = True
    meta = read_twin_meta(path, "experiment.twin.path")
    info = {"path": str(path.absolute()), "fitted_by_this_run": fitted_now,
            "readout_sha256": meta.get("readout_sha256"), "layers": meta.get("layers"),
            "pooling": meta.get("pooling"), "method": meta.get("method"),
            "median_r": _median(meta.get("r")), "runs": (meta.get("provenance") or {}).get("runs")}
    return path, info


def _median(values: Any) -> float | None:
    array = np.asarray([np.nan if v is None else v for v in (values or [])], dtype=np.float64)
    return float(np.nanmedian(array)) if np.isfinite(array).any() else None
