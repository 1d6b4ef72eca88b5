"""Fixed-design experiments: codes fixed when the run starts, shown in a seeded random order, in blocks.

The manifold's sphere grids and the axis tuning's curves are such designs. Each unique image of the design
is shown ``repeats`` times (a fresh permutation of all images per repeat), ``block_size`` presentations per
block, with the natural references, through :func:`latentopt.blocks.show_block`: a rig shows them exactly as
it shows an evolution. Every block records, under ``design``, the unique image ``index`` and ``repeat`` of
each presentation, the objective's ``scores`` and a thumbnail of each image at its first repeat; the design
itself is ``design.npz``, written at the start and compared on resume (:meth:`Experiment.matches_design`).
:func:`read_design_blocks` reads the blocks back into trials per image and repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from latentopt.blocks import REFERENCE, fit_images, show_block
from latentopt.checks import ConfigError
from latentopt.experiment import Experiment, GenerationResult, Recorder
from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.records import RecordError, RunWriter, block_record
from latentopt.run_record import RunRecord, load_run
from latentopt.subject import Subject

THUMBNAIL = 48
"""Side in pixels of the thumbnail of each design image kept in the records (for the montages)."""


class BlockDesign(Protocol):
    """What :class:`FixedDesignExperiment` needs of a design."""

    codes: np.ndarray  # (images, d) float32: the unique images' codes
    image_ids: list[str]  # one id per unique image
    order: np.ndarray  # (presentations, 2) int64: (image, repeat) in the order shown
    block_size: int

    @property
    def blocks(self) -> int: ...

    def to_tree(self) -> dict[str, Any]: ...


def presentation_order(images: int, repeats: int, seed: int) -> np.ndarray:
    """``(images · repeats, 2)`` int64 ``(image, repeat)``: a fresh seeded permutation of the images per repeat."""
    rng = np.random.default_rng([int(seed), 2])  # the presentation order's own stream
    return np.concatenate([np.stack([rng.permutation(images), np.full(images, r)], axis=1)
                           for r in range(repeats)]).astype(np.int64)


class FixedDesignExperiment(Experiment):
    """Show a fixed design to a subject in blocks (with natural references) and record every block.

    Args:
        design: the unique images' codes and their presentation order.
        generator: turns the design's codes into images.
        subject: who responds.
        objective: scores each response (recorded beside the responses).
        seed: seed of the subject's noise streams.
        references: ``(ids, images)`` natural images shown in every ``reference_every``-th block and the last.
        reference_every: period of the references in blocks.
        recorder: receives every block.
        source: what the design came from (recorded in provenance).

    Raises:
        ConfigError: the design's codes do not have the generator's dimension.
    """

    part = "design"
    """The name of the design's images in each block's scores (the operator line)."""

    def __init__(self, design: BlockDesign, generator: Generator, subject: Subject, objective: Objective, *,
                 seed: int = 0, references: tuple[list[str], torch.Tensor] | None = None, reference_every: int = 1,
                 recorder: Recorder | None = None, source: Mapping[str, Any] | None = None) -> None:
        if design.codes.shape[1] != generator.latent_dim:
            raise ConfigError(f"experiment.source: its codes have {design.codes.shape[1]} dimensions but the "
                              f"generator takes {generator.latent_dim}; use the source run's generator")
        self.design_ = design
        self.generator = generator
        self.subject = subject
        self.objective = objective
        self.seed = int(seed)
        self.references = references or ([], torch.zeros(0, 3, 1, 1))
        self.reference_every = int(reference_every)
        self.recorder = recorder
        self.source = dict(source or {})
        self.component_provenance: dict[str, Any] = {}

    def total_blocks(self) -> int:
        return self.design_.blocks

    def finished(self, block: int) -> bool:
        return block >= self.design_.blocks

    def design(self) -> dict[str, Any]:
        return self.design_.to_tree()

    def step(self, block: int) -> GenerationResult:
        """Show block ``block`` of the design and record it."""
        t0 = time.perf_counter()
        d = self.design_
        chunk = d.order[block * d.block_size:(block + 1) * d.block_size]
        index, repeat = chunk[:, 0], chunk[:, 1]
        ids = [f"{d.image_ids[u]}_r{r}" for u, r in zip(index.tolist(), repeat.tolist(), strict=True)]
        images = self.generator.generate(d.codes[index])
        t_gen = time.perf_counter()
        ref_ids, ref_images = self.references
        due = block % self.reference_every == 0 or block == d.blocks - 1
        shown = show_block(self.subject, block, [(ids, images)], size=self.generator.image_size, seed=self.seed,
                           references=(ref_ids, ref_images) if ref_ids and due else None)
        bins = self.subject.time_bins_ms
        scores = np.asarray(self.objective.score(shown.responses, time_bins_ms=bins), dtype=np.float64)
        first = np.flatnonzero(repeat == 0)
        thumbnails = fit_images(shown.images[first], (THUMBNAIL, THUMBNAIL))
        design = {"index": index, "repeat": repeat, "scores": scores[shown.owner == 0],
                  "thumbnail_index": index[first],
                  "thumbnails": (np.clip(thumbnails.permute(0, 2, 3, 1).numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)}
        timings = {"generator_s": t_gen - t0, "subject_s": shown.subject_s}
        if self.recorder is not None:
            self.recorder.write_generation(block, block_record(shown, experiment=self.name, timings=timings,
                                                               design=design, time_bins_ms=self.subject.time_bins_ms))
        timings["total_s"] = time.perf_counter() - t0
        return GenerationResult(block, shown.image_ids, shown.owner, shown.responses,
                                {self.part: scores[shown.owner == 0]}, {self.part: scores[shown.owner == REFERENCE]},
                                timings)

    def described(self, component: Any, key: str) -> dict[str, Any]:
        """A component's provenance with its registry name and distribution."""
        return {**component.provenance(), **self.component_provenance.get(key, {})}

    def components(self) -> list[Any]:
        return [self.generator, self.subject]


@dataclass
class DesignTrials:
    """The recorded blocks of a fixed-design run, per unique image and repeat.

    Attributes:
        trials: ``(images, repeats, channels[, time_bins])`` responses; NaN where a presentation was not shown
            (aborted trial, or the run stopped early).
        trial_scores: ``(images, repeats)`` the run's objective on each trial (NaN likewise).
        thumbnails: ``(images, 48, 48, 3)`` uint8 of the images as shown (white where none was shown).
        reference_ids, reference_responses: the natural references and ``(blocks, references, channels[, bins])``.
        time_bins_ms: the bin edges the blocks recorded (None when responses are not time-binned).
    """

    trials: np.ndarray
    trial_scores: np.ndarray
    thumbnails: np.ndarray
    reference_ids: list[str]
    reference_responses: np.ndarray
    time_bins_ms: np.ndarray | None


def read_design_blocks(run: RunRecord, images: int, repeats: int, *, experiment: str) -> DesignTrials:
    """Read every recorded block of a fixed-design run into trials per unique image and repeat.

    Raises:
        RecordError: a block is damaged or not a block of this design (the message names its file).
    """
    trials: np.ndarray | None = None
    scores = np.full((images, repeats), np.nan)
    thumbnails = np.full((images, THUMBNAIL, THUMBNAIL, 3), 255, dtype=np.uint8)
    reference_ids: list[str] = []
    references = []
    bins = None
    for g in range(run.generations):
        block = run.block(g)
        try:
            index, repeat = np.asarray(block.design["index"]), np.asarray(block.design["repeat"])
            mine = block.owner == 0
            if trials is None:
                trials = np.full((images, repeats, *block.responses.shape[1:]), np.nan)
            trials[index, repeat] = block.responses[mine]
            scores[index, repeat] = block.design["scores"]
            thumbnails[np.asarray(block.design["thumbnail_index"])] = block.design["thumbnails"]
        except (KeyError, IndexError, ValueError) as err:
            raise RecordError(f"{run.path}/generations/gen_{g:05d}.npz is damaged or not a {experiment} block: "
                              f"{' '.join(str(err).split())}") from err
        if bins is None and block.time_bins_ms is not None:  # a rig learns its bins from its files
            bins = np.asarray(block.time_bins_ms)
        refs = block.owner == REFERENCE
        if refs.any() and not reference_ids:
            reference_ids = [str(i) for i in block.image_ids[refs]]
        references.append(block.responses[refs])
    if trials is None:
        trials = np.full((images, repeats, 0), np.nan)
    trailing = trials.shape[2:]
    reference_responses = np.full((run.generations, len(reference_ids), *trailing), np.nan)
    for g, values in enumerate(references):
        if len(values) == len(reference_ids) and len(values):
            reference_responses[g] = values
    return DesignTrials(trials, scores, thumbnails, reference_ids, reference_responses, bins)


class RecordedDesign(Protocol):
    """What :func:`read_design_run` needs of a design read back from ``design.npz``."""

    image_ids: list[str]
    order: np.ndarray
    time_bins_ms: np.ndarray


DesignT = TypeVar("DesignT", bound=RecordedDesign)


def read_design_run(path: Path | str, experiment: str, from_tree: Callable[[dict[str, Any]], DesignT], *,
                    holds: Callable[[dict[str, Any]], bool] = lambda tree: True,
                    absent: str = "") -> tuple[RunRecord, DesignT, DesignTrials]:
    """A fixed-design run folder read back: its run, its design (``from_tree`` of ``design.npz``; a rig's
    time bins, learned from its files, filled in) and its blocks as trials (:func:`read_design_blocks`).

    Args:
        holds: whether a design tree is one of this experiment's (beside the run's recorded name).
        absent: appended to the "holds no ... run" message.

    Raises:
        RecordError: the folder holds no ``experiment`` run, or a file is damaged (the message names it).
    """
    run = load_run(path)
    tree = RunWriter(run.path).read_design()
    if not tree or not holds(tree) or (run.experiment != experiment and run.generations):
        raise RecordError(f"{run.path} holds no {experiment} run (experiment {run.experiment!r}{absent})")
    try:
        design = from_tree(tree)
    except (KeyError, TypeError, ValueError) as err:
        raise RecordError(f"{run.path}/design.npz is damaged: {' '.join(str(err).split())}") from err
    images, repeats = len(design.image_ids), int(design.order[:, 1].max()) + 1
    read = read_design_blocks(run, images, repeats, experiment=experiment)
    if not len(design.time_bins_ms) and read.time_bins_ms is not None:  # a rig learns its bins from its files
        design.time_bins_ms = read.time_bins_ms
    return run, design, read


def nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """The mean over ``axis`` of the finite values (NaN where there is none), without numpy's warning."""
    finite = np.isfinite(values)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    count = finite.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def trial_values(trials: np.ndarray, trial_scores: np.ndarray, time_bins_ms: np.ndarray,
                 channel: int | None) -> np.ndarray:
    """``(images, repeats)`` what is analysed: the run's objective scores, or one channel's (evoked) response.

    Args:
        trials: ``(images, repeats, channels[, time_bins])`` responses.
        trial_scores: ``(images, repeats)`` the objective's scores.
        time_bins_ms: the bin edges (empty: the mean over bins is used for time-binned responses).
        channel: None for the scores, else the channel.

    Raises:
        RecordError: ``channel`` is not one of the recorded channels.
    """
    if channel is None:
        return trial_scores
    if trials.ndim < 3 or not 0 <= channel < trials.shape[2]:
        channels = trials.shape[2] if trials.ndim >= 3 else 0
        raise RecordError(f"channel {channel}: the run recorded {channels} channel(s)")
    values = trials[:, :, channel]
    if values.ndim == 3:  # time-binned: the evoked response (Wang & Ponce: 50-200 ms minus 0-45 ms)
        from latentopt.objective import evoked_response

        flat = values.reshape(-1, 1, values.shape[-1])
        values = (evoked_response(flat, time_bins_ms) if len(time_bins_ms) else flat.mean(2)).reshape(values.shape[:2])
    return values
