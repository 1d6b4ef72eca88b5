"""The evolution loop: codes -> images -> responses -> scores -> codes, one block per generation.

A block holds the images of every thread (each its own generator, optimizer and objective; one by
default) and, optionally, natural reference images. The subject sees the whole block; each response
goes back to the thread that made the image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.blocks import REFERENCE, ShownBlock, fit_images, show_block
from latentopt.experiment import Experiment, GenerationResult, Recorder, Thread
from latentopt.records import block_record, to_uint8_image
from latentopt.subject import Subject


class Evolution(Experiment):
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

    name = "evolve"

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
        self.on_block = on_generation
        self.block_size = max(t.generator.image_size for t in self.threads)
        self.component_provenance: dict[str, Any] = {}
        for thread in self.threads:
            if thread.optimizer.needs_white_box:
                thread.optimizer.attach_white_box(self._white_box(thread))
            planned = planned_generations(thread.optimizer, self.generations, budget)
            if planned is not None:
                thread.optimizer.plan_generations(planned)

    @property
    def on_generation(self) -> Callable[[GenerationResult], None] | None:
        return self.on_block

    @on_generation.setter
    def on_generation(self, callback: Callable[[GenerationResult], None] | None) -> None:
        self.on_block = callback

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
            return objective.score(subject.respond_torch(fit_images(generator.generate(codes), self.block_size)))

        return scores

    def total_blocks(self) -> int | None:
        return self.generations if self.budget is None else None

    def finished(self, block: int) -> bool:
        if self.budget is not None:
            return self.threads[0].optimizer.evaluations >= self.budget
        return block >= self.generations

    def _show_references(self, generation: int) -> bool:
        last = self.budget is None and generation == self.generations - 1
        return generation % self.reference_every == 0 or last

    def step(self, generation: int) -> GenerationResult:
        """Run one generation: ask every thread, show the block, tell every thread, record."""
        t0 = time.perf_counter()
        codes = {thread.name: thread.optimizer.ask() for thread in self.threads}
        t_ask = time.perf_counter()
        parts = []
        for thread in self.threads:
            batch = thread.generator.generate(codes[thread.name])
            parts.append(([f"g{generation:05d}_{thread.name}_{k:03d}" for k in range(batch.shape[0])], batch))
        t_gen = time.perf_counter()
        ref_ids, ref_images = self.references
        shown = show_block(self.subject, generation, parts, size=self.block_size, seed=self.seed,
                           references=(ref_ids, ref_images) if ref_ids and self._show_references(generation)
                           else None)
        records, best_images, tell_s = self._tell(shown, codes)
        # ask + tell only: scoring, state snapshots and writing are in total_s
        timings = {"optimizer_s": (t_ask - t0) + tell_s, "generator_s": t_gen - t_ask, "subject_s": shown.subject_s}
        result = GenerationResult(generation, shown.image_ids, shown.owner, shown.responses,
                                  {name: node["scores"] for name, node in records.items()},
                                  {name: node["reference_scores"] for name, node in records.items()}, timings)
        if self.recorder is not None:
            record = block_record(shown, experiment=self.name, timings=timings, threads=records,
                                  time_bins_ms=self.subject.time_bins_ms)
            self.recorder.write_generation(generation, record, best_images)
        result.timings["total_s"] = time.perf_counter() - t0
        return result

    def _tell(self, shown: ShownBlock, codes: dict[str, np.ndarray]) -> tuple[dict[str, dict[str, Any]],
                                                                              dict[str, np.ndarray], float]:
        """Score each thread's images and the references, tell each optimizer; the threads' records."""
        bins = self.subject.time_bins_ms
        records: dict[str, dict[str, Any]] = {}
        best_images: dict[str, np.ndarray] = {}
        tell_s = 0.0
        references = shown.responses[shown.of(REFERENCE)]
        for index, thread in enumerate(self.threads):
            mine = shown.of(index)
            scores = np.asarray(thread.objective.score(shown.responses[mine], time_bins_ms=bins), dtype=np.float64)
            reference_scores = np.asarray(thread.objective.score(references, time_bins_ms=bins),
                                          dtype=np.float64).reshape(-1)
            t_tell = time.perf_counter()
            thread.optimizer.tell(codes[thread.name], scores)
            tell_s += time.perf_counter() - t_tell
            records[thread.name] = {"codes": codes[thread.name], "scores": scores,
                                    "reference_scores": reference_scores, "state": thread.optimizer.state_dict()}
            if np.isfinite(scores).any():
                best_images[thread.name] = to_uint8_image(shown.images[mine[int(np.nanargmax(scores))]])
        return records, best_images, tell_s

    def restore(self, run_dir: Path, blocks_done: int) -> None:
        """Load each thread's optimizer state from the last recorded generation."""
        from latentopt.optimizer import OptimizerError
        from latentopt.records import RecordError, load_generation

        if not blocks_done:
            return
        last = load_generation(run_dir, blocks_done - 1)
        path = f"{run_dir}/generations/gen_{blocks_done - 1:05d}.npz"
        for thread in self.threads:
            try:
                state = last["threads"][thread.name]["state"]
            except (KeyError, TypeError) as err:
                raise RecordError(f"{path} holds no optimizer state of thread {thread.name!r}") from err
            try:
                thread.optimizer.load_state_dict(state)
            except OptimizerError as err:
                raise OptimizerError(f"{path}, thread {thread.name}: {err}") from err

    def provenance(self) -> dict[str, Any]:
        first = self.threads[0]
        names = self.component_provenance  # registry name and distribution, when built by the assembly

        def described(component: Any, key: str) -> dict[str, Any]:
            return {**component.provenance(), **names.get(key, {})}

        return {
            "experiment": {"name": self.name, "generations": self.generations, "budget": self.budget,
                           **names.get("experiment", {})},
            "generator": described(first.generator, f"{first.name}.generator"),
            "subject": described(self.subject, "subject"),
            "objective": described(first.objective, f"{first.name}.objective"),
            "optimizer": described(first.optimizer, f"{first.name}.optimizer"),
            "threads": {t.name: {group: described(getattr(t, group), f"{t.name}.{group}")
                                 for group in ("generator", "objective", "optimizer")} for t in self.threads},
        }

    def report(self, run_dir: Path) -> dict[str, Any]:
        from latentopt.report import write_report

        return write_report(run_dir)

    def components(self) -> list[Any]:
        return [*{id(t.generator): t.generator for t in self.threads}.values(), self.subject]


MAX_GENERATIONS = 10**6
MAX_BUDGET = 10**9


def planned_generations(optimizer: Any, generations: int, budget: int | None) -> int | None:
    """Generations a run means to ask of ``optimizer``: ``generations``, or ``ceil(budget / λ)`` with a
    budget (None when the optimizer has no fixed ``population_size``)."""
    if budget is None:
        return generations
    size = getattr(optimizer, "population_size", None)
    return -(-int(budget) // int(size)) if isinstance(size, int) and size > 0 else None


def evolution_from_config(config: dict[str, Any], assembly: Any, *, kind: type[Evolution] = Evolution) -> Evolution:
    """The ``evolve`` experiment of a plain config (``experiment.generations``, ``budget``, ``references``,
    ``reference_every``, ``threads``); components come from ``assembly``; ``kind``: an Evolution subclass."""
    from latentopt.checks import ConfigError, integer

    exp = config["experiment"]
    generations = integer(exp.get("generations", 30), "experiment.generations", minimum=1, maximum=MAX_GENERATIONS)
    budget = exp.get("budget")
    if budget is not None:
        budget = integer(budget, "experiment.budget", minimum=1, maximum=MAX_BUDGET)
    reference_every = integer(exp.get("reference_every", 1), "experiment.reference_every", minimum=1,
                              maximum=MAX_GENERATIONS)
    subject = assembly.subject()
    threads = assembly.threads(subject.n_channels)
    references = assembly.references(max(t.generator.image_size for t in threads))
    try:
        return kind(threads, subject, seed=assembly.seed, generations=generations, budget=budget,
                    references=references, reference_every=reference_every)
    except ValueError as err:  # a white-box optimizer with a subject that is not differentiable
        raise ConfigError(str(err)) from err
