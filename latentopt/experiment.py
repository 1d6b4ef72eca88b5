"""The evolution loop: codes -> images -> responses -> scores -> codes, one block per generation.

A block holds the images of every thread (each its own generator, optimizer and objective; one by
default) and, optionally, natural reference images. The subject sees the whole block; each response
goes back to the thread that made the image. The loop does no file I/O: it hands each finished
generation to a recorder (``latentopt.records.RunWriter``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.optimizer import Optimizer
from latentopt.records import to_uint8_image
from latentopt.subject import Subject


class Recorder(Protocol):
    def write_generation(self, generation: int, record: dict[str, Any],
                         best_images: dict[str, np.ndarray] | None = None) -> None: ...


@dataclass
class Thread:
    """One optimizer thread: its generator, optimizer and objective."""

    name: str
    generator: Generator
    optimizer: Optimizer
    objective: Objective


@dataclass
class GenerationResult:
    """What one generation produced (also what is recorded)."""

    generation: int
    image_ids: list[str]
    thread_index: np.ndarray
    responses: np.ndarray
    thread_scores: dict[str, np.ndarray]
    reference_scores: dict[str, np.ndarray]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def images_shown(self) -> int:
        """Images with at least one finite response (the others were not shown)."""
        flat = self.responses.reshape(self.responses.shape[0], -1)
        return int(np.isfinite(flat).any(axis=1).sum())


def operator_line(result: GenerationResult) -> str:
    """One line per block for the operator at the rig.

    ``block 5 | shown 44/44 | main best 12.3 mean 8.1 | waited 3.2 s``: block number, images
    shown / expected, each thread's best and mean score, and seconds spent in the subject (for a
    rig: waiting for the response file).
    """
    parts = [f"block {result.generation}", f"shown {result.images_shown}/{len(result.image_ids)}"]
    for name, scores in result.thread_scores.items():
        if np.isfinite(scores).any():
            parts.append(f"{name} best {np.nanmax(scores):.4g} mean {np.nanmean(scores):.4g}")
        else:
            parts.append(f"{name} no scores")
    parts.append(f"waited {result.timings.get('subject_s', float('nan')):.1f} s")
    return " | ".join(parts)


def noise_rng(seed: int, generation: int) -> np.random.Generator:
    """The subject's noise stream for one generation (resumed runs draw the same noise)."""
    return np.random.default_rng([int(seed), int(generation), 7919])


class Evolution:
    """Closed-loop evolution of images for a subject.

    Args:
        threads: the optimizer threads sharing each block.
        subject: who responds to the images.
        seed: seed of the subject's noise streams.
        generations: number of generations (blocks) to run in all.
        budget: alternatively, stop once the first thread has used this many evaluations.
        references: ``(ids, images (r, 3, H, W))`` natural images shown in every
            ``reference_every``-th block (and the first and last).
        reference_every: period of the reference images in blocks.
        recorder: receives every finished generation.
        on_generation: called after every generation (progress display).
    """

    def __init__(
        self,
        threads: Sequence[Thread],
        subject: Subject,
        *,
        seed: int = 0,
        generations: int = 30,
        budget: int | None = None,
        references: tuple[list[str], torch.Tensor] | None = None,
        reference_every: int = 1,
        recorder: Recorder | None = None,
        on_generation: Callable[[GenerationResult], None] | None = None,
    ) -> None:
        if not threads:
            raise ValueError("an evolution needs at least one thread")
        names = [t.name for t in threads]
        if len(set(names)) != len(names):
            raise ValueError(f"thread names must be unique, got {names}")
        if generations < 1 and budget is None:
            raise ValueError(f"experiment.generations must be >= 1, got {generations}")
        if budget is not None and budget < 1:
            raise ValueError(f"experiment.budget must be >= 1, got {budget}")
        if reference_every < 1:
            raise ValueError(f"experiment.reference_every must be >= 1, got {reference_every}")
        self.threads = list(threads)
        self.subject = subject
        self.seed = int(seed)
        self.generations = int(generations)
        self.budget = budget
        self.references = references or ([], torch.zeros(0, 3, 1, 1))
        self.reference_every = int(reference_every)
        self.recorder = recorder
        self.on_generation = on_generation
        self.block_size = max(t.generator.image_size for t in self.threads)
        for thread in self.threads:
            if thread.optimizer.needs_white_box:
                thread.optimizer.attach_white_box(self._white_box(thread))

    def _white_box(self, thread: Thread) -> Callable[[torch.Tensor], torch.Tensor]:
        """Noise-free, differentiable codes -> scores of one thread: the images it would show, fitted
        to the block as in :meth:`step`, through the subject's ``respond_torch`` and the objective."""
        generator, objective, subject = thread.generator, thread.objective, self.subject
        if not (generator.differentiable and subject.differentiable):
            raise ValueError(
                f"optimizer {type(thread.optimizer).__name__} (thread {thread.name}) needs a differentiable "
                f"generator and subject; {type(generator).__name__} differentiable={generator.differentiable}, "
                f"{type(subject).__name__} differentiable={subject.differentiable}"
            )

        def scores(codes: torch.Tensor) -> torch.Tensor:
            return objective.score(subject.respond_torch(self._fit(generator.generate(codes))))

        return scores

    def finished(self, generation: int) -> bool:
        if self.budget is not None:
            return self.threads[0].optimizer.evaluations >= self.budget
        return generation >= self.generations

    def _show_references(self, generation: int) -> bool:
        last = self.budget is None and generation == self.generations - 1
        return generation % self.reference_every == 0 or last

    def _fit(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) == self.block_size:
            return images
        return F.interpolate(images.float(), size=self.block_size, mode="bilinear", antialias=True,
                             align_corners=False)

    def step(self, generation: int) -> GenerationResult:
        """Run one generation: ask every thread, show the block, tell every thread, record."""
        t0 = time.perf_counter()
        codes, images, ids, owner = {}, [], [], []
        for thread in self.threads:
            codes[thread.name] = thread.optimizer.ask()
        t_ask = time.perf_counter()
        for index, thread in enumerate(self.threads):
            batch = thread.generator.generate(codes[thread.name])
            images.append(self._fit(batch).cpu())
            ids += [f"g{generation:05d}_{thread.name}_{k:03d}" for k in range(batch.shape[0])]
            owner += [index] * batch.shape[0]
        ref_ids, ref_images = self.references
        if ref_ids and self._show_references(generation):
            images.append(self._fit(ref_images))
            ids += list(ref_ids)
            owner += [-1] * len(ref_ids)
        block = torch.cat(images)
        t_gen = time.perf_counter()
        self.subject.start_block(generation)
        responses = np.asarray(self.subject.respond(block, image_ids=ids, rng=noise_rng(self.seed, generation)))
        if responses.shape[0] != len(ids):
            raise RuntimeError(f"the subject returned {responses.shape[0]} responses for {len(ids)} images")
        extras = self.subject.block_extras()
        t_subject = time.perf_counter()
        bins = self.subject.time_bins_ms
        owner_arr = np.asarray(owner, dtype=np.int16)
        scores, ref_scores, states, best_images = {}, {}, {}, {}
        tell_s = 0.0
        for index, thread in enumerate(self.threads):
            mine = owner_arr == index
            s = np.asarray(thread.objective.score(responses[mine], time_bins_ms=bins), dtype=np.float64)
            scores[thread.name] = s
            ref_scores[thread.name] = np.asarray(
                thread.objective.score(responses[owner_arr == -1], time_bins_ms=bins), dtype=np.float64
            ).reshape(-1)
            t_tell = time.perf_counter()
            thread.optimizer.tell(codes[thread.name], s)
            tell_s += time.perf_counter() - t_tell
            states[thread.name] = thread.optimizer.state_dict()
            if np.isfinite(s).any():
                best_images[thread.name] = to_uint8_image(block[np.flatnonzero(mine)[int(np.nanargmax(s))]])
        # ask + tell only: scoring, state snapshots and writing are in total_s
        timings = {"optimizer_s": (t_ask - t0) + tell_s, "generator_s": t_gen - t_ask, "subject_s": t_subject - t_gen}
        result = GenerationResult(generation, ids, owner_arr, responses, scores, ref_scores, timings)
        if self.recorder is not None:
            record = {
                "meta": {"generation": generation, "thread_names": [t.name for t in self.threads],
                         "timings": timings, "time": time.time()},
                "block": {"image_ids": np.asarray(ids), "thread": owner_arr, "responses": responses},
                "threads": {t.name: {"codes": codes[t.name], "scores": scores[t.name],
                                     "reference_scores": ref_scores[t.name], "state": states[t.name]}
                            for t in self.threads},
            }
            if extras:
                record["subject"] = extras
            self.recorder.write_generation(generation, record, best_images)
        result.timings["total_s"] = time.perf_counter() - t0
        if self.on_generation is not None:
            self.on_generation(result)
        return result

    def run(self, start_generation: int = 0) -> list[GenerationResult]:
        """Run from ``start_generation`` until the generations or the budget are used up."""
        results = []
        generation = start_generation
        run_dir = getattr(self.recorder, "run_dir", None)  # a RunWriter's folder
        if run_dir is not None:
            self.subject.bind_run(Path(run_dir))
        while not self.finished(generation):
            results.append(self.step(generation))
            generation += 1
        return results
