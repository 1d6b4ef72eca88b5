"""Session identity: which session an exchange folder, a block and a response belong to.

A session is one run folder's use of one exchange folder. Its id (``s`` + 8 hex digits, random) is
made when the run starts, kept in the run folder (``rig_session.json``) so that ``latentopt-resume``
of the same run goes on as the same session, and claimed in the exchange folder by a marker file
(``latentopt-session.json``) before any block is written. It is part of every stimulus name
(``block007_003_s1a2b3c4d_g00005_main_003.png``) and of every manifest, so a rig that echoes the
names it showed (XDream's ``stimulusID``) echoes the session too, and a response from another
session never matches an image of this one.

A new session refuses an exchange folder that another session claimed, or that holds block files
without a marker (an older latentopt, or files copied in): one exchange folder per session.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentopt.records import atomic_write_text
from latentopt_rig.exchange import RigProtocolError, atomic_write

SESSION_FORMAT = "latentopt-rig-session"
MARKER = "latentopt-session.json"
RUN_FILE = "rig_session.json"
SESSION_ID = re.compile(r"^s[0-9a-f]{8}$")
_STIMULUS = re.compile(r"^(?:block\d{3,}_\d{3}_)?(s[0-9a-f]{8})_[A-Za-z0-9]")
_MAX_BYTES = 64 << 10


def new_session_id() -> str:
    """A fresh random session id, ``s`` + 8 hex digits."""
    return "s" + secrets.token_hex(4)


def session_of(trial_id: str) -> str | None:
    """The session id a rig's trial id names (stimulus id or image file name), or None."""
    match = _STIMULUS.match(trial_id)
    return match.group(1) if match else None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise ValueError(f"larger than {_MAX_BYTES} bytes")
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise ValueError(f"not a {SESSION_FORMAT} file")
        if not isinstance(data.get("session"), str) or not SESSION_ID.match(data["session"]):
            raise ValueError("no valid session id")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise RigProtocolError(f"{what} {path} is unreadable ({' '.join(str(err).split())}); give this session "
                               "a new exchange folder.") from None
    return data


@dataclass
class FolderState:
    """What an exchange folder held when the rig subject was built (before it wrote anything)."""

    marker: dict[str, Any] | None
    block_files: list[str] = field(default_factory=list)


def inspect_folder(folder: Path) -> FolderState:
    """Read the marker (if any) and list the block files already in ``folder``."""
    marker_path = folder / MARKER
    marker = _read_json(marker_path, "session marker") if marker_path.exists() else None
    return FolderState(marker, sorted(p.name for p in folder.glob("block*")))


def load_run_session(run_dir: Path) -> str | None:
    """The session id recorded in a run folder, or None (a new run)."""
    path = run_dir / RUN_FILE
    return str(_read_json(path, "rig session file")["session"]) if path.exists() else None


def save_run_session(run_dir: Path, session: str, exchange: Path) -> None:
    """Record the session id in the run folder (once, at the start of the run)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {"format": SESSION_FORMAT, "session": session, "exchange": str(exchange.resolve()),
            "created_at": time.time()}
    atomic_write_text(run_dir / RUN_FILE, json.dumps(data, indent=1))  # the run folder's own writer


def claim_folder(folder: Path, state: FolderState, session: str, run_dir: Path | None) -> None:
    """Claim ``folder`` for ``session``, or refuse it (one line naming the folder and the other session).

    Args:
        folder: the exchange folder.
        state: what it held when the subject was built (:func:`inspect_folder`).
        session: this session's id.
        run_dir: this session's run folder (named in the marker), if any.

    Raises:
        RigProtocolError: another session claimed the folder, or it holds block files and no marker.
    """
    marker_path = folder / MARKER
    marker = _read_json(marker_path, "session marker") if marker_path.exists() else state.marker
    if marker is not None:
        if marker["session"] != session:
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(marker.get("created_at", 0))))
            raise RigProtocolError(
                f"exchange folder {folder} belongs to session {marker['session']} (run {marker.get('run_dir')}, "
                f"started {started}), not to this session {session}: give each session its own exchange folder.")
        return
    if state.block_files:
        raise RigProtocolError(
            f"exchange folder {folder} holds {len(state.block_files)} block file(s) of an unknown session "
            f"(e.g. {state.block_files[0]}) and no {MARKER}: give each session its own exchange folder.")
    data = {"format": SESSION_FORMAT, "session": session, "run_dir": None if run_dir is None else str(run_dir),
            "created_at": time.time()}
    atomic_write(marker_path, json.dumps(data, indent=1).encode())
