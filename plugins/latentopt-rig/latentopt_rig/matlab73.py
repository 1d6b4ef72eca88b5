"""MATLAB v7.3 MAT-files (HDF5 with MATLAB's conventions): the XDream response file.

What makes an HDF5 file a MAT-file MATLAB reads (``load``) and writes (``save -v7.3``):

* a 512-byte user block whose first 128 bytes are the MAT header: 116 bytes of text
  (``MATLAB 7.3 MAT-file, ...``), 8 bytes of subsystem offset, version ``0x0200`` and the
  endian indicator ``IM``;
* every variable carries the attribute ``MATLAB_class`` (``double``, ``char``, ``cell``);
* arrays are stored column-major, so the HDF5 shape is the MATLAB size reversed
  (``tEvokedResp``, images x channels in MATLAB, is ``(channels, images)`` in HDF5);
* ``char`` arrays are uint16 code units with ``MATLAB_int_decode = 2``;
* a ``cell`` array is a dataset of HDF5 object references to its elements, which live in the
  group ``#refs#`` (MATLAB also keeps a canonical-empty placeholder ``#refs#/a`` there).

Reading goes through h5py only: nothing is unpickled, and every dataset's declared size (count,
item size, chunks, what its deflated chunks inflate to) is checked before it is read.
"""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from latentopt_rig.limits import BoundError, inflated_size

HEADER_BYTES = 128
USERBLOCK_BYTES = 512


def mat73_header(created: float | None = None) -> bytes:
    """The 128-byte MAT-file header MATLAB writes at the start of a v7.3 file."""
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(created or time.time()))
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {stamp} HDF5 schema 1.00 .".encode("ascii")
    header = text.ljust(116, b" ") + b" " * 8 + b"\x00\x02" + b"IM"
    assert len(header) == HEADER_BYTES
    return header


def _ref_name(index: int) -> str:
    """MATLAB's names for ``#refs#`` members: b, c, ..., z, ba, bb, ... (``a`` is the empty placeholder)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    index += 1
    name = ""
    while True:
        name = letters[index % 26] + name
        index //= 26
        if index == 0:
            return name


def _write_char(parent: h5py.Group, name: str, text: str) -> h5py.Dataset:
    codes = np.array([ord(c) for c in text] or [0], dtype=np.uint16).reshape(-1, 1)  # MATLAB 1 x L
    ds = parent.create_dataset(name, data=codes)
    ds.attrs["MATLAB_class"] = np.bytes_("char")
    ds.attrs["MATLAB_int_decode"] = np.int32(2)
    if not text:
        ds.attrs["MATLAB_empty"] = np.uint8(1)
    return ds


def _write_value(file: h5py.File, name: str, value: Any) -> None:
    if isinstance(value, str):
        _write_char(file, name, value)
        return
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        refs = file.require_group("#refs#")
        if "a" not in refs:
            placeholder = refs.create_dataset("a", data=np.zeros(2, dtype=np.uint64))
            placeholder.attrs["MATLAB_class"] = np.bytes_("canonical empty")
            placeholder.attrs["MATLAB_empty"] = np.uint8(1)
        start = len(refs) - 1
        targets = [_write_char(refs, _ref_name(start + k), text) for k, text in enumerate(value)]
        cell = file.create_dataset(name, shape=(1, len(targets)), dtype=h5py.ref_dtype)  # MATLAB n x 1
        for k, target in enumerate(targets):
            cell[0, k] = target.ref
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        return
    array = np.asarray(value, dtype=np.float64)
    # HDF5 holds MATLAB's size reversed; a 1-d array is a MATLAB column (n x 1), a scalar 1 x 1.
    stored = array.T if array.ndim > 1 else array.reshape(1, -1)
    ds = file.create_dataset(name, data=stored)
    ds.attrs["MATLAB_class"] = np.bytes_("double")


def write_mat73(variables: Mapping[str, Any]) -> bytes:
    """Serialise variables as a MATLAB v7.3 MAT-file.

    Args:
        variables: name -> value; a ``str`` becomes a char row, a list of ``str`` a cell column
            (n x 1), anything else a double array with MATLAB's size equal to the numpy shape
            (a 1-d array of n becomes n x 1).

    Returns:
        the file's bytes.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=USERBLOCK_BYTES, libver="earliest") as file:
        for name, value in variables.items():
            _write_value(file, name, value)
    data = bytearray(buffer.getvalue())
    data[:HEADER_BYTES] = mat73_header()
    return bytes(data)


def is_hdf5(data: bytes) -> bool:
    """True for an HDF5 file (signature at offset 0, 512, 1024, ...: after a user block)."""
    signature = b"\x89HDF\r\n\x1a\n"
    return any(data[offset : offset + 8] == signature for offset in (0, 512, 1024, 2048))


def _attr(obj: Any, name: str) -> str:
    value = obj.attrs.get(name)
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("ascii", "replace")
    return "" if value is None else str(value)


MAX_CHUNK_BYTES = 64 << 20
_SAFE_FILTERS = {"gzip", "shuffle", "fletcher32"}  # what MATLAB and h5py write


def check_dataset(ds: Any, *, max_items: int, max_itemsize: int, what: str = "") -> h5py.Dataset:
    """Check a dataset's declared size before reading it: element count, item size, chunks, filters.

    A deflated chunk is inflated (and discarded) with a bound first: HDF5 itself would grow its
    buffer to whatever a hostile chunk inflates to.

    Raises:
        ValueError: not a dataset (:class:`BoundError`: it declares more than the bounds allow).
    """
    name = what or getattr(ds, "name", "?")
    if not isinstance(ds, h5py.Dataset) or ds.shape is None:
        raise ValueError(f"{name} is not a (non-empty) dataset")
    if ds.size > max_items:
        raise BoundError(f"{name}: {ds.size} entries (limit {max_items})")
    if ds.dtype.itemsize > max_itemsize:
        raise BoundError(f"{name}: items of {ds.dtype.itemsize} bytes (limit {max_itemsize})")
    if ds.chunks is not None:
        stored = 32 if ds.dtype.kind == "O" else ds.dtype.itemsize  # vlen data and references: heap ids on disk
        chunk_bytes = int(np.prod(ds.chunks)) * stored
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise BoundError(f"{name}: chunks of {chunk_bytes} bytes (limit {MAX_CHUNK_BYTES})")
        filters = {str(f) for f in ds._filters}
        if not filters <= _SAFE_FILTERS:
            raise ValueError(f"{name}: unsupported HDF5 filters {sorted(filters)}")
        if "gzip" in filters:
            _check_chunks_inflate(ds, chunk_bytes, name)
    return ds


def _check_chunks_inflate(ds: h5py.Dataset, chunk_bytes: int, name: str) -> None:
    for k in range(ds.id.get_num_chunks()):
        info = ds.id.get_chunk_info(k)
        _, raw = ds.id.read_direct_chunk(info.chunk_offset)
        try:
            inflated_size(raw, chunk_bytes)
        except zlib.error:
            continue  # stored without deflate (filter skipped) or damaged: HDF5 cannot inflate it either
        except BoundError as err:
            raise BoundError(f"{name}: a chunk of {chunk_bytes} bytes: {err}") from err


def read_char(ds: Any, *, max_chars: int = 256) -> str:
    """A MATLAB char array (uint16 code units, column-major) or an HDF5 string as ``str``."""
    check_dataset(ds, max_items=max_chars, max_itemsize=4 * max_chars, what="a stimulusID string")
    if ds.dtype.kind not in "uiSO":
        raise ValueError(f"{ds.name}: a string must be char codes or text, not {ds.dtype}")
    if _attr(ds, "MATLAB_empty") == "1":
        return ""
    data = ds[()]
    if isinstance(data, (bytes, np.bytes_)):
        return data.decode("utf-8", "replace")
    array = np.asarray(data)
    if array.dtype.kind in "SO":
        item = array.reshape(-1)[0]
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    codes = array.reshape(-1).astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() > 0x10FFFF):
        raise ValueError(f"{ds.name}: char codes outside Unicode")
    return "".join(chr(int(c)) for c in codes)


def read_strings(file: h5py.File, name: str, *, max_items: int, max_chars: int = 256) -> list[str]:
    """A cell array of char (MATLAB) or a 1-d string dataset (plain HDF5) as a list of ``str``."""
    ds = file[name]
    if isinstance(ds, h5py.Dataset) and _attr(ds, "MATLAB_class") == "char":
        return [read_char(ds, max_chars=max_chars)]
    check_dataset(ds, max_items=max_items, max_itemsize=4 * max_chars, what=name)
    if h5py.check_dtype(ref=ds.dtype) is not None:
        refs: Sequence[Any] = ds[()].reshape(-1)  # C order of the reversed shape = MATLAB's linear order
        return [read_char(file[ref], max_chars=max_chars) for ref in refs]
    if ds.dtype.kind not in "SO" or (ds.dtype.kind == "O" and h5py.check_string_dtype(ds.dtype) is None):
        raise ValueError(f"{name}: ids must be strings, not {ds.dtype}")
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in np.asarray(ds[()]).reshape(-1)]


def read_numeric(file: h5py.File, name: str, *, max_values: int) -> np.ndarray:
    """A numeric dataset as float64, in numpy (C) order: MATLAB variables are transposed back."""
    ds = file[name]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fiub":
        raise ValueError(f"{name} is not a numeric array")
    check_dataset(ds, max_items=max_values, max_itemsize=16, what=name)
    array = np.asarray(ds[()], dtype=np.float64)
    if _attr(ds, "MATLAB_class"):
        array = array.T
    return array
