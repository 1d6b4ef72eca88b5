"""What a session showed and what the subject answered, rebuilt for a digital twin (issue 13).

A run folder records per block the image ids, their owner (thread index, or -1 for a natural reference
image), the responses and each thread's codes, but not the images. :func:`run_stimuli` rebuilds the images
from the recorded config, building only the generators (never the subject: it may be a rig) and the natural
references, and returns a :class:`Stimuli`: the distinct images once each, and per presentation the image
shown and the response. :func:`folder_stimuli` reads the same from a folder of images and a CSV of responses
(a lab's data from elsewhere).

Image keys: a reference image's id (the same photograph in every block is one image shown again), an evolved
image's presentation id (each is shown once), a manifold grid image's design id (its repeats ``<id>_r<k>``
are one image). Presentations whose responses are not all finite (aborted trials) are dropped, and so are
images left without any presentation.

Time-binned responses ``(p, channels, time_bins)`` are reduced as the objectives reduce them
(:meth:`latentopt.objective.Objective.score`): with the recorded bin edges, the evoked response
(:func:`latentopt.responses.evoked_response`) over ``response_window_ms`` minus ``baseline_window_ms`` as the
recorded config sets them (the ``objective`` node, else the ``subject`` node), else the Wang & Ponce windows
50-200 ms and 0-45 ms; without edges, the mean over bins. ``time_bins="mean"`` or ``"keep"`` choose otherwise.

Experiments: ``evolve`` and ``alignment`` (threads of :func:`latentopt.assembly.thread_specs`) and ``manifold``
(``design.npz``) are read here; another experiment adds a reader with :func:`register_stimulus_reader` (into
:data:`STIMULUS_READERS`), at import of the module its plugin registers.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.assembly import Assembly
from latentopt.blocks import REFERENCE, fit_images
from latentopt.errors import LatentoptError
from latentopt.records import BlockRecord, RecordError
from latentopt.responses import BASELINE_WINDOW_MS, RESPONSE_WINDOW_MS, check_window, evoked_response
from latentopt.run_record import RunRecord, load_run, recorded_config

__all__ = ["STIMULUS_READERS", "RunSource", "Stimuli", "StimuliError", "folder_stimuli",
           "register_stimulus_reader", "run_stimuli"]

TIME_BINS = ("evoked", "mean", "keep")


class StimuliError(LatentoptError, ValueError):
    """A run whose experiment has no stimulus reader, or a CSV of responses that cannot be read (one line)."""


@dataclass
class Stimuli:
    """Distinct images and, per presentation, which one was shown and the response.

    Attributes:
        keys: ``m`` unique image keys (see the module docstring).
        images: ``(m, 3, H, W)`` float32 RGB in [0, 1] on the CPU, as shown (or resized to the ``size`` asked).
        image_of: ``(p,)`` int64: the index into ``keys`` of each presentation's image.
        responses: ``(p, channels)`` float64 (``(p, channels, time_bins)`` with ``time_bins="keep"``), all finite.
        channel_names: ``channels`` names (recorded ones, else ``ch0``, ``ch1``, ...).
        presentation_ids: ``p`` ids as recorded (unique within a block).
        blocks: ``(p,)`` int64 block (generation) of each presentation (-1 for :func:`folder_stimuli`).
        owner: ``(p,)`` int64 thread index of each presentation, -1 for a natural reference (0 for a manifold's
            grid images and for :func:`folder_stimuli`).
        source: what the stimuli came from: ``run``, ``experiment``, ``generations``, ``presentations`` (kept),
            ``dropped`` (presentations without finite responses), ``responses`` (how time bins were reduced),
            ``time_bins_ms`` (the recorded bin edges, or None); for :func:`folder_stimuli` ``folder`` and ``csv``.
    """

    keys: list[str]
    images: torch.Tensor
    image_of: np.ndarray
    responses: np.ndarray
    channel_names: list[str]
    presentation_ids: list[str]
    blocks: np.ndarray
    owner: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.image_of.shape[0])


class ImageTable:
    """Distinct images by key, in the order first added, fitted to one size (``None``: as given)."""

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self._chunks: list[torch.Tensor] = []

    def add(self, keys: Sequence[str], images: torch.Tensor) -> None:
        """Add ``images`` ``(k, 3, h, w)`` under ``keys`` (a key already present keeps its first image)."""
        new = [j for j, key in enumerate(keys) if key not in self.index]
        if not new:
            return
        chosen = images[new].detach().float().cpu()
        self._chunks.append(chosen if self.size is None else fit_images(chosen, self.size))
        for j in new:
            self.index[str(keys[j])] = len(self.keys)
            self.keys.append(str(keys[j]))

    def images(self) -> torch.Tensor:
        if not self._chunks:
            side = self.size or (1, 1)
            return torch.zeros(0, 3, *side)
        return torch.cat(self._chunks).clamp(0, 1)


@dataclass
class RunSource:
    """What a stimulus reader gets: the run, its blocks and config, and builders of its generators and references.

    Attributes:
        run: the run read back.
        config: the recorded config (plain dict, ``device`` resolved to the one asked).
        blocks: every block, in order.
        assembly: builds generators (``assembly.generator(node, key)``); never build the subject.
        table: where the reader puts the distinct images (fitted to the size asked).
    """

    run: RunRecord
    config: dict[str, Any]
    blocks: list[BlockRecord]
    assembly: Assembly
    table: ImageTable
    _references: dict[tuple[int, int], dict[str, torch.Tensor]] = field(default_factory=dict)

    def reference(self, image_id: str, size: tuple[int, int], block: int) -> torch.Tensor:
        """The natural reference ``image_id`` as shown in blocks of ``size`` (``experiment.references``)."""
        from latentopt.checks import ConfigError
        from latentopt.references import reference_set

        if size not in self._references:
            spec = (self.config.get("experiment") or {}).get("references")
            try:
                ids, images = reference_set(spec, size)
            except ConfigError as err:
                raise RecordError(f"{self.run.path}: its references cannot be rebuilt: {err}") from err
            self._references[size] = dict(zip(ids, images, strict=True))
        try:
            return self._references[size][image_id]
        except KeyError:
            raise RecordError(f"{self.run.path}, block {block}: reference image {image_id!r} is not among the "
                              "images experiment.references gives now (did the folder change?)") from None

    def add_references(self, block: BlockRecord, size: tuple[int, int]) -> None:
        ids = [str(i) for i in block.image_ids[block.owner == REFERENCE]]
        missing = [i for i in ids if i not in self.table.index]
        if missing:
            self.table.add(missing, torch.stack([self.reference(i, size, block.generation) for i in missing]))


Reader = Callable[[RunSource], None]
"""Puts every presented image of a run into ``source.table`` under its key, by :func:`presentation_keys`."""

STIMULUS_READERS: dict[str, tuple[Reader, Callable[[BlockRecord], list[str]]]] = {}
"""Per experiment name: ``(reader, keys of a block's presentations)``."""


def register_stimulus_reader(name: str, reader: Reader,
                             keys: Callable[[BlockRecord], list[str]] | None = None) -> None:
    """Teach :func:`run_stimuli` an experiment.

    Args:
        name: the experiment's registered name (as its blocks record it).
        reader: fills ``source.table`` with every image its blocks showed (see :class:`RunSource`).
        keys: the image key of each presentation of a block, in order (default: a reference's id and
            otherwise the presentation id).

    Raises:
        ValueError: ``name`` has a reader already.
    """
    if name in STIMULUS_READERS:
        raise ValueError(f"experiment {name!r} has a stimulus reader already")
    STIMULUS_READERS[name] = (reader, keys or _presentation_keys)


def _presentation_keys(block: BlockRecord) -> list[str]:
    return [str(i) for i in block.image_ids]


# ---------------------------------------------------------------------------- reading a run
def _reader(name: str, run_dir: Path, registry: Any) -> tuple[Reader, Callable[[BlockRecord], list[str]]]:
    import latentopt.stimulus_readers  # noqa: F401  (the built-in experiments' readers)

    if name not in STIMULUS_READERS:  # a plugin's experiment registers its reader when its module is imported
        from latentopt.plugins import PluginError, default_registry

        try:
            (registry if registry is not None else default_registry()).get("experiments", name)
        except PluginError:
            pass
    if name not in STIMULUS_READERS:
        raise StimuliError(f"{run_dir}: experiment {name!r} has no stimulus reader (known: "
                           f"{', '.join(sorted(STIMULUS_READERS))}); its plugin can add one with "
                           "latentopt.stimuli.register_stimulus_reader")
    return STIMULUS_READERS[name]


def _windows(config: Mapping[str, Any]) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """The response and baseline windows the recorded config sets (objective node, then subject), or defaults."""
    found: dict[str, Any] = {}
    for group in ("objective", "subject"):
        node = config.get(group)
        if isinstance(node, Mapping):
            for key in ("response_window_ms", "baseline_window_ms"):
                if key in node and key not in found:
                    found[key] = (node[key], f"{group}.{key}")
    response = check_window(*found["response_window_ms"]) if "response_window_ms" in found else RESPONSE_WINDOW_MS
    if "baseline_window_ms" not in found:
        return response, BASELINE_WINDOW_MS
    value, key = found["baseline_window_ms"]
    return response, None if value is None else check_window(value, key)


def _reduce(responses: np.ndarray, edges: np.ndarray | None, config: Mapping[str, Any],
            time_bins: str) -> tuple[np.ndarray, str]:
    """``(p, channels[, bins])`` -> what :class:`Stimuli` holds, and how it was reduced (for ``source``)."""
    if responses.ndim == 2 or time_bins == "keep":
        return responses, "as recorded"
    if time_bins == "mean" or edges is None:
        return responses.mean(2), "mean over time bins"
    response, baseline = _windows(config)
    evoked = evoked_response(responses, edges, response_window_ms=response, baseline_window_ms=baseline)
    text = f"evoked: mean over {response[0]:g}-{response[1]:g} ms"
    return evoked, text + ("" if baseline is None else f" minus {baseline[0]:g}-{baseline[1]:g} ms")


def _channel_names(provenance: Mapping[str, Any], count: int) -> list[str]:
    subject = provenance.get("subject") if isinstance(provenance.get("subject"), Mapping) else {}
    for names in (provenance.get("channel_names"), (subject or {}).get("channel_names")):
        if isinstance(names, list) and len(names) == count:
            return [str(n) for n in names]
    return [f"ch{k}" for k in range(count)]


def run_stimuli(run_dir: Path | str, *, device: str = "cpu", size: tuple[int, int] | int | None = None,
                time_bins: str = "evoked", registry: Any = None) -> Stimuli:
    """Rebuild what a recorded run showed and pair it with the recorded responses.

    Args:
        run_dir: the run folder.
        device: where the generators run (``${device}`` of the recorded config resolves to it).
        size: ``(H, W)`` (or a side) to resize the images to; None: as shown (the block's size).
        time_bins: for time-binned responses, ``evoked`` (module docstring), ``mean`` over bins, or ``keep``.
        registry: the plugin registry building the generators (default: everything installed).

    Returns:
        the :class:`Stimuli` (presentations without finite responses dropped).

    Raises:
        RecordError: the folder is no run, a file is missing or damaged, or its records do not fit its config.
        WeightsError: a generator's weights are missing (the generator's own message).
        StimuliError: the run's experiment has no stimulus reader, or its time bins do not fit the windows.
        PluginError: a generator of the recorded config is not installed.
    """
    if time_bins not in TIME_BINS:
        raise ValueError(f"time_bins must be one of {', '.join(TIME_BINS)}, got {time_bins!r}")
    path = Path(run_dir)
    run = load_run(path)
    if not run.generations:
        raise RecordError(f"{path} holds no block yet")
    blocks = [run.block(g) for g in range(run.generations)]
    name = blocks[0].experiment
    reader, keys_of = _reader(name, path, registry)
    config = recorded_config(path, device=device)
    side = (size, size) if isinstance(size, int) else (None if size is None else (int(size[0]), int(size[1])))
    source = RunSource(run, config, blocks, Assembly(config, registry=registry), ImageTable(side))
    from latentopt.checks import ConfigError

    try:
        with torch.no_grad():
            reader(source)
    except ConfigError as err:  # e.g. a generator setting this latentopt refuses
        raise RecordError(f"{path}/config.yaml: {err}") from err
    finally:
        source.assembly.close()
    keys = [key for block in blocks for key in keys_of(block)]
    unknown = [k for k in keys if k not in source.table.index]
    if unknown:
        raise RecordError(f"{path}: the {name} reader rebuilt no image for {unknown[0]!r}")
    try:
        responses = np.concatenate([np.asarray(b.responses, dtype=np.float64) for b in blocks])
    except ValueError as err:
        raise RecordError(f"{path}: the blocks' responses differ in shape ({err})") from err
    try:
        reduced, how = _reduce(responses, blocks[0].time_bins_ms, config, time_bins)
    except ValueError as err:  # a window holding no bin, edges that do not fit (ConfigError: a bad window)
        raise StimuliError(f"{path}: {err}") from err
    stimuli = _kept(source.table, np.array([source.table.index[k] for k in keys], dtype=np.int64), reduced,
                    [str(i) for b in blocks for i in b.image_ids],
                    np.concatenate([np.full(len(b.image_ids), b.generation) for b in blocks]).astype(np.int64),
                    np.concatenate([b.owner for b in blocks]).astype(np.int64))
    stimuli.channel_names = _channel_names(run.provenance, reduced.shape[1])
    stimuli.source = {"run": str(path.absolute()), "experiment": name, "generations": run.generations,
                      "presentations": len(stimuli), "dropped": int(len(keys) - len(stimuli)), "responses": how,
                      "time_bins_ms": None if blocks[0].time_bins_ms is None else blocks[0].time_bins_ms.tolist()}
    return stimuli


def _kept(table: ImageTable, image_of: np.ndarray, responses: np.ndarray, ids: list[str], blocks: np.ndarray,
          owner: np.ndarray) -> Stimuli:
    """The presentations with finite responses, and only the images they show (re-indexed in first-use order)."""
    keep = np.isfinite(responses.reshape(responses.shape[0], -1)).all(axis=1)
    used, image_of = np.unique(image_of[keep], return_inverse=True)
    images = table.images()
    if len(used) < len(table.keys):  # (no copy of every image when all were answered)
        images = images[torch.from_numpy(used)] if len(used) else images[:0]
    return Stimuli([table.keys[k] for k in used.tolist()], images, image_of.astype(np.int64).reshape(-1),
                   responses[keep], [],
                   [i for i, k in zip(ids, keep.tolist(), strict=True) if k], blocks[keep], owner[keep])


# ---------------------------------------------------------------------------- a lab's folder and CSV
def _number(text: str, where: str) -> float:
    text = text.strip()
    if text == "" or text.lower() in ("nan", "na"):
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise StimuliError(f"{where}: {text[:40]!r} is not a number") from None
    if math.isinf(value):
        raise StimuliError(f"{where}: {text[:40]!r} is not a finite number")
    return value


def _read_csv(csv_path: Path) -> tuple[list[str], list[tuple[int, str, list[float]]]]:
    """``(channel names, [(line, image, values)])``; errors name the file and line."""
    try:
        with csv_path.open(newline="") as handle:
            rows = list(enumerate(csv.reader(handle), start=1))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise StimuliError(f"{csv_path} cannot be read as CSV: {' '.join(str(err).split())}") from None
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise StimuliError(f"{csv_path} is empty; it needs a header 'image,<channel>,...' and one row per trial")
    header_line, header = rows[0]
    header = [cell.strip() for cell in header]
    if len(header) < 2 or header[0].lower() != "image":
        raise StimuliError(f"{csv_path}:{header_line}: the header must be 'image' then one column per channel, "
                           f"got {','.join(header)[:80]!r}")
    if len(set(header[1:])) != len(header) - 1 or not all(header[1:]):
        raise StimuliError(f"{csv_path}:{header_line}: channel names must be unique and not empty")
    out = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise StimuliError(f"{csv_path}:{line}: {len(row)} columns, the header has {len(header)}")
        image = row[0].strip()
        if not image:
            raise StimuliError(f"{csv_path}:{line}: no image name")
        out.append((line, image, [_number(cell, f"{csv_path}:{line}, column {header[c + 1]!r}")
                                  for c, cell in enumerate(row[1:])]))
    if not out:
        raise StimuliError(f"{csv_path} holds a header but no trial")
    return header[1:], out


def folder_stimuli(folder: Path | str, csv_path: Path | str, *,
                   size: tuple[int, int] | int | None = None) -> Stimuli:
    """Images of a lab's folder and a CSV of their responses as :class:`Stimuli`.

    The CSV has a header ``image,<channel>,...``; each row is one trial: the image's file name (``a.png``) or
    stem (``a``), then one response per channel (empty or ``nan``: not shown, the row is dropped). Several rows
    of one image are its repeats. Keys are the file stems (the file name where two files share a stem, e.g.
    ``a.png`` and ``a.jpg``); presentation ids ``<key>_r<k>`` (its k-th repeat).

    Args:
        folder: the images (``.png .jpg .jpeg .bmp .tif .tiff``), centre-cropped to a square and resized.
        csv_path: the responses.
        size: ``(H, W)`` or a side; None: the shorter side of the first image the CSV names, squared.

    Raises:
        StimuliError: the CSV is unreadable or malformed, or names an image not in the folder (file and line).
        ConfigError: the folder is missing, or an image file is unreadable (naming it).
    """
    from latentopt.checks import ConfigError
    from latentopt.natural import IMAGE_SUFFIXES, load_image_file

    directory, table_path = Path(folder), Path(csv_path)
    if not directory.is_dir():
        raise ConfigError(f"image folder {directory}: no such folder")
    channels, trials = _read_csv(table_path)
    found = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    by_stem: dict[str, list[Path]] = {}
    for file in found:
        by_stem.setdefault(file.stem, []).append(file)
    files = {file.name: file for file in found}
    stems: list[str] = []  # each trial's image key: the file stem (the file name when two files share the stem)
    counts: dict[str, int] = {}
    ids: list[str] = []
    for line, image, _ in trials:
        matches = [files[image]] if image in files else by_stem.get(image, [])
        if len(matches) > 1:
            raise StimuliError(f"{table_path}:{line}: {image!r} matches {', '.join(p.name for p in matches)} "
                               f"in {directory}; give the file name")
        if not matches:
            raise StimuliError(f"{table_path}:{line}: no image file {image!r} in {directory}")
        file = matches[0]
        key = file.stem if len(by_stem[file.stem]) == 1 else file.name
        files[key] = file
        stems.append(key)
        ids.append(f"{key}_r{counts.get(key, 0)}")
        counts[key] = counts.get(key, 0) + 1
    distinct = list(dict.fromkeys(stems))
    shape = (size, size) if isinstance(size, int) else size
    side = (tuple(load_image_file(files[distinct[0]], None).shape[-2:]) if shape is None else shape)
    table = ImageTable(None)
    for stem in distinct:
        table.add([stem], load_image_file(files[stem], (int(side[0]), int(side[1])))[None])
    responses = np.array([values for _, _, values in trials], dtype=np.float64)
    p = len(trials)
    stimuli = _kept(table, np.array([table.index[s] for s in stems], dtype=np.int64), responses, ids,
                    np.full(p, -1, dtype=np.int64), np.zeros(p, dtype=np.int64))
    stimuli.channel_names = channels
    stimuli.source = {"folder": str(directory.absolute()), "csv": str(table_path.absolute()),
                      "presentations": len(stimuli), "dropped": p - len(stimuli), "responses": "as recorded"}
    return stimuli
