"""Run records: the only code that writes into a run folder, and the schema of a block record.

Reading a folder back is :mod:`latentopt.run_record` (``load_run``; also importable from here).

One folder per run::

    run/
      config.yaml          the composed configuration
      provenance.json      versions of python/torch/cma/nevergrad/latentopt, seed, component details
      design.npz           a fixed-design experiment's design (e.g. a manifold's grid codes), if any
      run.json             the start marker, written last when a run starts: a folder without it holds no run
      run.lock             locked (fcntl.flock) by the one process writing the run; names its pid
      generations/
        gen_00000.npz      one block (an evolution's generation), written atomically (see below)
      images/best_<thread>_00000.png   the best image of each thread per generation
      resumes.jsonl        one line per resume (provenance of the resuming process)
      montage_<thread>.png, trajectory.png, summary.json   written when the run ends
      report.html          the one-page report (latentopt.html_report), written last when the run ends

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
                "resumes.jsonl", "summary.json", "trajectory.png", "report.html", LOCK_FILE)
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

    def write_text(self, name: str, text: str) -> None:
        """A report file (``summary.md``, a CSV), replaced when written again."""
        atomic_write_text(self.run_dir / name, text, overwrite=True)

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
    time_bins_ms: Any = None,
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
        time_bins_ms: the subject's bin edges ``(time_bins + 1,)`` ms when its responses are time-binned.

    The file holds ``meta`` (``generation``, ``experiment``, ``thread_names``, ``timings``, ``time``),
    ``block`` (``image_ids``, ``thread`` = owner index or -1 for references, ``responses``, and ``time_bins_ms``
    for time-binned responses), ``threads``,
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
    if time_bins_ms is not None:
        record["block"]["time_bins_ms"] = np.asarray(time_bins_ms, dtype=np.float64)
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
    time_bins_ms: np.ndarray | None = None


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
        edges = tree["block"].get("time_bins_ms")
        return BlockRecord(int(meta["generation"]), str(meta.get("experiment", "evolve")), thread_names, ids, owner,
                           responses, threads, timings, design, subject,
                           None if edges is None else np.asarray(edges, dtype=np.float64))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        reason = f"missing entry {err}" if isinstance(err, KeyError) else " ".join(str(err).split())
        raise RecordError(f"{path} is damaged or not a latentopt generation: {reason}") from err


def load_generation(run_dir: Path | str, generation: int, *, skip_state: bool = False) -> dict[str, Any]:
    """One generation's record as a nested dict (``skip_state``: without the optimizer states).

    Raises:
        RecordError: the file is missing or damaged (the message names it).
    """
    path = Path(run_dir) / GENERATION_DIR / f"gen_{generation:05d}.npz"
    if not path.exists():
        raise RecordError(f"{path}: no such generation")
    return load_tree(path, skip_state=skip_state)


_READER_NAMES = ("RunRecord", "ThreadRecord", "load_run", "recorded_config")


def __getattr__(name: str) -> Any:
    # the reader lives in latentopt.run_record; these names stay importable from here
    if name in _READER_NAMES:
        from latentopt import run_record

        return getattr(run_record, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
