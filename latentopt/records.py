"""Run records: the only code that writes files.

One folder per run::

    run/
      config.yaml          the composed configuration
      provenance.json      versions of python/torch/cma/nevergrad/latentopt, seed, component details
      generations/
        gen_00000.npz      one generation (block), written atomically (see below)
      images/best_<thread>_00000.png   the best image of each thread per generation
      montage_<thread>.png, trajectory.png, summary.json   written when the run ends

A generation file holds the block (``image_ids``, ``thread`` index or -1 for reference images,
``responses``, ``scores``), each thread's ``codes`` and ``scores``, its optimizer state after the
update, timings, and under ``subject`` whatever the subject asked to record for that block
(``Subject.block_extras``: a rig's raw PSTH bins, archived response files, logs).

Every file is written to a temporary name, flushed, fsynced and renamed, so a kill -9 at any
moment leaves either the whole file or nothing; existing files are never replaced.
Arrays are stored with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import os
import platform
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

GENERATION_DIR = "generations"
IMAGE_DIR = "images"


class RecordError(RuntimeError):
    """A run folder is missing, damaged, or would be overwritten."""


# ---------------------------------------------------------------------------- atomic files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise RecordError(f"{path} exists already; records are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, overwrite: bool = False) -> None:
    atomic_write_bytes(path, text.encode(), overwrite=overwrite)


# ---------------------------------------------------------------------------- nested trees in npz
def _flatten(tree: Mapping[str, Any], prefix: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    for key, value in tree.items():
        if "/" in key:
            raise RecordError(f"record key {key!r} may not contain '/'")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            meta[name] = {"type": "dict"}
            _flatten(value, name + "/", arrays, meta)
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                raise RecordError(f"record {name!r} is an object array; store numbers or strings")
            arrays[name] = value
        elif isinstance(value, (bytes, bytearray)):
            arrays[name] = np.frombuffer(bytes(value), dtype=np.uint8)
            meta[name] = {"type": "bytes"}
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value) and value:
            arrays[name] = np.asarray(value)
            meta[name] = {"type": "list"}
        elif value is None or isinstance(value, (bool, int, float, str, np.generic, list, tuple)):
            scalar = value.item() if isinstance(value, np.generic) else value
            meta[name] = {"type": "value", "value": scalar}
        else:
            raise RecordError(f"record {name!r} has unsupported type {type(value).__name__}")


def tree_to_npz_bytes(tree: Mapping[str, Any]) -> bytes:
    """Serialise a nested dict of arrays, numbers, strings and bytes to npz bytes (no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    _flatten(tree, "", arrays, meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def load_tree(path: Path | str | IO[bytes]) -> dict[str, Any]:
    """Read a file (or an open binary file object) written by :func:`tree_to_npz_bytes`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise RecordError(f"{path} is damaged or not a latentopt record: {err}") from err
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    root: dict[str, Any] = {}

    def parent_of(name: str) -> tuple[dict[str, Any], str]:
        node = root
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        return node, leaf

    for name, info in meta.items():
        node, leaf = parent_of(name)
        if info["type"] == "dict":
            node.setdefault(leaf, {})
        elif info["type"] == "value":
            node[leaf] = info["value"]
        elif info["type"] == "bytes":
            node[leaf] = arrays.pop(name).tobytes()
        elif info["type"] == "list":
            node[leaf] = arrays.pop(name).tolist()
    for name, array in arrays.items():
        node, leaf = parent_of(name)
        node[leaf] = array
    return root


# ---------------------------------------------------------------------------- provenance
def library_versions() -> dict[str, str]:
    """Versions of python and the libraries whose results change between releases."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("latentopt", "torch", "numpy", "cma", "nevergrad", "hydra-core"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)  # speed over size: once per generation
    return buffer.getvalue()


def to_uint8_image(image: Any) -> np.ndarray:
    """``(3, H, W)`` float RGB in [0, 1] (numpy or torch) -> ``(H, W, 3)`` uint8."""
    array = image.detach().float().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return (np.clip(array.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------- writer
class RunWriter:
    """Writes one run folder. The experiment hands it each finished generation.

    Args:
        run_dir: the run folder (created if needed).
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.generation_dir = self.run_dir / GENERATION_DIR
        self.image_dir = self.run_dir / IMAGE_DIR

    def start(self, *, config_yaml: str, provenance: Mapping[str, Any]) -> None:
        """Begin a new run; refuses a folder that already holds generations."""
        if self.completed_generations():
            raise RecordError(
                f"{self.run_dir} already holds a run; resume it with `latentopt-resume {self.run_dir}` "
                "or choose another hydra.run.dir"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", config_yaml, overwrite=True)
        atomic_write_text(
            self.run_dir / "provenance.json",
            json.dumps({**provenance, "versions": library_versions()}, indent=2, default=str),
            overwrite=True,
        )

    def record_resume(self, *, from_generation: int, provenance: Mapping[str, Any]) -> None:
        """Note a resume (provenance of the resumed process) without touching earlier records."""
        self.clean_temporary_files()
        path = self.run_dir / "resumes.jsonl"
        previous = path.read_text() if path.exists() else ""
        entry = {"from_generation": from_generation, **provenance, "versions": library_versions()}
        atomic_write_text(path, previous + json.dumps(entry, default=str) + "\n", overwrite=True)

    def clean_temporary_files(self) -> None:
        """Remove half-written temporaries left by a killed process."""
        for folder in (self.run_dir, self.generation_dir, self.image_dir):
            if folder.exists():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink()

    def generation_path(self, generation: int) -> Path:
        return self.generation_dir / f"gen_{generation:05d}.npz"

    def completed_generations(self) -> int:
        """Number of consecutive complete generation files from 0."""
        count = 0
        while self.generation_path(count).exists():
            count += 1
        return count

    def write_generation(
        self,
        generation: int,
        record: Mapping[str, Any],
        best_images: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Write one generation; its npz is the commit point (images first, then the npz)."""
        for thread, image in (best_images or {}).items():
            path = self.image_dir / f"best_{thread}_{generation:05d}.png"
            atomic_write_bytes(path, _png_bytes(image), overwrite=True)
        atomic_write_bytes(self.generation_path(generation), tree_to_npz_bytes(record))

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        atomic_write_text(self.run_dir / name, json.dumps(data, indent=2, default=str), overwrite=True)

    def write_png(self, name: str, image: np.ndarray) -> None:
        atomic_write_bytes(self.run_dir / name, _png_bytes(image), overwrite=True)

    def write_figure(self, name: str, draw: Callable[[Any], None]) -> None:
        """Draw with matplotlib (Agg) into ``name``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(7, 4))
        try:
            draw(fig)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
        atomic_write_bytes(self.run_dir / name, buffer.getvalue(), overwrite=True)


# ---------------------------------------------------------------------------- reader
@dataclass
class ThreadRecord:
    """Per-thread arrays over generations."""

    codes: np.ndarray  # (generations, population, d)
    scores: np.ndarray  # (generations, population)
    responses: np.ndarray  # (generations, population, channels[, time_bins])
    image_ids: np.ndarray  # (generations, population) str
    reference_scores: np.ndarray  # (generations, references)


@dataclass
class RunRecord:
    """A run read back by :func:`load_run`.

    For the first (usually only) thread: ``scores`` ``(generations, population)``, ``codes``
    ``(generations, population, d)``, ``responses`` ``(generations, population, channels[, bins])``.
    Reference images: ``reference_ids`` and ``reference_responses``
    ``(generations, references, channels[, bins])``. Other threads in ``threads``.
    """

    path: Path
    config: str
    provenance: dict[str, Any]
    threads: dict[str, ThreadRecord]
    reference_ids: list[str]
    reference_responses: np.ndarray
    timings: dict[str, np.ndarray] = field(default_factory=dict)
    subject: list[dict[str, Any]] = field(default_factory=list)
    """Per generation, what the subject asked to record (``Subject.block_extras``; ``{}`` if nothing)."""

    @property
    def generations(self) -> int:
        return int(next(iter(self.threads.values())).scores.shape[0]) if self.threads else 0

    def _first(self) -> ThreadRecord:
        if not self.threads:
            raise RecordError(f"{self.path} holds no generation yet")
        return next(iter(self.threads.values()))

    @property
    def scores(self) -> np.ndarray:
        return self._first().scores

    @property
    def codes(self) -> np.ndarray:
        return self._first().codes

    @property
    def responses(self) -> np.ndarray:
        return self._first().responses

    @property
    def image_ids(self) -> np.ndarray:
        return self._first().image_ids

    def optimizer_state(self, thread: str | None = None, generation: int = -1) -> dict[str, Any]:
        """The optimizer state of ``thread`` after ``generation`` (default: the last)."""
        name = thread or next(iter(self.threads))
        index = generation if generation >= 0 else self.generations + generation
        return load_generation(self.path, index)["threads"][name]["state"]


def load_generation(run_dir: Path | str, generation: int) -> dict[str, Any]:
    """One generation's record as a nested dict."""
    path = Path(run_dir) / GENERATION_DIR / f"gen_{generation:05d}.npz"
    if not path.exists():
        raise RecordError(f"{path}: no such generation")
    return load_tree(path)


def load_run(path: Path | str) -> RunRecord:
    """Read a run folder into per-generation arrays (see :class:`RunRecord`)."""
    run_dir = Path(path)
    if not (run_dir / "config.yaml").exists():
        raise RecordError(f"{run_dir} is not a latentopt run folder (no config.yaml)")
    provenance = json.loads((run_dir / "provenance.json").read_text())
    count = RunWriter(run_dir).completed_generations()
    gens = [load_generation(run_dir, g) for g in range(count)]
    threads: dict[str, ThreadRecord] = {}
    reference_ids: list[str] = []
    for g in gens:  # references may be shown only in some blocks
        ids = [str(i) for i in g["block"]["image_ids"][g["block"]["thread"] == -1]]
        if ids:
            reference_ids = ids
            break

    def by_reference(values: list[np.ndarray], trailing: tuple[int, ...]) -> np.ndarray:
        out = np.full((count, len(reference_ids), *trailing), np.nan)
        for k, v in enumerate(values):
            if len(v):
                out[k] = v
        return out

    reference_responses = np.zeros((count, 0))
    if gens:
        blocks = [g["block"] for g in gens]
        trailing = tuple(blocks[0]["responses"].shape[1:])
        for index, name in enumerate(gens[0]["meta"]["thread_names"]):
            sel = [b["thread"] == index for b in blocks]
            threads[name] = ThreadRecord(
                codes=np.stack([g["threads"][name]["codes"] for g in gens]),
                scores=np.stack([g["threads"][name]["scores"] for g in gens]),
                responses=np.stack([b["responses"][s] for b, s in zip(blocks, sel, strict=True)]),
                image_ids=np.stack([b["image_ids"][s] for b, s in zip(blocks, sel, strict=True)]),
                reference_scores=by_reference([g["threads"][name]["reference_scores"] for g in gens], ()),
            )
        reference_responses = by_reference([b["responses"][b["thread"] == -1] for b in blocks], trailing)
    timings = {key: np.array([g["meta"]["timings"][key] for g in gens]) for key in
               (gens[0]["meta"]["timings"] if gens else {})}
    return RunRecord(run_dir, (run_dir / "config.yaml").read_text(), provenance, threads,
                     reference_ids, reference_responses, timings, [g.get("subject", {}) for g in gens])
