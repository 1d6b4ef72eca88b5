"""Response files from the rig: reading them safely, and writing them (for the rig simulator).

Every reader takes the file's bytes (already size-bounded by the caller) and returns
:class:`TrialResponses`; nothing is unpickled (``.npy`` headers with ``allow_pickle=False``, h5py,
``scipy.io.loadmat``). Declared shapes, dtypes, string lengths and uncompressed sizes are checked
against :mod:`latentopt_rig.limits` before any array is read. Any defect, whatever the parsing
library raised, is one :class:`ResponseFileError` line naming the file. Trials with impossible
values (inf, magnitude above 1e9, negative spike counts) become NaN and are listed in
:attr:`TrialResponses.invalid`.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentopt.errors import LatentoptError
from latentopt_rig import limits
from latentopt_rig.matlab73 import is_hdf5, read_numeric, read_strings, write_mat73

CSV_END = "# end"
RESPONSE_SUFFIXES = (".mat", ".h5", ".npz", ".csv")


class ResponseFileError(LatentoptError, ValueError):
    """A response file is damaged, incomplete, too large inside, or not in a known format."""


@dataclass
class TrialResponses:
    """The trials of one response file.

    Attributes:
        image_ids: one id per trial (as written by the rig, not yet validated).
        values: ``(trials, channels)`` evoked responses, or ``(trials, channels, bins)`` spike
            counts per time bin; float64, NaN allowed.
        bin_edges_ms: ``(bins + 1,)`` edges in ms from image onset when time-binned, else None.
        invalid: trial index -> why its values were unusable (set to NaN by :meth:`validate`).
    """

    image_ids: list[str]
    values: np.ndarray
    bin_edges_ms: np.ndarray | None = None
    invalid: dict[int, str] = field(default_factory=dict)

    def validate(self) -> TrialResponses:
        """Check shapes and bounds; trials with impossible values become NaN (listed in ``invalid``)."""
        v = self.values
        if v.ndim == 1:
            v = self.values = v.reshape(-1, 1)
        if v.ndim not in (2, 3):
            raise ResponseFileError(f"responses must be (trials, channels[, bins]), got shape {v.shape}")
        if v.shape[0] != len(self.image_ids):
            raise ResponseFileError(f"{len(self.image_ids)} image ids but {v.shape[0]} rows of responses")
        _check_bounds(v.shape, self.image_ids)
        if v.ndim == 3:
            if self.bin_edges_ms is None:
                raise ResponseFileError("time-binned responses need bin edges (bin_edges_ms / binEdgesMs)")
            edges = self.bin_edges_ms = np.asarray(self.bin_edges_ms, dtype=np.float64).reshape(-1)
            if edges.shape[0] != v.shape[2] + 1 or not np.all(np.diff(edges) > 0) or not np.isfinite(edges).all():
                raise ResponseFileError(f"{edges.shape[0]} bin edges (finite, increasing) needed for {v.shape[2]} bins")
        self.invalid = _invalid_trials(v)
        if self.invalid:
            self.values = v = v.copy()
            v[list(self.invalid)] = np.nan
        return self


def _check_bounds(shape: tuple[int, ...], ids: list[str]) -> None:
    try:
        limits.check_count("trials", shape[0], limits.MAX_TRIALS)
        limits.check_count("channels", shape[1], limits.MAX_CHANNELS)
        if len(shape) == 3:
            limits.check_count("time bins", shape[2], limits.MAX_BINS)
        longest = max((len(i) for i in ids), default=0)
        limits.check_count("characters in an image id", longest, limits.MAX_ID_CHARS)
    except limits.BoundError as err:
        raise ResponseFileError(str(err)) from err


def _invalid_trials(values: np.ndarray) -> dict[int, str]:
    """Trials with an infinite value, a magnitude above ``MAX_ABS_VALUE``, or (binned) a negative count."""
    flat = values.reshape(values.shape[0], -1)
    with np.errstate(invalid="ignore"):
        checks = [(np.isinf(flat), "infinite value"),
                  (np.abs(flat) > limits.MAX_ABS_VALUE, f"magnitude above {limits.MAX_ABS_VALUE:g}")]
        if values.ndim == 3:
            checks.append((flat < 0, "negative spike count"))
    invalid: dict[int, str] = {}
    for mask, reason in checks:
        for trial in np.flatnonzero(mask.any(axis=1)):
            invalid.setdefault(int(trial), reason)
    return invalid


def _pick(names: Any, *candidates: str) -> str | None:
    return next((c for c in candidates if c in names), None)


def _read_hdf5(data: bytes) -> TrialResponses:
    import h5py

    with h5py.File(io.BytesIO(data), "r") as file:
        ids_name = _pick(file, "stimulusID", "image_ids")
        psth_name = _pick(file, "psth")
        resp_name = _pick(file, "responses", "tEvokedResp")
        if ids_name is None or (psth_name or resp_name) is None:
            raise ResponseFileError(f"needs stimulusID/image_ids and tEvokedResp/psth/responses, has {list(file)}")
        ids = read_strings(file, ids_name, max_items=limits.MAX_TRIALS, max_chars=limits.MAX_ID_CHARS)
        values = read_numeric(file, psth_name or resp_name, max_values=limits.MAX_VALUES)  # type: ignore[arg-type]
        edges_name = _pick(file, "binEdgesMs", "bin_edges_ms")
        edges = read_numeric(file, edges_name, max_values=limits.MAX_BINS + 1).reshape(-1) if edges_name else None
    return TrialResponses(ids, values, edges).validate()


def _cell_strings(cell: np.ndarray) -> list[str]:
    out = []
    for item in np.asarray(cell, dtype=object).reshape(-1, order="F"):
        flat = np.asarray(item).reshape(-1)
        out.append(str(flat[0]) if flat.size else "")
    return out


def _read_mat5(data: bytes) -> TrialResponses:
    from scipy.io import loadmat

    wanted = {"stimulusID": limits.MAX_TRIALS, "tEvokedResp": limits.MAX_VALUES, "psth": limits.MAX_VALUES,
              "binEdgesMs": limits.MAX_BINS + 1}
    limits.check_mat5(data, wanted)  # before loadmat inflates anything
    mat = loadmat(io.BytesIO(data), squeeze_me=False, chars_as_strings=True, variable_names=list(wanted))
    if "stimulusID" not in mat or ("tEvokedResp" not in mat and "psth" not in mat):
        raise ResponseFileError("a .mat response file needs stimulusID and tEvokedResp (or psth)")
    values = np.asarray(mat["psth"] if "psth" in mat else mat["tEvokedResp"], dtype=np.float64)
    edges = np.asarray(mat["binEdgesMs"], dtype=np.float64).reshape(-1) if "binEdgesMs" in mat else None
    return TrialResponses(_cell_strings(mat["stimulusID"]), values, edges).validate()


def _read_npz(data: bytes) -> TrialResponses:
    arrays = limits.read_npz_arrays(data, ("image_ids", "responses", "bin_edges_ms"), ("image_ids", "responses"))
    ids = arrays["image_ids"]
    if ids.dtype.kind not in "US":
        raise ResponseFileError("image_ids must be a string array")
    if ids.dtype.kind == "S":
        ids = np.char.decode(ids, "utf-8", "replace")
    limits.check_count("bin edges", arrays["bin_edges_ms"].size if "bin_edges_ms" in arrays else 0,
                       limits.MAX_BINS + 1)
    values = np.asarray(arrays["responses"], dtype=np.float64)
    edges = np.asarray(arrays["bin_edges_ms"], dtype=np.float64) if "bin_edges_ms" in arrays else None
    return TrialResponses([str(i) for i in ids.reshape(-1)], values, edges).validate()


def _parse_bin(name: str) -> tuple[float, float]:
    lo, _, hi = name.partition(":")
    return float(lo), float(hi)


def _csv_rows(data: bytes) -> tuple[list[str], Any]:
    """Header and a row iterator of a complete csv (ends with ``# end``), with the row count bounded."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ResponseFileError(f"csv is not UTF-8: {err}") from err
    body = text.rstrip()
    if not body.endswith(CSV_END) or (len(body) > len(CSV_END) and body[-len(CSV_END) - 1] not in "\r\n"):
        raise ResponseFileError(f"csv does not end with the line {CSV_END!r} (still being written?)")
    limits.check_count("csv rows", body.count("\n"), limits.MAX_CSV_ROWS)
    content = body[: -len(CSV_END)]

    def rows() -> Any:
        return csv.reader(line for line in io.StringIO(content) if line.strip())

    # every distinct image id is at least one trial: too many are refused before any value is parsed
    # (csv's own parser in C, so quoted ids count right; it stops at the first id over the limit)
    ids: set[str] = set()
    for row in itertools.islice(rows(), 1, None):
        if row and row[0] not in ids:
            ids.add(row[0])
            limits.check_count("trials", len(ids), limits.MAX_TRIALS)
    reader = rows()
    header: list[str] = next(reader, [])
    if header[:2] != ["image_id", "channel"] or len(header) < 3:
        raise ResponseFileError("csv header must be image_id,channel,count or image_id,channel,<t0>:<t1>,...")
    limits.check_count("csv time bins", len(header) - 2, limits.MAX_BINS)
    return header, reader


def _read_csv(data: bytes) -> TrialResponses:
    header, reader = _csv_rows(data)
    bins = header[2:]
    try:
        edges = None if bins == ["count"] else np.array([_parse_bin(h)[0] for h in bins] + [_parse_bin(bins[-1])[1]])
        order: list[str] = []  # the id of each trial, in order of first appearance
        trial_of: dict[tuple[str, int], int] = {}  # (id, k) -> trial index of the id's k-th trial
        seen: dict[tuple[str, int], int] = {}  # (id, channel) -> rows so far
        cells: list[tuple[int, int, list[float]]] = []
        for row in reader:
            if len(row) != len(header):
                raise ResponseFileError(f"csv row of {len(row)} fields, header has {len(header)}")
            channel = int(row[1])
            if not 0 <= channel < limits.MAX_CHANNELS:
                raise ResponseFileError(f"csv channel {row[1][:20]} outside 0..{limits.MAX_CHANNELS - 1}")
            k = seen[(row[0], channel)] = seen.get((row[0], channel), -1) + 1
            if (row[0], k) not in trial_of:
                trial_of[(row[0], k)] = len(order)
                order.append(row[0])
                limits.check_count("trials", len(order), limits.MAX_TRIALS)
            cells.append((trial_of[(row[0], k)], channel, [float(x) if x.strip() else np.nan for x in row[2:]]))
    except ResponseFileError:
        raise
    except ValueError as err:
        raise ResponseFileError(f"csv value error: {err}") from err
    n_channels = 1 + max((c for _, c, _ in cells), default=-1)
    limits.check_shape("csv responses", (len(order), n_channels, len(bins)), max_values=limits.MAX_VALUES)
    values = np.full((len(order), n_channels, len(bins)), np.nan)
    for trial, channel, row_values in cells:
        values[trial, channel] = row_values
    return TrialResponses(order, values[..., 0] if edges is None else values, edges).validate()


def read_response_bytes(name: str, data: bytes) -> TrialResponses:
    """Parse a response file's bytes by its suffix (``.mat`` sniffs v7.3 vs v5).

    Every failure, whatever the parsing library raised, becomes a one-line :class:`ResponseFileError`
    naming the file: nothing in a response file can stop the session.
    """
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if suffix not in RESPONSE_SUFFIXES:
        raise ResponseFileError(f"{name}: unknown response file type (use {', '.join(RESPONSE_SUFFIXES)})")
    if not data:
        raise ResponseFileError(f"{name} is empty")
    kind = "HDF5/MAT v7.3" if suffix == ".h5" or (suffix == ".mat" and is_hdf5(data)) else suffix.lstrip(".")
    reader = {"HDF5/MAT v7.3": _read_hdf5, "mat": _read_mat5, "npz": _read_npz, "csv": _read_csv}[kind]
    try:
        return reader(data)
    except ResponseFileError as err:
        raise ResponseFileError(f"{name}: {err}") from err
    except Exception as err:  # h5py, scipy, zipfile, numpy raise many types (and MemoryError) on hostile input
        text = " ".join(str(err).split())[:300] or type(err).__name__
        prefix = "refused" if isinstance(err, limits.BoundError) else f"unreadable {kind} file"
        raise ResponseFileError(f"{name}: {prefix}: {text}") from err


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
