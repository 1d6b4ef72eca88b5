"""The session's status file: what a running session tells a live view that its records do not hold yet.

The run records (``generations/gen_NNNNN.npz``) are written once a block is complete. While a rig waits
for a response file, a live view also wants to know that it waits, for which block, since when, how many
images it shows, and what the operator was told. The session keeps that in ``live_status.json`` in the run
folder, replaced atomically (written to ``.live_status.json.<pid>.tmp``, then renamed over the old one) on
every change: a reader sees the old file or the new one, never a mix.

It is a status, not a record: it is not fsynced (a power cut may lose the last change, which the run
records do not need), it is rewritten as the session goes, and nothing reads it but a live view (and a
resume, for its messages). Writing it never raises and never waits for a reader (~0.5-1 ms for 100
messages; no lock is shared with the view). The fields are described in ``docs/live.md``::

    {"format": "latentopt-live-status", "version": 1, "updated": 1763776123.4, "pid": 4242, "host": "rig-pc",
     "phase": "waiting", "generation": 5, "block": 7, "label": "007", "attempt": 0, "images": 44,
     "response_files": ["block007.mat"], "waiting_since": 1763776111.6,
     "messages": [{"time": 1763776120.1, "kind": "rig", "text": "block 007: waiting for ..."}, ...]}
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "live_status.json"
STATUS_FORMAT = "latentopt-live-status"
MAX_MESSAGES = 100
"""Operator messages kept in the file (oldest dropped first)."""
MAX_MESSAGE_CHARS = 500
PHASES = ("running", "waiting", "stopped")
"""``running``: the session computes (scoring, asking, writing); ``waiting``: the rig waits for the response
file of ``block``; ``stopped``: the session stopped resumably (``reason``)."""


class SessionStatus:
    """The status of one session, mirrored to ``RUN_DIR/live_status.json`` on every change.

    Args:
        run_dir: the run folder.

    Thread-safe; one instance per run folder and process (:func:`session_status`). Messages of an earlier
    process of the same run (a resume) are kept.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self._lock = threading.Lock()
        self._fields: dict[str, Any] = {"phase": "running"}
        self._messages: list[dict[str, Any]] = _earlier_messages(self.path)
        self.failed: str | None = None  # why the last write failed (the session never sees an exception)

    def update(self, **fields: Any) -> None:
        """Set fields (JSON values: ``phase``, ``block``, ``images``, ...; None removes one) and write the file."""
        with self._lock:
            for key, value in fields.items():
                if value is None:
                    self._fields.pop(key, None)
                else:
                    self._fields[key] = value
            self._write()

    def message(self, text: str, *, kind: str = "rig") -> None:
        """Append one operator message (``kind``: ``rig`` for the rig's messages, ``block`` for the block lines)."""
        with self._lock:
            self._messages.append({"time": time.time(), "kind": kind, "text": str(text)[:MAX_MESSAGE_CHARS]})
            del self._messages[:-MAX_MESSAGES]
            self._write()

    def snapshot(self) -> dict[str, Any]:
        """What the file holds now."""
        with self._lock:
            return self._document()

    def _document(self) -> dict[str, Any]:
        return {"format": STATUS_FORMAT, "version": 1, "updated": time.time(), "pid": os.getpid(), "host": _HOST,
                **self._fields, "messages": list(self._messages)}

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self._document(), default=str))
            os.replace(tmp, self.path)
            self.failed = None
        except (OSError, ValueError, TypeError) as err:  # a full disk or a removed folder must not stop the session
            self.failed = str(err)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def _earlier_messages(path: Path) -> list[dict[str, Any]]:
    """The messages of a status file left by an earlier process of the run (a resume), if readable."""
    try:
        if path.stat().st_size > (1 << 20):
            return []
        data = json.loads(path.read_text())
        messages = data.get("messages") if isinstance(data, dict) else None
    except (OSError, ValueError):
        return []
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict) and isinstance(m.get("text"), str)][-MAX_MESSAGES:]


_HOST = socket.gethostname()
_STATUSES: dict[Path, SessionStatus] = {}
_STATUSES_LOCK = threading.Lock()


def session_status(run_dir: Path | str) -> SessionStatus:
    """The process's :class:`SessionStatus` of ``run_dir`` (the rig subject and the runner share it)."""
    key = Path(run_dir).absolute()
    with _STATUSES_LOCK:
        status = _STATUSES.get(key)
        if status is None:
            status = _STATUSES[key] = SessionStatus(key)
        return status
