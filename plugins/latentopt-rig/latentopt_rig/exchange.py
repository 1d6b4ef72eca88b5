"""The exchange folder shared with the stimulus computer: block names, manifests, image files.

Per block latentopt writes the images, then the manifest, each atomically (written to a
dot-temporary in the same folder, fsynced, renamed); the manifest is the commit point: a stimulus
program should start a block only once its manifest exists (an XDream rig, which knows no
manifest, picks the images up by name). Block numbers are one counter over the session, from 000,
as XDream numbers them: images re-queued within a generation simply go to the next block, so block
and generation differ once a re-queue happened (the manifest names both). Names::

    block007_003_s1a2b3c4d_g00005_main_003.png   image 3 of block 7 (XDream's block{NNN}_{k:03d}_{name}.png;
                                                 the name is the session id + the image id)
    block007.manifest.json                       session, block, generation, attempt, ids, sha256 of each image
    block007.mat | .h5 | .npz | .csv             the rig's response file

Image ids are validated (letters, digits, ``_ . -``; no path separators), so no name can point
outside the folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.subject import SubjectUnavailable

MANIFEST_FORMAT = "latentopt-rig-manifest"
MANIFEST_VERSION = 2
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,159}$")
_THREAD_ID = re.compile(r"^g(\d{5,})_(.+)_(\d{3,})$")


class RigProtocolError(SubjectUnavailable):
    """The exchange folder holds something latentopt cannot continue from (another session's files, a
    tampered block).

    A :class:`SubjectUnavailable`: the CLI prints one line and the run stays resumable on a new
    exchange folder (``latentopt-resume RUN_DIR subject.exchange=...``)."""


def block_label(block: int) -> str:
    """``"005"`` for block 5 (at least three digits, as XDream's rigs expect)."""
    if block < 0:
        raise ValueError("block must be >= 0")
    return f"{block:03d}"


def image_file_name(label: str, index: int, stimulus: str) -> str:
    """``block{label}_{index:03d}_{stimulus}.png`` (``stimulus``: session id + image id)."""
    return f"block{label}_{index:03d}_{stimulus}.png"


def manifest_path(folder: Path, label: str) -> Path:
    return folder / f"block{label}.manifest.json"


def response_paths(folder: Path, label: str, suffixes: Sequence[str]) -> list[Path]:
    return [folder / f"block{label}{suffix}" for suffix in suffixes]


def check_image_id(image_id: str) -> str:
    """Return ``image_id`` if it is safe as part of a file name, else raise ValueError."""
    if not SAFE_ID.match(image_id) or ".." in image_id:
        raise ValueError(f"image id {image_id!r} is not usable in the exchange folder "
                         "(letters, digits, '_', '.', '-'; at most 160)")
    return image_id


def describe_id(image_id: str) -> dict[str, Any]:
    """Thread, generation and reference flag encoded in a latentopt image id."""
    match = _THREAD_ID.match(image_id)
    if match:
        return {"thread": match.group(2), "generation": int(match.group(1)), "reference": False}
    return {"thread": None, "generation": None, "reference": image_id.startswith("ref_")}


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename in ``path``'s folder (readers never see a partial file)."""
    tmp = _temporary(path)
    _write_synced(tmp, data)
    os.replace(tmp, path)


def atomic_write_many(files: dict[Path, bytes]) -> None:
    """:func:`atomic_write` for many files; the fsyncs run in parallel (serial fsyncs of 40 images
    cost ~0.15 s of block turnaround, parallel ones ~0.01 s)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: _write_synced(_temporary(item[0]), item[1]), files.items()))
    for path in files:
        os.replace(_temporary(path), path)


def clean_temporaries(folder: Path) -> None:
    """Remove temporaries a killed latentopt left (only its own ``.block*.tmp`` names)."""
    for tmp in folder.glob(".block*.tmp"):
        tmp.unlink(missing_ok=True)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bytes(image: np.ndarray, *, compression: int = 0) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes.

    ``compression`` is zlib's level. 0 (default) stores the pixels unfiltered and uncompressed
    (a valid PNG written directly, 15 ms for 40 images of 256 px, ~200 KB each); 1-9 go through
    Pillow (level 1: ~0.3-0.45 s for the same block on one CPU core, files 2-4x smaller). Every
    millisecond here is added to the block turnaround while the animal waits.
    """
    if compression == 0:
        height, width, _ = image.shape
        rows = np.empty((height, 3 * width + 1), dtype=np.uint8)
        rows[:, 0] = 0  # filter type None for every row
        rows[:, 1:] = np.ascontiguousarray(image, dtype=np.uint8).reshape(height, 3 * width)
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 0)) + _png_chunk(b"IEND", b""))
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compression)
    return buffer.getvalue()


def stimulus_id(session: str, image_id: str) -> str:
    """The name a rig shows and echoes for ``image_id`` in ``session`` (after ``block{NNN}_{k:03d}_``)."""
    return f"{session}_{image_id}"


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _changed_image(folder: Path, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first manifest entry whose image file in ``folder`` is missing or differs from its ``sha256``."""
    for entry in entries:
        if _sha256_file(folder / str(entry.get("file"))) != entry.get("sha256"):
            return entry
    return None


def _check_adopted(path: Path, existing: dict[str, Any], expected: dict[str, Any], hashes: list[str]) -> None:
    """Refuse a manifest already in the folder unless it is this very block of this session, untampered."""
    where = f"{path} (in the exchange folder)"
    for key in ("session", "block", "generation", "attempt"):
        if existing.get(key) != expected[key]:
            raise RigProtocolError(f"{where} is {key} {existing.get(key)!r}, this run expects {expected[key]!r}: "
                                   "it belongs to another session; give each session its own exchange folder.")
    entries = existing.get("images")
    if not isinstance(entries, list) or [e.get("image_id") for e in entries] != expected["ids"]:
        raise RigProtocolError(f"{where} holds other images than block {expected['label']} of this run; "
                               "give each session its own exchange folder.")
    for entry, digest in zip(entries, hashes, strict=True):
        if entry.get("sha256") != digest:
            raise RigProtocolError(f"{where}: sha256 of {entry.get('image_id')} differs from the image this run "
                                   "makes (tampered manifest?); resume on a new exchange folder.")
    changed = _changed_image(path.parent, entries)
    if changed is not None:
        raise RigProtocolError(f"{where}: image file {changed.get('file')} does not match its sha256 "
                               "(tampered or missing); resume on a new exchange folder.")


def write_block(
    folder: Path,
    *,
    block: int,
    generation: int,
    attempt: int,
    session: str,
    protocol: str,
    image_ids: Sequence[str],
    images: Sequence[np.ndarray],
    response_hint: str,
    compression: int = 0,
) -> tuple[dict[str, Any], bool]:
    """Write a block's images and manifest, or adopt the identical block already there (resume).

    Args:
        folder: the exchange folder.
        block: block number (the session's counter); generation: the generation it shows;
            attempt: re-queue attempt within the generation (0 = first showing).
        session: the session id (part of every stimulus name, recorded in the manifest).
        protocol: ``xdream`` or ``native`` (recorded in the manifest).
        image_ids: ids of the images, validated with :func:`check_image_id`.
        images: ``(H, W, 3)`` uint8 each.
        response_hint: the response file name(s) the rig should write.
        compression: PNG compression level (0-9).

    Returns:
        the manifest, and True if it was already in the folder (a resumed block).

    Raises:
        RigProtocolError: the folder holds a different block under this number, or a tampered one.
    """
    label = block_label(block)
    path = manifest_path(folder, label)
    entries, files = [], {}
    for k, (image_id, image) in enumerate(zip(image_ids, images, strict=True)):
        data = png_bytes(image, compression=compression)
        stimulus = stimulus_id(session, check_image_id(image_id))
        name = image_file_name(label, k, check_image_id(stimulus))
        files[folder / name] = data
        entries.append({"index": k, "image_id": image_id, "stimulus_id": stimulus, "file": name,
                        **describe_id(image_id), "sha256": hashlib.sha256(data).hexdigest()})
    if path.exists():
        existing = read_manifest(path)
        expected = {"session": session, "block": block, "generation": generation, "attempt": attempt,
                    "label": label, "ids": list(image_ids)}
        _check_adopted(path, existing, expected, [e["sha256"] for e in entries])
        return existing, True
    atomic_write_many(files)
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "protocol": protocol, "session": session,
                "block": block, "generation": generation, "attempt": attempt, "label": label,
                "response_file": response_hint, "images": entries, "written_at": time.time()}
    atomic_write(path, json.dumps(manifest, indent=1).encode())
    return manifest, False


def verify_block(folder: Path, manifest: dict[str, Any]) -> str | None:
    """Why the block on disk is no longer what latentopt wrote (manifest or an image changed), or None."""
    path = manifest_path(folder, manifest["label"])
    try:
        on_disk = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return f"{path.name} is missing or unreadable"
    if on_disk != manifest:
        return f"{path.name} was changed after latentopt wrote it"
    changed = _changed_image(folder, manifest["images"])
    return None if changed is None else f"{changed['file']} does not match its sha256 in {path.name}"


def read_manifest(path: Path, *, max_bytes: int = 4 << 20) -> dict[str, Any]:
    """Read and check a manifest (used by the rig simulator and by stimulus programs)."""
    try:
        if path.stat().st_size > max_bytes:
            raise RigProtocolError(f"{path} is larger than {max_bytes} bytes")
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise RigProtocolError(f"{path} is unreadable ({' '.join(str(err).split())})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise RigProtocolError(f"{path} is not a latentopt manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise RigProtocolError(f"{path} is manifest version {manifest.get('version')!r}, not {MANIFEST_VERSION} "
                               "(written by another latentopt version)")
    try:
        for entry in manifest["images"]:
            check_image_id(entry["image_id"])
            check_image_id(entry["stimulus_id"])
            if entry["file"] != image_file_name(manifest["label"], entry["index"], entry["stimulus_id"]):
                raise RigProtocolError(f"{path}: unexpected image file name {entry['file']!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise RigProtocolError(f"{path}: malformed image entry ({err})") from None
    return manifest
