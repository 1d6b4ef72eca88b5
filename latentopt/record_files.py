"""Crash-safe files and nested trees in npz: the building blocks of :mod:`latentopt.records`.

Every file is written to a fresh temporary name, fsynced, then hard-linked to its final name (which
fails if that name exists, so no writer replaces another's file) and the temporary removed. A failed
write is a one-line :class:`RecordError` naming the file and leaves neither the file nor a temporary.
Nested dicts of arrays, numbers, strings and bytes are stored as npz without pickle.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import secrets
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from latentopt.errors import LatentoptError


class RecordError(LatentoptError, RuntimeError):
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


def _oserror(path: Path, err: OSError) -> RecordError:
    return RecordError(f"cannot write {path}: {err.strerror or err}")


def _write_temporary(path: Path, data: bytes) -> Path:
    """Write ``data`` to a fresh temporary beside ``path``, fsynced; on any error remove it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:_CHUNK]):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


_CHUNK = 1 << 20
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def _replace_if_absent(tmp: Path, path: Path) -> None:
    if path.exists():
        raise RecordError(f"{path} exists already; records are never overwritten")
    try:
        os.replace(tmp, path)
    except OSError as err:
        raise _oserror(path, err) from err


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename.

    Without ``overwrite`` the final step is a hard link, which fails if ``path`` exists: two
    writers can never replace each other's file, even without the run folder's lock.

    Raises:
        RecordError: ``path`` exists (without ``overwrite``), or the write failed (disk full, ...);
            the message is one line naming the file, and no temporary is left behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise RecordError(f"{path} exists already; records are never overwritten")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _write_temporary(path, data)
    except OSError as err:
        raise _oserror(path, err) from err
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError as err:
        raise RecordError(f"{path} exists already; records are never overwritten") from err
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise _oserror(path, err) from err
        _replace_if_absent(tmp, path)  # a file system without hard links: the run folder's lock guards it
    finally:
        tmp.unlink(missing_ok=True)
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


def _is_state(name: str) -> bool:
    parts = name.split("/")
    return len(parts) > 2 and parts[0] == "threads" and parts[2] == "state"


def load_tree(path: Path | str | IO[bytes], *, skip_state: bool = False) -> dict[str, Any]:
    """Read a file (or an open binary file object) written by :func:`tree_to_npz_bytes`.

    Args:
        path: the file.
        skip_state: leave out ``threads/<name>/state`` (optimizer states; not even decompressed).

    Raises:
        RecordError: the file is missing, damaged, or not a latentopt record (the message names it).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "__meta__" not in npz.files:
                raise RecordError(f"{path} is not a latentopt record (no __meta__ entry)")
            arrays = {k: npz[k] for k in npz.files if not (skip_state and _is_state(k))}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError("__meta__ is not a JSON object")
        return _build_tree(meta, arrays, skip_state=skip_state)
    except RecordError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, zipfile.BadZipFile, EOFError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise RecordError(f"{path} is damaged or not a latentopt record: {reason}") from err


def load_fields(path: Path | str, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Only the entries ``names`` (``"threads/main/scores"``, ``"meta/generation"``...) of a record file,
    reading no other array: what a view that follows a run (the report, the live view) needs of a block.

    A name may hold ``*`` (``"threads/*/scores"``: every thread's scores; ``*`` matches within one level).
    Entries the file does not hold are left out of the result; ``list`` entries come back as lists, scalars
    as their values, arrays as arrays.

    Raises:
        RecordError: the file is missing, damaged, or not a latentopt record (the message names it).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "__meta__" not in npz.files:
                raise RecordError(f"{path} is not a latentopt record (no __meta__ entry)")
            meta = json.loads(npz["__meta__"].tobytes().decode())
            if not isinstance(meta, dict):
                raise ValueError("__meta__ is not a JSON object")
            members = set(npz.files)
            wanted: list[str] = []
            for name in names:
                if "*" in name:
                    pattern = re.compile("[^/]*".join(re.escape(part) for part in name.split("*")) + r"\Z")
                    wanted += sorted(k for k in set(meta) | members if k != "__meta__" and pattern.match(k))
                else:
                    wanted.append(name)
            out: dict[str, Any] = {}
            for name in wanted:
                info = meta.get(name)
                kind = info.get("type") if isinstance(info, dict) else None
                if kind == "value":
                    out[name] = info["value"]  # type: ignore[index]
                elif name in members:
                    array = npz[name]
                    out[name] = array.tolist() if kind == "list" else array.tobytes() if kind == "bytes" else array
            return out
    except RecordError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, zipfile.BadZipFile, EOFError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise RecordError(f"{path} is damaged or not a latentopt record: {reason}") from err


def _build_tree(meta: dict[str, Any], arrays: dict[str, np.ndarray], *, skip_state: bool) -> dict[str, Any]:
    root: dict[str, Any] = {}

    def parent_of(name: str) -> tuple[dict[str, Any], str]:
        node = root
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"entry {name!r} lies under a non-dict")
        return node, leaf

    for name, info in meta.items():
        if skip_state and _is_state(name):
            continue
        kind = info.get("type") if isinstance(info, dict) else None
        node, leaf = parent_of(name)
        if kind == "dict":
            node.setdefault(leaf, {})
        elif kind == "value":
            node[leaf] = info["value"]
        elif kind == "bytes":
            node[leaf] = arrays.pop(name).tobytes()
        elif kind == "list":
            node[leaf] = arrays.pop(name).tolist()
        else:
            raise ValueError(f"__meta__ entry {name!r} has unknown type {kind!r}")
    for name, array in arrays.items():
        node, leaf = parent_of(name)
        node[leaf] = array
    return root
