"""The live view's picture of a run folder, kept up to date by reading only what changed.

:class:`RunState` keeps an index of the generation files it has read (name -> size and mtime) and, from
each, a small :class:`BlockSummary` (per-thread best and mean score, images shown / expected, rig blocks,
seconds waited). A refresh lists ``generations/``, reads the files that are new or changed, and re-reads
``live_status.json`` only when its size or mtime changed: an unchanged folder costs a directory listing and a
``stat`` per file, never a block file, and never :func:`latentopt.load_run`. Of a block file only the
arrays named above are read (an npz member is read on access): never the optimizer states, the codes or the
rig's archived response files. The reader never writes, locks or creates anything in the run folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.live.status import STATUS_FILE
from latentopt.record_files import RecordError, load_fields

GENERATION_FILE = re.compile(r"gen_(\d{5,})\.npz")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_STATUS_BYTES = 1 << 20
MAX_CONFIG_BYTES = 1 << 20


@dataclass
class BlockSummary:
    """What the view shows of one recorded block (generation)."""

    generation: int
    time: float | None
    thread_names: list[str]
    best: dict[str, float | None]  # per thread: best finite score (None: none finite)
    mean: dict[str, float | None]
    shown: int  # images with a response
    expected: int  # images in the generation
    blocks: list[int] = field(default_factory=list)  # a rig's block numbers (the block <-> generation map)
    waited_s: float | None = None  # seconds in the subject (a rig: waiting for responses)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_block_summary(path: Path) -> BlockSummary:
    """The :class:`BlockSummary` of one generation file (``latentopt.records`` layout), reading a few arrays.

    Raises:
        ValueError: the file is damaged or not a generation record.
    """
    try:
        head = load_fields(path, ("meta/thread_names", "meta/generation", "meta/time", "subject/shown",
                                  "subject/expected", "subject/blocks", "subject/seconds_waited",
                                  "meta/timings/subject_s", "threads/*/scores", "block/responses"))
        names = [str(n) for n in (head.get("meta/thread_names") or [])]
        best: dict[str, float | None] = {}
        mean: dict[str, float | None] = {}
        for name in names:
            scores = np.asarray(head[f"threads/{name}/scores"], dtype=np.float64).reshape(-1)
            finite = scores[np.isfinite(scores)]
            best[name] = _finite(finite.max()) if finite.size else None
            mean[name] = _finite(finite.mean()) if finite.size else None
        shown, expected = head.get("subject/shown"), head.get("subject/expected")
        if shown is None or expected is None:  # not a rig: images with a finite response
            responses = np.asarray(head["block/responses"], dtype=np.float64)
            expected = len(responses)
            shown = int(np.isfinite(responses.reshape(len(responses), -1)).any(axis=1).sum())
        blocks = head.get("subject/blocks")
        waited = head.get("subject/seconds_waited")
        if waited is None:
            waited = head.get("meta/timings/subject_s")
        return BlockSummary(int(head["meta/generation"]), _finite(head.get("meta/time")), names, best, mean,
                            int(shown), int(expected), [int(b) for b in np.asarray(blocks).reshape(-1)]
                            if blocks is not None else [], _finite(waited))
    except (RecordError, KeyError, ValueError, TypeError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{path.name}: not a readable generation record ({reason})") from err


def _signature(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


class RunState:
    """A run folder as the live view shows it; :meth:`snapshot` refreshes it incrementally.

    Args:
        run_dir: the run folder.
        min_interval_s: refresh at most this often (several pages polling share one refresh).

    Attributes:
        block_reads: generation files read so far (each new or changed file once).
    """

    def __init__(self, run_dir: Path | str, *, min_interval_s: float = 0.25) -> None:
        self.run_dir = Path(run_dir)
        self.min_interval_s = float(min_interval_s)
        self.block_reads = 0
        self._lock = threading.Lock()
        self._index: dict[str, tuple[int, int]] = {}
        self._blocks: dict[int, BlockSummary] = {}
        self._errors: dict[str, str] = {}
        self._status: dict[str, Any] | None = None
        self._status_signature: tuple[int, int] | None = None
        self._config: dict[str, Any] = {}
        self._config_signature: tuple[int, int] | None = None
        self._refreshed_at = -math.inf

    # ------------------------------------------------------------------ reading
    def refresh(self, *, force: bool = False) -> None:
        """Read what changed since the last refresh (at most every ``min_interval_s`` unless ``force``)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._refreshed_at < self.min_interval_s:
                return
            self._refreshed_at = now
            self._refresh_generations()
            self._refresh_status()
            self._refresh_config()

    def _refresh_generations(self) -> None:
        folder = self.run_dir / "generations"
        try:
            entries = list(os.scandir(folder))
        except OSError:
            entries = []
        seen = set()
        for entry in entries:
            match = GENERATION_FILE.fullmatch(entry.name)
            if match is None:
                continue
            try:
                signature = _signature(entry.stat(follow_symlinks=False))
            except OSError:
                continue
            seen.add(entry.name)
            if self._index.get(entry.name) == signature:
                continue
            self._index[entry.name] = signature
            generation = int(match.group(1))
            self.block_reads += 1
            try:
                self._blocks[generation] = read_block_summary(Path(entry.path))
                self._errors.pop(entry.name, None)
            except ValueError as err:
                self._blocks.pop(generation, None)
                self._errors[entry.name] = str(err)
        for name in set(self._index) - seen:  # removed (a test folder cleaned up): forget it
            del self._index[name]
            self._errors.pop(name, None)
            match = GENERATION_FILE.fullmatch(name)
            if match is not None:
                self._blocks.pop(int(match.group(1)), None)

    def _read_small(self, name: str, limit: int, signature: tuple[int, int] | None) -> tuple[Any, Any]:
        """``(signature, text)`` of a small regular file in the run folder; text None if unchanged or unusable."""
        try:
            st = os.lstat(self.run_dir / name)
        except OSError:
            return None, None
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None, None
        if _signature(st) == signature:
            return signature, None
        try:
            return _signature(st), (self.run_dir / name).read_text(errors="replace")
        except OSError:
            return None, None

    def _refresh_status(self) -> None:
        signature, text = self._read_small(STATUS_FILE, MAX_STATUS_BYTES, self._status_signature)
        if signature is None:
            self._status, self._status_signature = None, None
        elif text is not None:
            self._status_signature = signature
            try:
                data = json.loads(text)
                self._status = data if isinstance(data, dict) else None
            except ValueError:
                self._status = None

    def _refresh_config(self) -> None:
        signature, text = self._read_small("config.yaml", MAX_CONFIG_BYTES, self._config_signature)
        if text is None:
            return
        self._config_signature = signature
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        self._config = data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ what the page shows
    def image_names(self) -> set[str]:
        """The names a page may ask for: ``best_<thread>_NNNNN.png`` of the recorded generations' threads."""
        with self._lock:
            return {name for summary in self._blocks.values() for name in _best_names(summary).values()}

    def image_path(self, name: str) -> Path | None:
        """The file of a whitelisted image name, if it is a regular file inside ``RUN_DIR/images``; else None."""
        if not SAFE_NAME.fullmatch(name) or name not in self.image_names():
            return None
        folder = self.run_dir / "images"
        path = folder / name
        try:
            st = os.lstat(path)
            inside = path.resolve().parent == folder.resolve()
        except OSError:
            return None
        return path if inside and stat.S_ISREG(st.st_mode) and st.st_nlink == 1 else None

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-ready values (refreshed first): see ``docs/live.md`` for the fields."""
        self.refresh()
        with self._lock:
            return self._document()

    def _document(self) -> dict[str, Any]:
        generations = sorted(self._blocks)
        last = self._blocks[generations[-1]] if generations else None
        found = self._config.get("experiment")
        experiment: dict[str, Any] = found if isinstance(found, dict) else {}
        total = experiment.get("generations") if experiment.get("budget") is None else None
        status: dict[str, Any] = self._status or {}
        listed = status.get("messages")
        messages: list[Any] = listed if isinstance(listed, list) else []
        trajectories: dict[str, dict[str, list[Any]]] = {}
        for g in generations:
            summary = self._blocks[g]
            for name in summary.thread_names:
                line = trajectories.setdefault(name, {"generation": [], "best": [], "mean": []})
                line["generation"].append(g)
                line["best"].append(summary.best.get(name))
                line["mean"].append(summary.mean.get(name))
        return {
            "format": "latentopt-live", "version": 1, "now": time.time(),
            "run": self.run_dir.name, "started": (self.run_dir / "run.json").is_file(),
            "finished": (self.run_dir / "summary.json").is_file(),
            "experiment": str(experiment.get("name", "")) or None,
            "total_blocks": total if isinstance(total, int) and not isinstance(total, bool) else None,
            "recorded": len(generations),
            "last": None if last is None else _last_block(last),
            "trajectories": trajectories,
            "status": {k: v for k, v in status.items() if k != "messages"} or None,
            "session_alive": _alive(status),
            "messages": messages[-50:],
            "errors": [self._errors[k] for k in sorted(self._errors)],
            "block_reads": self.block_reads,
        }


def _alive(status: dict[str, Any]) -> bool | None:
    """Whether the process that wrote the status file still runs (None: unknown, e.g. written on another host)."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def _best_names(summary: BlockSummary) -> dict[str, str]:
    """``{thread: best_<thread>_NNNNN.png}`` for the threads with a finite score (those that have an image)."""
    return {name: f"best_{name}_{summary.generation:05d}.png" for name in summary.thread_names
            if summary.best.get(name) is not None and SAFE_NAME.fullmatch(f"best_{name}")}


def _last_block(summary: BlockSummary) -> dict[str, Any]:
    return {"generation": summary.generation, "time": summary.time, "shown": summary.shown,
            "expected": summary.expected, "blocks": summary.blocks, "waited_s": summary.waited_s,
            "threads": {name: {"best": summary.best.get(name), "mean": summary.mean.get(name)}
                        for name in summary.thread_names},
            "images": _best_names(summary)}
