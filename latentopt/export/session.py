"""A run folder read for export: every presentation, and every distinct image once as uint8.

The run folder records per block the image ids, their owner (thread, design part, or -1 for a natural
reference), the responses and each thread's codes, but not the images. They are rebuilt as
:mod:`latentopt.stimuli` rebuilds them for a digital twin (its per-experiment readers: evolved images from the
recorded codes through the generators rebuilt from ``config.yaml``, never the subject; natural images from
``experiment.references`` / ``experiment.natural`` by id; a fixed design's images from ``design.npz``), here
kept as ``(H, W, 3)`` uint8 at the size shown and with every presentation, answered or not.
:mod:`latentopt.export.checks` then compares them with what the run stored (best images, thumbnails).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.blocks import REFERENCE, fit_images
from latentopt.errors import LatentoptError
from latentopt.records import GENERATION_DIR, RUN_MARKER, BlockRecord, RecordError, _parse_block, load_generation
from latentopt.run_record import RunRecord, load_run, recorded_config
from latentopt.stimuli import STIMULUS_READERS, ImageTable, RunSource

SESSION_PARTS = {0: "controllers", 1: "natural"}
"""Owner names of a natural-set or control session's blocks (``latentopt.experiments.control``)."""
DESIGN_PART = "design"


class ExportError(LatentoptError, RuntimeError):
    """An export that cannot be made (missing pynwb, an existing output, images that do not match): one line."""


class Uint8Table(ImageTable):
    """An :class:`~latentopt.stimuli.ImageTable` that keeps its images as ``(k, H, W, 3)`` uint8 (a quarter of
    the memory: a 250-generation session holds 10 000 images)."""

    def add(self, keys: Sequence[str], images: torch.Tensor) -> None:
        new = [j for j, key in enumerate(keys) if str(key) not in self.index]
        if not new:
            return
        chosen = (images if len(new) == len(keys) else images[new]).detach().float().cpu()
        if self.size is not None:
            chosen = fit_images(chosen, self.size)
        # the rounding of latentopt.records.to_uint8_image, which wrote the best images' PNGs: clip to [0, 1],
        # x 255 + 0.5, truncate (in place on one copy: this runs over every image of the session)
        scaled = torch.clamp(chosen, 0, 1).mul_(255).add_(0.5)
        self._chunks.append(scaled.to(torch.uint8))
        for j in new:
            self.index[str(keys[j])] = len(self.keys)
            self.keys.append(str(keys[j]))

    def uint8(self) -> np.ndarray:
        """``(m, H, W, 3)`` uint8, in the order the keys were added."""
        if not self._chunks:
            return np.zeros((0, 1, 1, 3), dtype=np.uint8)
        try:
            return np.ascontiguousarray(torch.cat(self._chunks).permute(0, 2, 3, 1).numpy())
        except RuntimeError as err:  # images of different sizes
            raise ExportError(f"the rebuilt images differ in size ({' '.join(str(err).split())})") from None


@dataclass
class Session:
    """What a run showed and what the subject answered, ready to be written.

    Attributes:
        run: the run read back; ``config`` its recorded config (plain dict).
        experiment: the registered name of the experiment that recorded it.
        blocks: every block, in order.
        image_ids: ``m`` distinct image ids (a reference's id; an evolved image's id; a design image's id).
        images: ``(m, H, W, 3)`` uint8 RGB as shown.
        image_kinds: per image ``evolved``, ``natural``, ``design`` or ``controller``.
        presentation_ids: ``p`` ids as recorded (a design image's repeat ``<id>_r<k>``).
        image_of: ``(p,)`` int64 index into ``image_ids`` of each presentation.
        block, position, owner: ``(p,)`` int64: block number, place in its block, owner (-1: reference).
        part: ``p`` names of the owner (thread name, ``reference``, ``design``, ``controllers``, ``natural``).
        natural: ``(p,)`` bool: a natural image.
        responses: ``(p, channels[, time_bins])`` float64 as recorded (NaN: not shown / not answered).
        scores: ``(p,)`` float64 the owning thread's (or design's) objective score, NaN where none.
        start_s, stop_s: ``(p,)`` seconds from ``session_start`` of the block the presentation was in.
        session_start: when the run started (``run.json``).
        time_bins_ms: ``(time_bins + 1,)`` bin edges, or None.
        channel_names, channel_areas: one per channel (``unknown`` where the subject named no area).
        thread_names: the optimizer threads (empty for a fixed design).
    """

    run: RunRecord
    config: dict[str, Any]
    experiment: str
    blocks: list[BlockRecord]
    image_ids: list[str]
    images: np.ndarray
    image_kinds: list[str]
    presentation_ids: list[str]
    image_of: np.ndarray
    block: np.ndarray
    position: np.ndarray
    owner: np.ndarray
    part: list[str]
    natural: np.ndarray
    responses: np.ndarray
    scores: np.ndarray
    start_s: np.ndarray
    stop_s: np.ndarray
    session_start: datetime
    time_bins_ms: np.ndarray | None
    channel_names: list[str]
    channel_areas: list[str]
    thread_names: list[str] = field(default_factory=list)


Keys = Callable[[BlockRecord], list[str]]


def _reader(name: str, path: Path) -> tuple[Callable[[RunSource], None], Keys]:
    import latentopt.stimulus_readers  # noqa: F401  (the built-in experiments' readers register)

    if name not in STIMULUS_READERS:  # a plugin's experiment registers its reader when its module is imported
        from latentopt.plugins import PluginError, default_registry

        try:
            default_registry().get("experiments", name)
        except PluginError:
            pass
    if name in STIMULUS_READERS:
        return STIMULUS_READERS[name]
    if name == "axis_tuning":
        from latentopt.export.design_reader import design_keys, read_fixed_design

        return read_fixed_design, design_keys
    raise ExportError(f"{path}: experiment {name!r} has no stimulus reader (known: "
                      f"{', '.join(sorted([*STIMULUS_READERS, 'axis_tuning']))}), so its images cannot be rebuilt; "
                      "its plugin can add one with latentopt.stimuli.register_stimulus_reader")


def _read_blocks(run: RunRecord) -> tuple[list[BlockRecord], np.ndarray]:
    """Every block and ``(blocks, 2)`` its start and end time (UNIX seconds)."""
    blocks: list[BlockRecord] = []
    times = np.zeros((run.generations, 2))
    names: list[str] | None = None
    for g in range(run.generations):
        path = run.path / GENERATION_DIR / f"gen_{g:05d}.npz"
        tree = load_generation(run.path, g, skip_state=True)
        blocks.append(_parse_block(path, tree, names))
        names = blocks[0].thread_names
        meta = tree.get("meta") or {}
        end = meta.get("time")
        # a block's record is made when it ends; older records without a time: the file's time
        end = float(end) if isinstance(end, (int, float)) else path.stat().st_mtime
        times[g] = (end - sum(blocks[-1].timings.values()), end)
    return blocks, times


def _session_start(run: RunRecord, first: float) -> datetime:
    try:
        started = json.loads((run.path / RUN_MARKER).read_text())["started"]
        start = datetime.fromisoformat(str(started))
    except (OSError, ValueError, KeyError, TypeError):  # a legacy folder without a start marker
        start = datetime.fromtimestamp(first, tz=timezone.utc).astimezone()
    if start.tzinfo is None:
        start = start.astimezone()
    if start.timestamp() > first:  # run.json has whole seconds; never let a block start before the session
        start = datetime.fromtimestamp(first, tz=start.tzinfo)
    return start


def channel_table(provenance: Mapping[str, Any], count: int) -> tuple[list[str], list[str]]:
    """Channel names (``provenance.json``'s ``channel_names``, else ``ch<k>``) and areas (a rig's per-channel
    ``areas``, else the subject's ``area``, else ``unknown``)."""
    subject = provenance.get("subject") if isinstance(provenance.get("subject"), Mapping) else {}
    subject = subject or {}
    names = next((list(map(str, n)) for n in (provenance.get("channel_names"), subject.get("channel_names"))
                  if isinstance(n, list) and len(n) == count), [f"ch{k}" for k in range(count)])
    areas_by_channel = subject.get("areas") if isinstance(subject.get("areas"), Mapping) else {}
    channels = subject.get("channels")
    areas = []
    for k in range(count):
        area = None
        if areas_by_channel and isinstance(channels, list) and len(channels) == count:
            area = areas_by_channel.get(str(channels[k]))
        areas.append(str(area or subject.get("area") or "unknown"))
    return names, areas


def _part_names(experiment: str, block: BlockRecord) -> dict[int, str]:
    if block.thread_names:
        return dict(enumerate(block.thread_names))
    if experiment in ("natural", "control"):
        return dict(SESSION_PARTS)
    return {0: DESIGN_PART}


def _scores(block: BlockRecord, parts: Mapping[int, str]) -> np.ndarray:
    scores = np.full(len(block.image_ids), np.nan)
    for index, name in parts.items():
        rows = np.flatnonzero(block.owner == index)
        node = block.threads.get(name) if block.thread_names else None
        values = node["scores"] if node is not None else block.design.get("scores") if index == 0 else None
        if values is not None and np.asarray(values).shape == rows.shape:
            scores[rows] = np.asarray(values, dtype=np.float64)
    return scores


def read_session(run_dir: Path | str, *, device: str = "cpu") -> Session:
    """Read a run folder and rebuild every image it showed (see the module docstring).

    Args:
        run_dir: the run folder.
        device: where the generators run (``${device}`` of the recorded config resolves to it).

    Raises:
        RecordError: the folder is no started run, holds no block, or a file is missing or damaged.
        ExportError: the run's experiment has no stimulus reader, or its images cannot be put together.
        LatentoptError: a generator cannot be rebuilt (not installed, weights missing: its own message).
    """
    from latentopt.assembly import Assembly
    from latentopt.checks import ConfigError

    path = Path(run_dir)
    run = load_run(path)
    if not run.generations:
        raise RecordError(f"{path} holds no block yet: nothing to export")
    blocks, times = _read_blocks(run)
    experiment = blocks[0].experiment
    reader, keys_of = _reader(experiment, path)
    config = recorded_config(path, device=device)
    table = Uint8Table(None)
    source = RunSource(run, config, blocks, Assembly(config), table)
    try:
        with torch.no_grad():
            reader(source)
    except ConfigError as err:  # a generator setting this latentopt refuses
        raise RecordError(f"{path}/config.yaml: {err}") from err
    finally:
        source.assembly.close()
    keys = [key for b in blocks for key in keys_of(b)]
    missing = [k for k in keys if k not in table.index]
    if missing:
        raise ExportError(f"{path}: the {experiment} reader rebuilt no image for {missing[0]!r}")
    try:
        responses = np.concatenate([np.asarray(b.responses, dtype=np.float64) for b in blocks])
    except ValueError as err:
        raise RecordError(f"{path}: the blocks' responses differ in shape ({err})") from err
    parts = [_part_names(experiment, b) for b in blocks]
    owner = np.concatenate([b.owner for b in blocks]).astype(np.int64)
    part = [("reference" if o == REFERENCE else p.get(int(o), f"part{o}"))
            for b, p in zip(blocks, parts, strict=True) for o in b.owner.tolist()]
    natural = (owner == REFERENCE) | ((owner == 1) & (experiment in ("natural", "control")))
    image_of = np.array([table.index[k] for k in keys], dtype=np.int64)
    kind = {"natural": "controller", "control": "controller"}.get(experiment, "evolved" if blocks[0].thread_names
                                                                  else DESIGN_PART)
    kinds = [kind] * len(table.keys)
    for k in np.unique(image_of[natural]).tolist():
        kinds[k] = "natural"
    lengths = [len(b.image_ids) for b in blocks]
    start = _session_start(run, float(times[:, 0].min()))
    relative = times - start.timestamp()
    names, areas = channel_table(run.provenance, responses.shape[1] if responses.ndim > 1 else 0)
    edges = next((b.time_bins_ms for b in blocks if b.time_bins_ms is not None), None)
    return Session(
        run=run, config=config, experiment=experiment, blocks=blocks, image_ids=list(table.keys),
        images=table.uint8(), image_kinds=kinds, presentation_ids=[str(i) for b in blocks for i in b.image_ids],
        image_of=image_of, block=np.repeat([b.generation for b in blocks], lengths).astype(np.int64),
        position=np.concatenate([np.arange(n) for n in lengths]).astype(np.int64), owner=owner, part=part,
        natural=natural, responses=responses,
        scores=np.concatenate([_scores(b, p) for b, p in zip(blocks, parts, strict=True)]),
        start_s=np.repeat(relative[:, 0], lengths), stop_s=np.repeat(relative[:, 1], lengths),
        session_start=start, time_bins_ms=edges, channel_names=names, channel_areas=areas,
        thread_names=list(blocks[0].thread_names))
