"""Weight files: the cache folder, SHA-256, and a resumable, atomic HTTP download.

Plugins whose networks need downloaded weights share this code. A download writes
``<name>.part`` (plus ``<name>.part.json`` holding the server's validator, ETag or Last-Modified),
resumes it with an HTTP ``Range`` request guarded by ``If-Range`` (a file that changed on the server
restarts from zero instead of being spliced), checks the size the server announced (and an expected
size or SHA-256 when the caller knows them), and only then renames the part file into place. A
reader therefore never sees a half-written weight file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from latentopt.errors import LatentoptError

WEIGHTS_DIR_ENV = "LATENTOPT_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/latentopt/weights")
_CHUNK = 1 << 20  # 1 MiB reads: progress updates often enough, few syscalls
_TRANSIENT_HTTP = (429, 500, 502, 503, 504)  # answers that say "try again later", retried like a cut


class WeightsError(LatentoptError, RuntimeError):
    """A weight file is missing, malformed or does not match the network."""


class DownloadError(WeightsError):
    """A download failed or produced a file of the wrong size or hash."""


class WeightsUnavailable(WeightsError):
    """A network's weights are not on this machine and could not be downloaded (or downloads are off).

    One class for every plugin (BigGAN, DeePSim, ...); the message says which file to get and where
    to put it.
    """


def read_state_dict(path: str | os.PathLike[str]) -> Any:
    """Load a torch weight file without unpickling code (``weights_only=True``).

    Raises:
        WeightsError: one line naming the file when it is not a loadable state dict (a mapping).
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors alike
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"{path}: not a loadable torch state dict ({first})") from None
    if not hasattr(state, "keys"):
        raise WeightsError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(state).__name__}")
    return state


def check_state_dict(
    state: Mapping[str, Any],
    expected: Mapping[str, Sequence[int]],
    *,
    source: str,
    model: str,
    hint: str = "",
    floating: bool = True,
    finite: bool = True,
) -> None:
    """Raise a one-line ``WeightsError`` unless ``state`` has exactly the keys and shapes of ``expected``.

    Args:
        state: a loaded state dict.
        expected: key -> shape the network needs.
        source: the file, named first in the message.
        model: what the file is for ("DeePSim fc6", "the config"), named in the message.
        hint: appended to key and shape errors (e.g. " (it looks like the fc8 file)").
        floating: also require floating-point tensors.
        finite: also require every floating-point value to be finite (no NaN or infinity).

    The message names the first missing, unexpected or misshapen key, so a wrong file fails before
    ``load_state_dict(strict=True)`` with something a user can act on.
    """
    import torch

    for key, shape in expected.items():
        if key not in state:
            raise WeightsError(f"{source}: missing key {key!r} for {model}{hint}")
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{source}: key {key!r} holds a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(shape):
            raise WeightsError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, {model} needs {tuple(shape)}{hint}"
            )
        if floating and not value.is_floating_point():
            raise WeightsError(f"{source}: key {key!r} has dtype {value.dtype}, expected floating point")
        if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{source}: key {key!r} holds NaN or infinite values; the file is damaged")
    for key in state:
        if key not in expected:
            raise WeightsError(f"{source}: unexpected key {key!r} for {model}{hint}")


def weights_dir() -> Path:
    """The weight cache: ``$LATENTOPT_WEIGHTS_DIR``, else ``~/.cache/latentopt/weights``."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a run's provenance records about a weight file: absolute path, size and SHA-256."""
    resolved = Path(path).resolve()
    return {"path": str(resolved), "bytes": resolved.stat().st_size, "sha256": sha256_file(resolved)}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (two processes must not write one part file)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Restart(Exception):
    """The partial file is unusable (the server's file changed); start again from byte 0."""


def _content_range(value: str | None) -> tuple[int, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); total ``*`` -> None."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if match is None:
        raise _Restart()
    total = None if match.group(2) == "*" else int(match.group(2))
    return int(match.group(1)), total


def _fetch_once(url: str, part: Path, meta: Path, *, progress: bool, timeout: float, desc: str) -> int:
    """One HTTP request, appending to or rewriting ``part``. Returns the bytes received.

    Raises:
        _Restart: the partial file must be discarded.
        OSError, http.client.HTTPException: network trouble (the caller retries and resumes).
        DownloadError: the response is complete but its size disagrees with what was announced.
    """
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    validator: dict[str, Any] = {}
    if offset and meta.exists():
        with contextlib.suppress(ValueError):
            validator = json.loads(meta.read_text())
    headers = {"User-Agent": "latentopt"}
    tag = validator.get("etag") or validator.get("last_modified")
    if offset and tag and validator.get("url") == url:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = tag
    else:
        offset = 0  # nothing to resume, or no validator proving the part file is the same file
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # the range starts at or beyond the end: the part file is stale
            raise _Restart() from err
        raise
    with response:
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        length = response.headers.get("Content-Length")
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            changed_tag = validator.get("etag") and etag and etag != validator["etag"]
            changed_size = validator.get("total") is not None and total != validator["total"]
            if start != offset or changed_tag or changed_size:
                raise _Restart()  # a range of some other version of the file
            mode = "ab"
        else:
            offset, mode = 0, "wb"
            total = int(length) if length is not None else None
        meta.write_text(json.dumps({"url": url, "etag": etag, "last_modified": modified, "total": total}))
        received = 0
        with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                          unit_divisor=1024, desc=desc, disable=not progress) as bar:
            try:
                while block := response.read(_CHUNK):
                    fh.write(block)
                    received += len(block)
                    bar.update(len(block))
            except http.client.IncompleteRead as err:
                fh.write(err.partial)
                received += len(err.partial)
                raise ConnectionError(f"connection closed after {offset + received} bytes") from None
    if length is not None and received < int(length):
        raise ConnectionError(f"connection closed after {offset + received} of {offset + int(length)} bytes")
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            raise _Restart()
        raise ConnectionError(f"connection closed after {size} of {total} bytes")
    return received


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    attempts: int = 5,
) -> Path:
    """Download ``url`` to ``dest`` with resume, size/hash checks and an atomic rename.

    A failed or interrupted download leaves ``dest.part``; the next call resumes it. Requests that
    make no progress are retried ``attempts`` times; an attempt that received data does not count.

    Args:
        url: http(s) address of the file.
        dest: final path; written only when the whole file is there and checked.
        expected_size: bytes the file must have, when known.
        expected_sha256: hex SHA-256 the file must have, when known.
        progress: show a tqdm progress bar on stderr.
        timeout: seconds to wait for the server on each request.
        attempts: requests without progress before giving up.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: the server could not be reached, answered with an HTTP error, or the file
            has the wrong size or hash (a wrong file is deleted, not kept for resuming).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.json")
    with _locked(dest.with_name(dest.name + ".lock")):
        failures = restarts = 0
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                _fetch_once(url, part, meta, progress=progress, timeout=timeout, desc=dest.name)
                break
            except _Restart:
                restarts += 1
                part.unlink(missing_ok=True)
                meta.unlink(missing_ok=True)
                if restarts > attempts:
                    raise DownloadError(f"{url}: the file keeps changing on the server") from None
            except urllib.error.HTTPError as err:
                failures += 1
                if err.code not in _TRANSIENT_HTTP or failures >= attempts:
                    raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
                time.sleep(0.2 * failures)  # a busy or restarting server: try again, then resume
            except urllib.error.URLError as err:  # no connection at all: offline, DNS, refused
                raise DownloadError(f"{url}: {err.reason}") from None
            except (OSError, http.client.HTTPException) as err:  # cut mid-way: resume
                now = part.stat().st_size if part.exists() else 0
                failures = 0 if now > before else failures + 1
                if failures >= attempts:
                    raise DownloadError(f"{url}: {err} (the partial file is kept for resuming)") from None
                time.sleep(0.2 * failures)
        _verify(part, meta, url, expected_size=expected_size, expected_sha256=expected_sha256)
        os.replace(part, dest)
        meta.unlink(missing_ok=True)
    return dest


def _verify(part: Path, meta: Path, url: str, *, expected_size: int | None, expected_sha256: str | None) -> None:
    size = part.stat().st_size
    problem = None
    if expected_size is not None and size != expected_size:
        problem = f"{url}: downloaded {size} bytes, expected {expected_size}"
    elif expected_sha256 is not None and sha256_file(part) != expected_sha256.lower():
        problem = f"{url}: SHA-256 of the download does not match the expected {expected_sha256}"
    if problem is not None:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DownloadError(problem)
