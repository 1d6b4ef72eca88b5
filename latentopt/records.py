"""Run records: the only code that writes into a run folder, and the code that reads it back.

One folder per run::

    run/
      config.yaml          the composed configuration
      provenance.json      versions of python/torch/cma/nevergrad/latentopt, seed, component details
      run.json             the start marker, written last when a run starts: a folder without it holds no run
      run.lock             locked (fcntl.flock) by the one process writing the run; names its pid
      generations/
        gen_00000.npz      one generation (block), written atomically (see below)
      images/best_<thread>_00000.png   the best image of each thread per generation
      resumes.jsonl        one line per resume (provenance of the resuming process)
      montage_<thread>.png, trajectory.png, summary.json   written when the run ends

A generation file holds the block (``image_ids``, ``thread`` index or -1 for reference images,
``responses``, ``scores``), each thread's ``codes`` and ``scores``, its optimizer state after the
update, timings, and under ``subject`` whatever the subject asked to record for that block
(``Subject.block_extras``: a rig's raw PSTH bins, archived response files, logs).

Every file is written to a fresh temporary name, fsynced, then hard-linked to its final name (which
fails if that name exists, so no writer replaces another's file) and the temporary removed: a kill -9
at any moment leaves either the whole file or nothing (at most a ``.*.tmp`` that a resume removes).
A failed write (disk full, ...) is a one-line :class:`RecordError` naming the file, and leaves neither
the file nor a temporary. Generations are numbered without gaps; a gap is a :class:`RecordError`.
Arrays are stored with ``allow_pickle=False``; nothing read is unpickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from latentopt.blocks import ShownBlock
from latentopt.record_files import RecordError as RecordError
from latentopt.record_files import atomic_write_bytes as atomic_write_bytes
from latentopt.record_files import atomic_write_text as atomic_write_text
from latentopt.record_files import load_tree as load_tree
from latentopt.record_files import tree_to_npz_bytes as tree_to_npz_bytes

GENERATION_DIR = "generations"
IMAGE_DIR = "images"
RUN_MARKER = "run.json"
"""Written last when a run starts: a folder without it holds no run."""
LOCK_FILE = "run.lock"
DESIGN_FILE = "design.npz"
"""A fixed-design experiment's design (e.g. a manifold's grid codes), written before the start marker."""
RECORD_NAMES = (RUN_MARKER, "config.yaml", "provenance.json", DESIGN_FILE, GENERATION_DIR, IMAGE_DIR,
                "resumes.jsonl", "summary.json", "trajectory.png", LOCK_FILE)
"""What latentopt writes into a run folder (besides ``montage_<thread>.png``)."""
_GENERATION_FILE = re.compile(r"gen_(\d{5,})\.npz")


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


# ---------------------------------------------------------------------------- run folders
def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _holder(fd: int) -> str:
    """Who holds a lock file, from what it wrote (``process PID since TIME``)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"process {int(info['pid'])} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def run_folder_contents(run_dir: Path | str) -> list[str]:
    """The latentopt files in ``run_dir`` (the lock file aside): empty for a folder a new run may use."""
    folder = Path(run_dir)
    if not folder.is_dir():
        return []
    names = [n for n in RECORD_NAMES if n != LOCK_FILE and (folder / n).exists()]
    return names + sorted(p.name for p in folder.glob("montage_*.png"))


def occupied_message(run_dir: Path | str, found: list[str]) -> str:
    """Why a new run may not use ``run_dir``, and what to do instead (one line)."""
    if RUN_MARKER in found or GENERATION_DIR in found:
        return (f"{run_dir} already holds a run; resume it with `latentopt-resume {run_dir}` "
                "or choose another hydra.run.dir")
    return (f"{run_dir} already holds latentopt files ({', '.join(found)}) but no started run; "
            f"choose another hydra.run.dir (or delete {run_dir})")


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

    def start(self, *, config_yaml: str, provenance: Mapping[str, Any],
              design: Mapping[str, Any] | None = None) -> None:
        """Begin a new run: ``config.yaml``, ``provenance.json``, the design, then the marker ``run.json`` last.

        Args:
            config_yaml: the composed configuration.
            provenance: what the run records about itself (components, seed, command, runtime).
            design: a fixed-design experiment's design, a tree of arrays written to ``design.npz``.

        Raises:
            RecordError: the folder already holds latentopt files (a run, or an interrupted start);
                or a write failed (then what this call wrote is removed again).
        """
        found = run_folder_contents(self.run_dir)
        if found:
            raise RecordError(occupied_message(self.run_dir, found))
        written: list[Path] = []
        try:
            for name, text in (
                ("config.yaml", config_yaml),
                ("provenance.json", json.dumps({**provenance, "versions": library_versions()}, indent=2,
                                               default=str)),
                (RUN_MARKER, json.dumps({"format": 1, "started": _now(), "pid": os.getpid()})),
            ):
                if name == RUN_MARKER and design is not None:
                    atomic_write_bytes(self.run_dir / DESIGN_FILE, tree_to_npz_bytes(design))
                    written.append(self.run_dir / DESIGN_FILE)
                atomic_write_text(self.run_dir / name, text)
                written.append(self.run_dir / name)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def is_started(self) -> bool:
        """Whether the folder holds a run: its start marker ``run.json`` exists."""
        return (self.run_dir / RUN_MARKER).is_file()

    def is_legacy(self) -> bool:
        """A folder of a latentopt that wrote no start marker: ``provenance.json`` and a generation, no marker.

        Both start files and a generation mean its start completed; :func:`load_run` reads it, resume refuses.
        """
        return (not self.is_started() and (self.run_dir / "provenance.json").is_file()
                and self.generation_path(0).is_file())

    def require_started(self) -> None:
        """Raise :class:`RecordError` (one line, what to do) unless the folder holds a started run."""
        if not self.run_dir.is_dir():
            raise RecordError(f"{self.run_dir} is not a latentopt run folder (no such folder)")
        if self.is_legacy():
            raise RecordError(
                f"{self.run_dir} was recorded by a latentopt that wrote no start marker ({RUN_MARKER}): "
                f"latentopt.load_run reads it, but it cannot be resumed; start a new run in another folder"
            )
        if not self.is_started():
            raise RecordError(
                f"{self.run_dir} is not a latentopt run: no {RUN_MARKER} (written last when a run starts, so its "
                f"start was interrupted or it is no run folder); start a new run in another folder "
                f"or delete {self.run_dir}"
            )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder's lock (``run.lock``, ``fcntl.flock``): one writer at a time.

        Raises:
            RecordError: another process holds it (the message names its pid and since when).
        """
        path = self.run_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RecordError(f"cannot lock {path}: {err.strerror or err}") from err
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                raise RecordError(f"run folder {self.run_dir} is in use by {_holder(fd)}; "
                                  "wait for it to end, or stop it, and try again") from err
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "since": _now()}).encode())
            yield
        finally:
            os.close(fd)  # releases the lock

    def record_resume(self, *, from_generation: int, provenance: Mapping[str, Any]) -> None:
        """Note a resume (provenance of the resumed process) without touching earlier records."""
        self.clean_temporary_files()
        path = self.run_dir / "resumes.jsonl"
        previous = path.read_text() if path.exists() else ""
        entry = {"from_generation": from_generation, **provenance, "versions": library_versions()}
        atomic_write_text(path, previous + json.dumps(entry, default=str) + "\n", overwrite=True)

    def clean_temporary_files(self) -> None:
        """Remove half-written temporaries left by a killed process (call it holding :meth:`lock`)."""
        for folder in (self.run_dir, self.generation_dir, self.image_dir):
            if folder.exists():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink()

    def generation_path(self, generation: int) -> Path:
        return self.generation_dir / f"gen_{generation:05d}.npz"

    def completed_generations(self) -> int:
        """Number of complete generation files (``gen_00000.npz`` ... without a gap).

        Raises:
            RecordError: a generation is missing while later ones exist (the message names it).
        """
        if not self.generation_dir.is_dir():
            return 0
        found = {int(m.group(1)) for f in self.generation_dir.iterdir() if (m := _GENERATION_FILE.fullmatch(f.name))}
        missing = sorted(set(range(max(found, default=-1) + 1)) - found)
        if missing:
            raise RecordError(f"{self.generation_path(missing[0])} is missing but generation {max(found)} exists: "
                              "the run folder is damaged (generations are written in order and never deleted)")
        return len(found)

    def read_design(self) -> dict[str, Any]:
        """The design written by :meth:`start` (``{}`` when the experiment has none)."""
        path = self.run_dir / DESIGN_FILE
        return load_tree(path) if path.exists() else {}

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

    def write_figure(self, name: str, draw: Callable[[Any], None], *, size: tuple[float, float] = (7, 4)) -> None:
        """Draw with matplotlib (Agg) into ``name`` (``size`` in inches)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size)
        try:
            draw(fig)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
        atomic_write_bytes(self.run_dir / name, buffer.getvalue(), overwrite=True)


# ---------------------------------------------------------------------------- the block record
def block_record(
    shown: ShownBlock,
    *,
    experiment: str,
    timings: Mapping[str, float],
    threads: Mapping[str, Mapping[str, Any]] | None = None,
    design: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of one block, as written to ``generations/gen_NNNNN.npz``: the schema, in one place.

    Args:
        shown: the block as shown (:func:`latentopt.blocks.show_block`).
        experiment: the registered name of the experiment (``evolve``, ``manifold``, ...).
        timings: seconds spent per stage (``optimizer_s``, ``generator_s``, ``subject_s``, ...).
        threads: per optimizer thread (owner ``i`` of the block = the ``i``-th thread): ``codes``
            ``(k, d)``, ``scores`` ``(k,)``, ``reference_scores`` ``(r,)``, ``state`` (the optimizer
            state after the update). Empty for a fixed-design experiment.
        design: what a fixed-design experiment records about the images of the block (e.g. the
            index of each image in its design).

    The file holds ``meta`` (``generation``, ``experiment``, ``thread_names``, ``timings``, ``time``),
    ``block`` (``image_ids``, ``thread`` = owner index or -1 for references, ``responses``), ``threads``,
    ``design`` (if any) and ``subject`` (the subject's :meth:`~latentopt.subject.Subject.block_extras`).
    """
    threads = threads or {}
    record: dict[str, Any] = {
        "meta": {"generation": int(shown.block), "experiment": str(experiment), "thread_names": list(threads),
                 "timings": {str(k): float(v) for k, v in timings.items()}, "time": time.time()},
        "block": {"image_ids": np.asarray(shown.image_ids, dtype=str), "thread": shown.owner,
                  "responses": shown.responses},
        "threads": {name: {key: node[key] for key in ("codes", "scores", "reference_scores", "state")}
                    for name, node in threads.items()},
    }
    if design:
        record["design"] = dict(design)
    if shown.extras:
        record["subject"] = shown.extras
    return record


@dataclass
class BlockRecord:
    """One block read back (without optimizer states): see :func:`block_record` for the fields."""

    generation: int
    experiment: str
    thread_names: list[str]
    image_ids: np.ndarray  # (n,) str
    owner: np.ndarray  # (n,) int: thread index, -1 for references
    responses: np.ndarray  # (n, channels[, time_bins])
    threads: dict[str, dict[str, np.ndarray]]  # codes, scores, reference_scores per thread
    timings: dict[str, float]
    design: dict[str, Any]
    subject: dict[str, Any]


def _parse_block(path: Path, tree: dict[str, Any], names: list[str] | None) -> BlockRecord:
    """A block file's tree, checked: the keys readers need, with consistent lengths; names its file if not."""
    try:
        meta = tree["meta"]
        thread_names = [str(n) for n in meta["thread_names"]]
        if names is not None and thread_names != names:
            raise ValueError(f"thread names {thread_names} differ from generation 0's {names}")
        ids, owner, responses = (np.asarray(tree["block"][k]) for k in ("image_ids", "thread", "responses"))
        n = len(ids)
        if owner.shape != (n,) or len(responses) != n:
            raise ValueError("block image_ids, thread and responses differ in length")
        threads = {}
        for name in thread_names:
            node = tree["threads"][name]
            threads[name] = {k: np.asarray(node[k]) for k in ("codes", "scores", "reference_scores")}
        timings = {str(k): float(v) for k, v in meta["timings"].items()}
        subject, design = tree.get("subject", {}), tree.get("design", {})
        if not isinstance(subject, dict) or not isinstance(design, dict):
            raise ValueError("subject or design is not a dict")
        # records written before the experiment key were all evolutions
        return BlockRecord(int(meta["generation"]), str(meta.get("experiment", "evolve")), thread_names, ids, owner,
                           responses, threads, timings, design, subject)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        reason = f"missing entry {err}" if isinstance(err, KeyError) else " ".join(str(err).split())
        raise RecordError(f"{path} is damaged or not a latentopt generation: {reason}") from err


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


def load_generation(run_dir: Path | str, generation: int, *, skip_state: bool = False) -> dict[str, Any]:
    """One generation's record as a nested dict (``skip_state``: without the optimizer states).

    Raises:
        RecordError: the file is missing or damaged (the message names it).
    """
    path = Path(run_dir) / GENERATION_DIR / f"gen_{generation:05d}.npz"
    if not path.exists():
        raise RecordError(f"{path}: no such generation")
    return load_tree(path, skip_state=skip_state)


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
