"""Reading a run folder back: :func:`load_run` opens it lazily (see :class:`RunRecord`).

The block schema and the writer are in :mod:`latentopt.records`; this module only reads.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.records import (
    GENERATION_DIR,
    RUN_MARKER,
    BlockRecord,
    RecordError,
    RunWriter,
    _parse_block,
    load_generation,
)


# ---------------------------------------------------------------------------- reader
@dataclass
class ThreadRecord:
    """Per-thread arrays over generations."""

    codes: np.ndarray  # (generations, population, d)
    scores: np.ndarray  # (generations, population)
    responses: np.ndarray  # (generations, population, channels[, time_bins])
    image_ids: np.ndarray  # (generations, population) str
    reference_scores: np.ndarray  # (generations, references)


class RunRecord:
    """A run read back by :func:`load_run`; files are read when a field is first used.

    ``generations`` (the number of block files), ``config``, ``provenance`` and :meth:`block` read no
    block file or one. The per-thread arrays read every block once (optimizer states never):
    for the first (usually only) thread, ``scores`` ``(generations, population)``, ``codes``
    ``(generations, population, d)``, ``responses`` ``(generations, population, channels[, bins])``;
    other threads in ``threads``. Reference images: ``reference_ids`` and ``reference_responses``
    ``(generations, references, channels[, bins])``; ``timings`` per stage ``(generations,)``; ``subject``
    per generation what the subject asked to record (``{}`` if nothing).
    """

    def __init__(self, path: Path, config: str, provenance: dict[str, Any], generations: int) -> None:
        self.path = path
        self.config = config
        self.provenance = provenance
        self.generations = generations

    def block(self, generation: int) -> BlockRecord:
        """One block (negative: from the end), without optimizer states."""
        index = generation if generation >= 0 else self.generations + generation
        if not 0 <= index < self.generations:
            raise RecordError(f"{self.path} has {self.generations} generations; there is no generation {generation}")
        path = self.path / GENERATION_DIR / f"gen_{index:05d}.npz"
        return _parse_block(path, load_generation(self.path, index, skip_state=True), None)

    @property
    def experiment(self) -> str:
        """The registered name of the experiment that recorded the run (from the first block)."""
        return self.block(0).experiment if self.generations else "evolve"

    @functools.cached_property
    def _arrays(self) -> _Assembled:
        blocks: list[BlockRecord] = []
        names: list[str] | None = None
        for g in range(self.generations):
            path = self.path / GENERATION_DIR / f"gen_{g:05d}.npz"
            blocks.append(_parse_block(path, load_generation(self.path, g, skip_state=True), names))
            names = blocks[0].thread_names
        try:
            return _assemble(blocks)
        except (ValueError, IndexError) as err:  # shapes that differ between generations
            raise RecordError(f"{self.path}: generations do not fit together: {' '.join(str(err).split())}") from err

    @property
    def threads(self) -> dict[str, ThreadRecord]:
        return self._arrays.threads

    @property
    def reference_ids(self) -> list[str]:
        return self._arrays.reference_ids

    @property
    def reference_responses(self) -> np.ndarray:
        return self._arrays.reference_responses

    @property
    def timings(self) -> dict[str, np.ndarray]:
        return self._arrays.timings

    @property
    def subject(self) -> list[dict[str, Any]]:
        return self._arrays.subject

    def _first(self) -> ThreadRecord:
        if not self.threads:
            raise RecordError(f"{self.path} holds no generation of an optimizer thread")
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
        names = self.block(0).thread_names if self.generations else []
        name = thread or (names[0] if names else "main")
        index = generation if generation >= 0 else self.generations + generation
        return load_generation(self.path, index)["threads"][name]["state"]


def _read_run_files(run_dir: Path) -> tuple[str, dict[str, Any]]:
    """``config.yaml`` text and ``provenance.json`` of a started run."""
    if not (run_dir / "config.yaml").exists():
        raise RecordError(f"{run_dir} is not a latentopt run folder (no config.yaml)")
    writer = RunWriter(run_dir)
    # A folder from a latentopt that wrote no start marker, with both start files and a generation, was
    # started completely: it is read (not resumed), so a lab's earlier sessions stay readable.
    legacy = writer.is_legacy()
    if not legacy:
        writer.require_started()
    texts = {}
    for name in ("config.yaml", "provenance.json") + (() if legacy else (RUN_MARKER,)):
        path = run_dir / name
        try:
            texts[name] = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise RecordError(f"{path} cannot be read: {' '.join(str(err).split())}") from err
    for name in ("provenance.json",) + (() if legacy else (RUN_MARKER,)):
        try:
            value = json.loads(texts[name])
        except ValueError as err:
            raise RecordError(f"{run_dir / name} is damaged (not JSON: {err})") from err
        if not isinstance(value, dict):
            raise RecordError(f"{run_dir / name} is damaged (not a JSON object)")
        if name == "provenance.json":
            provenance = value
    return texts["config.yaml"], provenance


def load_run(path: Path | str) -> RunRecord:
    """Open a run folder (see :class:`RunRecord`): reads its config and provenance and counts its blocks.

    Block files are read when a field needs them; optimizer states only by :meth:`RunRecord.optimizer_state`.

    Raises:
        RecordError: the folder is no started run, or a file is missing or damaged (the message names it).
    """
    run_dir = Path(path)
    config, provenance = _read_run_files(run_dir)
    return RunRecord(run_dir, config, provenance, RunWriter(run_dir).completed_generations())


@dataclass
class _Assembled:
    threads: dict[str, ThreadRecord]
    reference_ids: list[str]
    reference_responses: np.ndarray
    timings: dict[str, np.ndarray]
    subject: list[dict[str, Any]]


def _assemble(blocks: list[BlockRecord]) -> _Assembled:
    count = len(blocks)
    reference_ids: list[str] = []
    for b in blocks:  # references may be shown only in some blocks
        ids = [str(i) for i in b.image_ids[b.owner == -1]]
        if ids:
            reference_ids = ids
            break

    def by_reference(values: list[np.ndarray], trailing: tuple[int, ...]) -> np.ndarray:
        out = np.full((count, len(reference_ids), *trailing), np.nan)
        for k, v in enumerate(values):
            if len(v):
                out[k] = v
        return out

    threads: dict[str, ThreadRecord] = {}
    reference_responses = np.zeros((count, 0))
    if blocks:
        trailing = tuple(blocks[0].responses.shape[1:])
        for index, name in enumerate(blocks[0].thread_names):
            sel = [b.owner == index for b in blocks]
            threads[name] = ThreadRecord(
                codes=np.stack([b.threads[name]["codes"] for b in blocks]),
                scores=np.stack([b.threads[name]["scores"] for b in blocks]),
                responses=np.stack([b.responses[s] for b, s in zip(blocks, sel, strict=True)]),
                image_ids=np.stack([b.image_ids[s] for b, s in zip(blocks, sel, strict=True)]),
                reference_scores=by_reference([b.threads[name]["reference_scores"] for b in blocks], ()),
            )
        reference_responses = by_reference([b.responses[b.owner == -1] for b in blocks], trailing)
    keys = blocks[0].timings if blocks else {}
    timings = {key: np.array([b.timings.get(key, np.nan) for b in blocks]) for key in keys}
    return _Assembled(threads, reference_ids, reference_responses, timings, [b.subject for b in blocks])


def recorded_config(run_dir: Path | str, *, device: str | None = None) -> dict[str, Any]:
    """A run's ``config.yaml`` as a plain, resolved dict (``device``: resolve ``${device}`` to this one instead).

    Raises:
        RecordError: the file is missing or not a YAML mapping (the message names it).
    """
    from omegaconf import DictConfig, OmegaConf

    path = Path(run_dir) / "config.yaml"
    try:
        cfg = OmegaConf.create(path.read_text())
        if not isinstance(cfg, DictConfig):
            raise ValueError("not a mapping")
        if device is not None:
            cfg.device = device
        data = OmegaConf.to_container(cfg, resolve=True)
    except FileNotFoundError:
        raise RecordError(f"{run_dir} is not a latentopt run folder (no config.yaml)") from None
    except Exception as err:  # yaml and omegaconf raise several types for a damaged file
        raise RecordError(f"{path} is not a readable config: {(str(err).splitlines() or ['?'])[0]}") from None
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}
