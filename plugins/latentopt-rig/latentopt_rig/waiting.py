"""Waiting for a response file: polling, half-written files, corrupt files, timeouts.

MATLAB (``save``) and most rig software write files in place, not by rename, so a file that exists
may be incomplete. A file is read only when its size and modification time have not changed for
``settle_s`` and it parses; a file that does not parse is retried while it changes, and declared
corrupt once it has stayed unchanged and unparsable for ``corrupt_after_s`` (it is then archived
and its block re-queued). A symlink, a directory, a FIFO or a hard-linked file is never opened
(``lstat``, then ``O_NOFOLLOW``): it is refused with an operator line and, if it stays so for
``corrupt_after_s``, treated like a corrupt file with only its name and the reason recorded.
An empty file is waited on (the rig may create it before writing) and named in the messages.
Nothing waits silently: an operator message goes out every
``message_every_s``, and at ``timeout_s`` the session stops in a resumable state
(:class:`RigTimeout`) or, with ``on_timeout="wait"``, waits on with messages.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from latentopt.checks import ConfigError, finite_number
from latentopt.subject import SubjectUnavailable
from latentopt_rig.formats import ResponseFileError, TrialResponses, read_response_bytes

ON_TIMEOUT = ("stop", "wait")


class RigTimeout(SubjectUnavailable):
    """No usable response file before the timeout; the generation in flight is not recorded."""


@dataclass(frozen=True)
class WaitPolicy:
    """How to wait for a response file (seconds throughout).

    Attributes:
        poll_s: interval between looks at the folder.
        settle_s: a file's size and mtime must be unchanged this long before it is read.
        timeout_s: give up (or warn, with ``on_timeout="wait"``) after this long.
        on_timeout: ``stop`` (raise :class:`RigTimeout`; resume later) or ``wait``.
        corrupt_after_s: an unchanged file that still does not parse after this long is corrupt.
        message_every_s: period of operator messages while waiting.
        max_file_bytes: larger files are refused (archived only in part) and treated as corrupt.
    """

    poll_s: float = 0.025
    settle_s: float = 0.1
    timeout_s: float = 600.0
    on_timeout: str = "stop"
    corrupt_after_s: float = 10.0
    message_every_s: float = 15.0
    max_file_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        """Refuse unusable settings with a :class:`~latentopt.checks.ConfigError` naming the ``subject.*`` key."""
        if self.on_timeout not in ON_TIMEOUT:
            raise ConfigError(f"subject.on_timeout must be one of {ON_TIMEOUT}, got {self.on_timeout!r}")
        for name in ("poll_s", "timeout_s", "corrupt_after_s", "message_every_s"):
            finite_number(getattr(self, name), f"subject.{name}", minimum=0.0)
        finite_number(self.settle_s, "subject.settle_s", minimum=0.0, inclusive=True)
        if isinstance(self.max_file_bytes, bool) or not isinstance(self.max_file_bytes, int) or self.max_file_bytes < 1:
            raise ConfigError(f"subject.max_file_mb must be > 0 (max_file_bytes {self.max_file_bytes!r})")


@dataclass
class Arrival:
    """A response file that arrived: its bytes (for the archive) and its trials, or why it is unusable."""

    path: Path
    data: bytes
    trials: TrialResponses | None
    error: str | None
    waited_s: float
    complete_at: float  # time.time() when the file was last seen changing
    refused: bool = False  # not read at all (symlink, directory, ...): only its name and the reason are kept
    others: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # other names seen unusable: why, bytes


@dataclass
class _Watch:
    signature: tuple[int, ...] | None = None
    stable_since: float = 0.0
    failed_signature: tuple[int, ...] | None = None
    failed_since: float = 0.0
    error: str = ""
    data: bytes = b""  # the last unparsable content read (archived if another file is used)


def wait_for_response(
    paths: Sequence[Path],
    policy: WaitPolicy,
    *,
    say: Callable[[str], None],
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Arrival:
    """Wait until one of ``paths`` holds a complete, parsable (or definitely corrupt) file.

    Args:
        paths: the accepted names of the response file, in order of preference.
        policy: polling, settling, timeout and size limits.
        say: where operator messages go.
        what: how messages name the block (``"block 005"``).

    Raises:
        RigTimeout: nothing usable arrived within ``policy.timeout_s`` and ``on_timeout`` is ``stop``.
    """
    start = clock()
    wall_start = time.time()
    last_message = start
    watches = {path: _Watch() for path in paths}
    warned_timeout = False
    while True:
        now = clock()
        for path, watch in watches.items():
            arrival = _look(path, watch, policy, now, say, what)
            if arrival is not None:
                arrival.waited_s = now - start
                arrival.complete_at = wall_start + (watch.stable_since - start)
                arrival.others = {p.name: (w.error, w.data) for p, w in watches.items() if w.error and p != path}
                return arrival
        waited = now - start
        if waited >= policy.timeout_s:
            names = " or ".join(p.name for p in paths)
            if policy.on_timeout == "stop":
                pending = [f"{p.name} ({w.error})" for p, w in watches.items() if w.error]
                detail = f"; unreadable so far: {', '.join(pending)}" if pending else ""
                raise RigTimeout(f"no response for {what} after {waited:.1f} s (expected {names} in "
                                 f"{paths[0].parent}){detail}.")
            if not warned_timeout:
                say(f"{what}: timeout of {policy.timeout_s:g} s passed; waiting on (on_timeout=wait) for {names}")
                warned_timeout = True
        if now - last_message >= policy.message_every_s:
            names = " or ".join(p.name for p in paths)
            say(f"{what}: waiting for {names} in {paths[0].parent} ({waited:.0f} s of {policy.timeout_s:g} s)")
            last_message = now
        sleep(policy.poll_s)


def _refusal(st: os.stat_result) -> str | None:
    """Why a response path is not read at all (a symlink, not a regular file, a hard link), or None."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "special"
        return f"{kind}, not a regular file"
    if st.st_nlink > 1:
        return f"a regular file with {st.st_nlink} hard links (may be a file outside the exchange folder)"
    return None


def _read_regular(path: Path, limit: int, expected: os.stat_result) -> bytes | None:
    """Up to ``limit`` bytes of ``path``, opened without following a symlink; None if it changed kind."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None  # replaced by a symlink or removed since lstat: look again next poll
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
            return None
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _look(path: Path, watch: _Watch, policy: WaitPolicy, now: float, say: Callable[[str], None],
          what: str) -> Arrival | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        watch.signature = None
        return None
    signature = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino)
    if signature != watch.signature:
        watch.signature, watch.stable_since = signature, now
        return None
    if now - watch.stable_since < policy.settle_s:
        return None
    refusal = _refusal(st)
    if refusal is not None:
        return _failed(path, watch, signature, now, policy, f"refused: {refusal}; not read", b"", say, what)
    if st.st_size == 0:  # the rig may create the file before writing: named in messages, never corrupt
        watch.error = "empty (0 bytes)"
        if watch.failed_signature != signature and now - watch.stable_since >= policy.corrupt_after_s:
            watch.failed_signature = signature
            say(f"{what}: {path.name} is empty (0 bytes); waiting for its content")
        return None
    if st.st_size > policy.max_file_bytes:
        head = _read_regular(path, min(policy.max_file_bytes, 1 << 20), st)
        if head is None:
            return None
        return Arrival(path, head, None, f"{st.st_size} bytes exceeds max_file_mb "
                       f"({policy.max_file_bytes} bytes); first {len(head)} bytes archived", 0.0, 0.0)
    data = _read_regular(path, policy.max_file_bytes + 1, st)
    if data is None or len(data) != st.st_size:
        return None  # changed under us: look again next poll
    try:
        return Arrival(path, data, read_response_bytes(path.name, data), None, 0.0, 0.0)
    except ResponseFileError as err:
        return _failed(path, watch, signature, now, policy, str(err), data, say, what)


def _failed(path: Path, watch: _Watch, signature: tuple[int, ...], now: float, policy: WaitPolicy, error: str,
            data: bytes, say: Callable[[str], None], what: str) -> Arrival | None:
    """A file that cannot be used: retried while it changes, given up after ``corrupt_after_s`` unchanged."""
    watch.error, watch.data = error, data
    if watch.failed_signature != signature:
        watch.failed_signature, watch.failed_since = signature, now
        if not data:
            say(f"{what}: {path.name} {error}; waiting {policy.corrupt_after_s:g} s for a usable response file")
    elif now - watch.failed_since >= policy.corrupt_after_s:
        return Arrival(path, data, None, error, 0.0, 0.0, refused=not data)
    return None
