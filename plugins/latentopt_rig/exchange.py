"""The exchange folder shared with the stimulus computer: block names, manifests, image files.

Per block (= generation) latentopt writes the images, then the manifest, each atomically (written
to a dot-temporary in the same folder, fsynced, renamed); the manifest is the commit point: a
stimulus program should start a block only once its manifest exists. Names::

    block005_000_g00005_main_000.png     image k of block 5 (XDream's block{NNN}_{k:03d}_{imageid}.png)
    block005.manifest.json               ids, threads, reference flags, file names, sha256 of each image
    block005.mat | .h5 | .npz | .csv     the rig's response file
    block005r1_...png, block005r1.manifest.json, block005r1.mat    re-queued images, attempt 1

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
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_THREAD_ID = re.compile(r"^g(\d{5,})_(.+)_(\d{3,})$")


class RigProtocolError(SubjectUnavailable):
    """The exchange folder holds something latentopt cannot continue from (a foreign block).

    A :class:`SubjectUnavailable`: the CLI prints one line and the run stays resumable (with an
    exchange folder of its own, ``latentopt-resume RUN_DIR subject.exchange=...``)."""


def block_label(block: int, attempt: int = 0) -> str:
    """``"005"`` for block 5, ``"005r1"`` for its first re-queue attempt."""
    if block < 0 or attempt < 0:
        raise ValueError("block and attempt must be >= 0")
    return f"{block:03d}" if attempt == 0 else f"{block:03d}r{attempt}"


def image_file_name(label: str, index: int, image_id: str) -> str:
    return f"block{label}_{index:03d}_{image_id}.png"


def manifest_path(folder: Path, label: str) -> Path:
    return folder / f"block{label}.manifest.json"


def response_paths(folder: Path, label: str, suffixes: Sequence[str]) -> list[Path]:
    return [folder / f"block{label}{suffix}" for suffix in suffixes]


def check_image_id(image_id: str) -> str:
    """Return ``image_id`` if it is safe as part of a file name, else raise ValueError."""
    if not SAFE_ID.match(image_id) or ".." in image_id:
        raise ValueError(f"image id {image_id!r} is not usable in the exchange folder "
                         "(letters, digits, '_', '.', '-'; at most 128)")
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


def write_block(
    folder: Path,
    *,
    block: int,
    attempt: int,
    protocol: str,
    image_ids: Sequence[str],
    images: Sequence[np.ndarray],
    response_hint: str,
    compression: int = 0,
) -> tuple[dict[str, Any], bool]:
    """Write a block's images and manifest, or adopt the identical block already there (resume).

    Args:
        folder: the exchange folder.
        block: block number (= generation); attempt: re-queue attempt (0 = first showing).
        protocol: ``xdream`` or ``native`` (recorded in the manifest).
        image_ids: ids of the images, validated with :func:`check_image_id`.
        images: ``(H, W, 3)`` uint8 each.
        response_hint: the response file name(s) the rig should write.
        compression: PNG compression level (0-9).

    Returns:
        the manifest, and True if it was already in the folder (a resumed block).

    Raises:
        RigProtocolError: the folder holds a different block under this label.
    """
    label = block_label(block, attempt)
    path = manifest_path(folder, label)
    if path.exists():
        existing = json.loads(path.read_text())
        if [e["image_id"] for e in existing.get("images", [])] != list(image_ids):
            raise RigProtocolError(
                f"{path} holds other images than block {label} of this run; the exchange folder belongs to "
                "another session: give each session its own exchange folder"
            )
        return existing, True
    entries, files = [], {}
    for k, (image_id, image) in enumerate(zip(image_ids, images, strict=True)):
        data = png_bytes(image, compression=compression)
        name = image_file_name(label, k, check_image_id(image_id))
        files[folder / name] = data
        entries.append({"index": k, "image_id": image_id, "file": name, **describe_id(image_id),
                        "sha256": hashlib.sha256(data).hexdigest()})
    atomic_write_many(files)
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "protocol": protocol, "block": block,
                "attempt": attempt, "label": label, "response_file": response_hint, "images": entries,
                "written_at": time.time()}
    atomic_write(path, json.dumps(manifest, indent=1).encode())
    return manifest, False


def read_manifest(path: Path, *, max_bytes: int = 4 << 20) -> dict[str, Any]:
    """Read and check a manifest (used by the rig simulator and by stimulus programs)."""
    if path.stat().st_size > max_bytes:
        raise RigProtocolError(f"{path} is larger than {max_bytes} bytes")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise RigProtocolError(f"{path} is not a latentopt manifest")
    for entry in manifest["images"]:
        check_image_id(entry["image_id"])
        if entry["file"] != image_file_name(manifest["label"], entry["index"], entry["image_id"]):
            raise RigProtocolError(f"{path}: unexpected image file name {entry['file']!r}")
    return manifest
