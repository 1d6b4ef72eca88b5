"""Bounds on what a response file may declare, checked *before* any array is read or inflated.

A response file is at most ``max_file_mb`` on disk, but compressed formats expand: a 2 MB ``.npz``
or MAT v5 file can declare gigabytes. Every reader therefore checks the declared shapes, dtypes,
string lengths and uncompressed sizes against these bounds first (``docs/rig.md`` states them),
and refuses the file with :class:`BoundError` (a ``ValueError``; the caller turns it into a
one-line ``ResponseFileError``).
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from latentopt.errors import LatentoptError

MAX_TRIALS = 100_000
MAX_CHANNELS = 4096
MAX_BINS = 10_000
MAX_VALUES = 1 << 24  # trials x channels x bins: 128 MiB as float64
MAX_ID_CHARS = 256
MAX_EXPANDED_BYTES = 192 << 20  # uncompressed content of one file, all arrays together
MAX_CSV_ROWS = 1_000_000
MAX_MEMBERS = 64  # zip members of an .npz, top-level variables of a MAT file
MAX_ABS_VALUE = 1e9
_INFLATE_STEP = 1 << 20


class BoundError(LatentoptError, ValueError):
    """A response file declares more than the bounds allow."""


def check_count(what: str, count: int, limit: int) -> None:
    """Raise :class:`BoundError` if ``count`` exceeds ``limit``."""
    if count > limit:
        raise BoundError(f"{what}: {count} (limit {limit})")


def check_shape(what: str, shape: Sequence[int], *, max_values: int, itemsize: int = 8) -> None:
    """A declared array shape: every dimension >= 0, the element count and byte size bounded."""
    if any(int(n) < 0 for n in shape):
        raise BoundError(f"{what}: negative dimension in shape {tuple(shape)}")
    count = math.prod(int(n) for n in shape)
    check_count(f"{what} values", count, max_values)
    check_count(f"{what} bytes", count * max(int(itemsize), 1), MAX_EXPANDED_BYTES)


def inflated_size(data: bytes, limit: int) -> int:
    """Bytes a zlib stream inflates to, counted in 1 MiB steps without keeping them; > ``limit`` refused."""
    inflater = zlib.decompressobj()
    total, pending = 0, data
    while not inflater.eof:
        chunk = inflater.decompress(pending, _INFLATE_STEP)
        pending = inflater.unconsumed_tail
        total += len(chunk)
        if total > limit:
            raise BoundError(f"compressed data inflates to more than {limit} bytes (decompression bomb?)")
        if not chunk and not pending:
            break
    return total


# ---------------------------------------------------------------------------------------------- npz
def _zip_entry_count(data: bytes) -> int:
    """Members declared in a zip's end-of-central-directory record (before zipfile parses them all)."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - (1 << 16) - 22))
    if eocd < 0 or eocd + 22 > len(data):
        raise BoundError("not a zip archive (no end-of-central-directory record)")
    entries, cd_size = struct.unpack("<H4xI", data[eocd + 10 : eocd + 20])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        raise BoundError("zip64 archive with too many members")
    return int(entries)


def read_npz_arrays(data: bytes, names: Sequence[str], required: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an ``.npz`` (those present), each header checked before its data is read.

    The ``.npy`` header inside each zip member gives dtype and shape; the member's declared
    uncompressed size bounds what zipfile may inflate (it never yields more than it declares).
    """
    check_count("zip members", _zip_entry_count(data), MAX_MEMBERS)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        missing = [n for n in required if n not in members]
        if missing:
            raise BoundError(f"a .npz response file needs {', '.join(required)}, has {sorted(members)}")
        chosen = {n: members[n] for n in names if n in members}
        check_count("uncompressed bytes", sum(i.file_size for i in chosen.values()), MAX_EXPANDED_BYTES)
        arrays = {}
        for name, info in chosen.items():
            with archive.open(info) as member:
                _check_npy_header(name, member)
            with archive.open(info) as member:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays


def _check_npy_header(name: str, member: Any) -> None:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise BoundError(f"{name}: unknown .npy version {version}")
    if dtype.hasobject:
        raise BoundError(f"{name} holds Python objects (pickle); store numbers and strings")
    if dtype.kind in "US":
        chars = dtype.itemsize // (4 if dtype.kind == "U" else 1)
        check_count(f"characters in an image id of {name}", chars, MAX_ID_CHARS)
        check_shape(f"trials in {name}", shape, max_values=MAX_TRIALS, itemsize=dtype.itemsize)
    elif dtype.kind in "fiub":
        check_shape(name, shape, max_values=MAX_VALUES, itemsize=dtype.itemsize)
    else:
        raise BoundError(f"{name}: unsupported dtype {dtype}")


# ---------------------------------------------------------------------------------------------- MAT v5
def check_mat5(data: bytes, limits: dict[str, int]) -> None:
    """Bound a MAT v5 file before ``scipy.io.loadmat``: uncompressed size and declared shapes.

    Args:
        data: the file's bytes.
        limits: variable name -> largest element count allowed (variables not named are not loaded).
    """
    from scipy.io import whosmat

    if len(data) < 128:
        raise BoundError("shorter than a MAT-file header")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise BoundError("not a MAT-file (no endian indicator)")
    position, total, count = 128, 0, 0
    while position + 8 <= len(data):
        mdtype, nbytes = struct.unpack(endian + "II", data[position : position + 8])
        position += 8
        count += 1
        check_count("top-level MAT variables", count, MAX_MEMBERS)
        if mdtype == 15:  # miCOMPRESSED: count what it inflates to, without keeping it
            total += inflated_size(data[position : position + nbytes], MAX_EXPANDED_BYTES - total)
            position += nbytes
        else:
            total += nbytes
            position += nbytes + (-nbytes % 8)
        check_count("uncompressed bytes", total, MAX_EXPANDED_BYTES)
    for name, shape, _ in whosmat(io.BytesIO(data)):
        if name in limits:
            check_shape(name, shape, max_values=limits[name])
