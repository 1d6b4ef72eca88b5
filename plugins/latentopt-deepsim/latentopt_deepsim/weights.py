"""DeePSim weight files: where they come from, where they live, and a strict check on loading.

The files are ``upconvGAN_<variant>.pt`` from the Hugging Face repository
``binxu/DeePSim_DosovitskiyBrox2016`` (MIT licence): torch-pickled ordered dicts of tensors. They are
loaded with ``torch.load(..., weights_only=True)`` (nothing else is unpickled) and every key name
and shape is checked against :mod:`latentopt_deepsim.architecture` before the network sees them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from latentopt.weights import (
    DownloadError,
    WeightsError,
    WeightsUnavailable,
    download,
    read_state_dict,
    weights_dir,
)
from latentopt.weights import check_state_dict as check_shapes
from latentopt_deepsim.architecture import VARIANTS, Variant, get_variant

REPOSITORY = "binxu/DeePSim_DosovitskiyBrox2016"
URL_ENV = "LATENTOPT_DEEPSIM_URL"  # override of the URL template, e.g. a lab mirror
URL_TEMPLATE = f"https://huggingface.co/{REPOSITORY}/resolve/main/upconvGAN_{{variant}}.pt"


def file_name(variant: str) -> str:
    """``upconvGAN_<variant>.pt``."""
    return f"upconvGAN_{get_variant(variant).name}.pt"


def url_for(variant: str) -> str:
    """Download address of a variant's file (``$LATENTOPT_DEEPSIM_URL`` may override the template)."""
    template = os.environ.get(URL_ENV) or URL_TEMPLATE
    return template.format(variant=get_variant(variant).name)


def cache_path(variant: str) -> Path:
    """Where the cache keeps a variant's file: ``<weights_dir>/deepsim/upconvGAN_<variant>.pt``."""
    return weights_dir() / "deepsim" / file_name(variant)


def unavailable_message(variant: str, reason: str) -> str:
    """The one message a user sees when the weights are missing and cannot be fetched."""
    target = cache_path(variant)
    return (
        f"DeePSim {variant} weights are not on this machine and could not be downloaded ({reason}). "
        f"Get {file_name(variant)} from {url_for(variant)} and either put it at {target}, "
        f"run `latentopt-deepsim-weights import {variant} <file>`, or set generator.weights=<file>."
    )


def resolve(variant: str, weights: str | os.PathLike[str] | None = None, *, allow_download: bool = True,
            progress: bool = True) -> Path:
    """The weight file to load: ``weights`` when given, else the cache, downloading on first use.

    Raises:
        WeightsError: ``weights`` names a missing file.
        WeightsUnavailable: no file in the cache and the download is disabled or failed.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"DeePSim {variant} weights: no file at {path}")
        return path
    target = cache_path(variant)
    if target.is_file():
        return target
    if not allow_download:
        raise WeightsUnavailable(unavailable_message(variant, "downloads are disabled"))
    try:
        return fetch(variant, progress=progress)
    except DownloadError as err:
        raise WeightsUnavailable(unavailable_message(variant, str(err))) from None


def fetch(variant: str, *, progress: bool = True) -> Path:
    """Download ``upconvGAN_<variant>.pt`` into the cache and check it; returns the cached path.

    A downloaded file that fails the key/shape check is deleted before the error is raised, so the
    cache never holds a file that every later run would refuse.

    Raises:
        DownloadError: the download failed (a partial file is kept for resuming).
        WeightsError: the server's file is not a DeePSim ``variant`` file.
    """
    target = download(url_for(variant), cache_path(variant), progress=progress)
    try:
        load_state_dict(target, variant)
    except WeightsError:
        target.unlink(missing_ok=True)
        raise
    return target


def load_state_dict(path: str | os.PathLike[str], variant: str | Variant) -> dict[str, torch.Tensor]:
    """Load a weight file and check it matches a variant exactly.

    Keys may carry the ``.1.`` infix of the original conversion (``deconv5.1.weight``); it is
    dropped, as the converter's own loader does. Every other difference is an error.

    Returns:
        The state dict of ``DeePSimNetwork.G``: float32 tensors on the CPU.

    Raises:
        WeightsError: one line naming the file and the first missing, unexpected or misshapen key.
    """
    spec = variant if isinstance(variant, Variant) else get_variant(variant)
    path = Path(path)
    raw = read_state_dict(path)
    state = {str(key).replace(".1.", "."): value for key, value in raw.items()}
    check_state_dict(state, spec, source=str(path))
    return {key: value.float() for key, value in state.items()}


def check_state_dict(state: Mapping[str, Any], spec: Variant, *, source: str) -> None:
    """Raise a one-line ``WeightsError`` unless ``state`` has exactly the keys and shapes of ``spec``."""
    check_shapes(
        state, spec.state_shapes(), source=source, model=f"DeePSim {spec.name}", hint=_guess_variant(state, spec)
    )


def _guess_variant(state: Mapping[str, Any], spec: Variant) -> str:
    """`` (it looks like the fc8 file)`` when the keys and shapes match another variant exactly."""
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    for other in VARIANTS.values():
        if other.name != spec.name and other.state_shapes() == shapes and other.state_shapes() != spec.state_shapes():
            return f" (it looks like the {other.name} file)"
    return ""


def import_file(variant: str, source: str | os.PathLike[str]) -> Path:
    """Check a local file and copy it into the cache (atomically). Returns the cached path."""
    load_state_dict(source, variant)
    target = cache_path(variant)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".import")
    shutil.copyfile(source, part)
    os.replace(part, target)
    return target


def cached() -> list[tuple[str, Path | None]]:
    """Every variant and its cached file (None when absent)."""
    return [(name, cache_path(name) if cache_path(name).is_file() else None) for name in VARIANTS]
