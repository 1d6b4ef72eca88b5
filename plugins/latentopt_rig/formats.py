"""Response files from the rig: reading them safely, and writing them (for the rig simulator).

Every reader takes the file's bytes (already size-bounded by the caller) and returns
:class:`TrialResponses`; nothing is unpickled (``np.load(allow_pickle=False)``, h5py,
``scipy.io.loadmat``). Any defect raises :class:`ResponseFileError`.

Formats (one row per trial; repeated ids are repeats, averaged later):

* ``.mat`` MATLAB v7.3 (HDF5) or v5: ``stimulusID`` (cell of char, n x 1) and ``tEvokedResp``
  (double, n x channels) as XDream; optionally ``psth`` (n x channels x bins, spike counts) with
  ``binEdgesMs`` (bins + 1) instead of, or beside, ``tEvokedResp``.
* ``.h5``: datasets ``image_ids`` (strings), ``responses`` (n, channels[, bins]) and optionally
  ``bin_edges_ms``; MATLAB's names are accepted too.
* ``.npz``: the same arrays as ``.h5`` (string ids as a unicode array; no pickled objects).
* ``.csv``: header ``image_id,channel,count`` or ``image_id,channel,<t0>:<t1>,...`` (one column per
  bin, edges in ms); one row per trial and channel; the k-th row of an (id, channel) pair belongs to
  the id's k-th trial. The last line must be ``# end`` (a partly written csv still parses).
"""

from __future__ import annotations

import csv
import io
import itertools
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentopt_rig.matlab73 import is_hdf5, read_numeric, read_strings, write_mat73

MAX_TRIALS = 100_000
MAX_VALUES = 50_000_000
CSV_END = "# end"
RESPONSE_SUFFIXES = (".mat", ".h5", ".npz", ".csv")


class ResponseFileError(ValueError):
    """A response file is damaged, incomplete or not in a known format."""


@dataclass
class TrialResponses:
    """The trials of one response file.

    Attributes:
        image_ids: one id per trial (as written by the rig, not yet validated).
        values: ``(trials, channels)`` evoked responses, or ``(trials, channels, bins)`` spike
            counts per time bin; float64, NaN allowed.
        bin_edges_ms: ``(bins + 1,)`` edges in ms from image onset when time-binned, else None.
    """

    image_ids: list[str]
    values: np.ndarray
    bin_edges_ms: np.ndarray | None = None

    def validate(self) -> TrialResponses:
        v = self.values
        if v.ndim == 1:
            v = self.values = v.reshape(-1, 1)
        if v.ndim not in (2, 3):
            raise ResponseFileError(f"responses must be (trials, channels[, bins]), got shape {v.shape}")
        if v.shape[0] != len(self.image_ids):
            raise ResponseFileError(f"{len(self.image_ids)} image ids but {v.shape[0]} rows of responses")
        if np.isinf(v).any():
            raise ResponseFileError("responses contain infinite values")
        if v.ndim == 3:
            if self.bin_edges_ms is None:
                raise ResponseFileError("time-binned responses need bin edges (bin_edges_ms / binEdgesMs)")
            edges = self.bin_edges_ms = np.asarray(self.bin_edges_ms, dtype=np.float64).reshape(-1)
            if edges.shape[0] != v.shape[2] + 1 or not np.all(np.diff(edges) > 0):
                raise ResponseFileError(f"{edges.shape[0]} bin edges (increasing) needed for {v.shape[2]} bins")
        return self


def _pick(names: Any, *candidates: str) -> str | None:
    return next((c for c in candidates if c in names), None)


def _read_hdf5(data: bytes) -> TrialResponses:
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as file:
            ids_name = _pick(file, "stimulusID", "image_ids")
            psth_name = _pick(file, "psth")
            resp_name = _pick(file, "responses", "tEvokedResp")
            if ids_name is None or (psth_name or resp_name) is None:
                raise ResponseFileError(f"needs stimulusID/image_ids and tEvokedResp/psth/responses, has {list(file)}")
            ids = read_strings(file, ids_name, max_items=MAX_TRIALS)
            values = read_numeric(file, psth_name or resp_name, max_values=MAX_VALUES)  # type: ignore[arg-type]
            edges_name = _pick(file, "binEdgesMs", "bin_edges_ms")
            edges = read_numeric(file, edges_name, max_values=100_000).reshape(-1) if edges_name else None
    except ResponseFileError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError, ValueError, RuntimeError on damage
        raise ResponseFileError(f"unreadable HDF5/MAT v7.3 file: {err}") from err
    return TrialResponses(ids, values, edges).validate()


def _cell_strings(cell: np.ndarray) -> list[str]:
    out = []
    for item in np.asarray(cell, dtype=object).reshape(-1, order="F"):
        flat = np.asarray(item).reshape(-1)
        out.append(str(flat[0]) if flat.size else "")
    return out


def _read_mat5(data: bytes) -> TrialResponses:
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data), squeeze_me=False, chars_as_strings=True)
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError, ... on damage
        raise ResponseFileError(f"unreadable MAT v5 file: {err}") from err
    if "stimulusID" not in mat or ("tEvokedResp" not in mat and "psth" not in mat):
        raise ResponseFileError("a .mat response file needs stimulusID and tEvokedResp (or psth)")
    values = np.asarray(mat["psth"] if "psth" in mat else mat["tEvokedResp"], dtype=np.float64)
    edges = np.asarray(mat["binEdgesMs"], dtype=np.float64).reshape(-1) if "binEdgesMs" in mat else None
    if values.size > MAX_VALUES:
        raise ResponseFileError(f"{values.size} values (limit {MAX_VALUES})")
    return TrialResponses(_cell_strings(mat["stimulusID"]), values, edges).validate()


def _read_npz(data: bytes) -> TrialResponses:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if "image_ids" not in npz.files or "responses" not in npz.files:
                raise ResponseFileError(f"a .npz response file needs image_ids and responses, has {npz.files}")
            ids = npz["image_ids"]
            if ids.dtype.kind not in "US":
                raise ResponseFileError("image_ids must be a string array")
            values = np.asarray(npz["responses"], dtype=np.float64)
            edges = np.asarray(npz["bin_edges_ms"], dtype=np.float64) if "bin_edges_ms" in npz.files else None
    except ResponseFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ResponseFileError(f"unreadable .npz file: {err}") from err
    return TrialResponses([str(i) for i in ids.reshape(-1)], values, edges).validate()


def _parse_bin(name: str) -> tuple[float, float]:
    lo, _, hi = name.partition(":")
    return float(lo), float(hi)


def _read_csv(data: bytes) -> TrialResponses:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ResponseFileError(f"csv is not UTF-8: {err}") from err
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[-1].strip() != CSV_END:
        raise ResponseFileError(f"csv does not end with the line {CSV_END!r} (still being written?)")
    rows = list(csv.reader(lines[:-1]))
    if not rows or rows[0][:2] != ["image_id", "channel"] or len(rows[0]) < 3:
        raise ResponseFileError("csv header must be image_id,channel,count or image_id,channel,<t0>:<t1>,...")
    header = rows[0][2:]
    try:
        edges = None
        if header != ["count"]:
            edges = np.array([_parse_bin(h)[0] for h in header] + [_parse_bin(header[-1])[1]])
        trials: dict[tuple[str, int], list[list[float]]] = defaultdict(list)
        order: list[str] = []
        for row in rows[1:]:
            if len(row) != len(rows[0]):
                raise ResponseFileError(f"csv row of {len(row)} fields, header has {len(rows[0])}")
            key = (row[0], int(row[1]))
            if key[1] < 0:
                raise ResponseFileError("csv channel numbers must be >= 0")
            trials[key].append([float(x) if x.strip() else np.nan for x in row[2:]])
            if len(trials[key]) > order.count(row[0]):
                order.append(row[0])
    except ValueError as err:
        raise ResponseFileError(f"csv value error: {err}") from err
    if len(order) > MAX_TRIALS:
        raise ResponseFileError(f"{len(order)} trials (limit {MAX_TRIALS})")
    n_channels = 1 + max((c for _, c in trials), default=-1)
    values = np.full((len(order), n_channels, len(header)), np.nan)
    seen: dict[str, int] = defaultdict(int)
    index_of: dict[tuple[str, int], int] = {}
    for t, image_id in enumerate(order):
        index_of[(image_id, seen[image_id])] = t
        seen[image_id] += 1
    for (image_id, channel), rows_ in trials.items():
        for k, row_values in enumerate(rows_):
            values[index_of[(image_id, k)], channel] = row_values
    return TrialResponses(order, values[..., 0] if edges is None else values, edges).validate()


def read_response_bytes(name: str, data: bytes) -> TrialResponses:
    """Parse a response file's bytes by its suffix (``.mat`` sniffs v7.3 vs v5)."""
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if suffix not in RESPONSE_SUFFIXES:
        raise ResponseFileError(f"{name}: unknown response file type (use {', '.join(RESPONSE_SUFFIXES)})")
    if not data:
        raise ResponseFileError(f"{name} is empty")
    if suffix == ".h5" or (suffix == ".mat" and is_hdf5(data)):
        return _read_hdf5(data)
    if suffix == ".mat":
        return _read_mat5(data)
    if suffix == ".npz":
        return _read_npz(data)
    return _read_csv(data)


# ---------------------------------------------------------------------------- writers (simulator, tests)
def encode_responses(trials: TrialResponses, fmt: str) -> bytes:
    """Serialise trials as ``fmt``: ``mat73``, ``mat5``, ``h5``, ``npz`` or ``csv`` (see the module doc)."""
    ids, values, edges = trials.image_ids, trials.values, trials.bin_edges_ms
    if fmt in ("mat73", "mat5"):
        variables: dict[str, Any] = {"stimulusID": list(ids)}
        if values.ndim == 3:
            assert edges is not None
            variables["psth"], variables["binEdgesMs"] = values, edges
        else:
            variables["tEvokedResp"] = values
        if fmt == "mat73":
            return write_mat73(variables)
        from scipy.io import savemat

        buffer = io.BytesIO()
        cell = np.empty((len(ids), 1), dtype=object)
        for k, image_id in enumerate(ids):
            cell[k, 0] = image_id
        savemat(buffer, {**variables, "stimulusID": cell}, format="5")
        return buffer.getvalue()
    if fmt == "npz":
        buffer = io.BytesIO()
        arrays = {"image_ids": np.asarray(ids, dtype=str), "responses": values}
        if edges is not None:
            arrays["bin_edges_ms"] = edges
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()
    if fmt == "h5":
        import h5py

        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as file:
            file.create_dataset("image_ids", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
            file.create_dataset("responses", data=values)
            if edges is not None:
                file.create_dataset("bin_edges_ms", data=edges)
        return buffer.getvalue()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        binned = values.reshape(values.shape[0], values.shape[1], -1)
        header = ["count"] if edges is None else [f"{a:g}:{b:g}" for a, b in itertools.pairwise(edges)]
        writer.writerow(["image_id", "channel", *header])
        for image_id, trial in zip(ids, binned, strict=True):
            for channel, row in enumerate(trial):
                writer.writerow([image_id, channel, *("" if np.isnan(x) else repr(float(x)) for x in row)])
        out.write(CSV_END + "\n")
        return out.getvalue().encode()
    raise ValueError(f"unknown response format {fmt!r}; use mat73, mat5, h5, npz or csv")


FORMAT_SUFFIX = {"mat73": ".mat", "mat5": ".mat", "h5": ".h5", "npz": ".npz", "csv": ".csv"}
