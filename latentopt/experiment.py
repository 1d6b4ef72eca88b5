"""The Experiment interface: what every experiment (evolution, manifold grid, ...) offers the runner.

An experiment wires a subject to its images, shows them in blocks (:func:`latentopt.blocks.show_block`)
and hands every finished block to a recorder (:class:`latentopt.records.RunWriter`); it does no file
I/O of its own. The runner (:mod:`latentopt.launch`) gives every experiment the same run folder, start
marker, lock, provenance, resume and report. Experiments are registered through the hook
``latentopt_register_experiments`` and built from plain dicts by :mod:`latentopt.assembly`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from latentopt.blocks import noise_rng as noise_rng
from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.optimizer import Optimizer
from latentopt.subject import Subject


class Recorder(Protocol):
    def write_generation(self, generation: int, record: Mapping[str, Any],
                         best_images: Mapping[str, np.ndarray] | None = None) -> None: ...


@dataclass
class Thread:
    """One optimizer thread: its generator, optimizer and objective."""

    name: str
    generator: Generator
    optimizer: Optimizer
    objective: Objective


@dataclass
class GenerationResult:
    """What one block produced (an evolution's generation; a fixed-design experiment's chunk).

    ``thread_scores`` holds per part (thread, or a fixed design's name) the scores of its images;
    ``reference_scores`` the same objective's scores of the natural references.
    """

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
    shown / expected, each part's best and mean score, and seconds spent in the subject (for a
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


class Experiment(ABC):
    """Base class of every experiment.

    Attributes:
        name: the registered name (``experiment.name``); set by the assembly.
        subject: who responds.
        seed: seed of the subject's noise streams (block ``b`` draws ``noise_rng(seed, b)``).
        recorder: receives every finished block (set by the runner).
        on_block: called after every block (progress bar, operator line).
    """

    name: str = "experiment"
    subject: Subject
    seed: int = 0
    recorder: Recorder | None = None
    on_block: Callable[[GenerationResult], None] | None = None

    @abstractmethod
    def total_blocks(self) -> int | None:
        """Blocks the experiment will show in all (None: not known in advance, e.g. an evaluation budget)."""

    @abstractmethod
    def finished(self, block: int) -> bool:
        """Whether the experiment is done once ``block`` blocks are recorded."""

    @abstractmethod
    def step(self, block: int) -> GenerationResult:
        """Show block ``block`` and hand its record to the recorder."""

    def run(self, start_block: int = 0) -> list[GenerationResult]:
        """Show blocks from ``start_block`` until :meth:`finished`."""
        run_dir = getattr(self.recorder, "run_dir", None)  # a RunWriter's folder
        if run_dir is not None:
            self.subject.bind_run(Path(run_dir))
        results = []
        block = start_block
        while not self.finished(block):
            result = self.step(block)
            results.append(result)
            if self.on_block is not None:
                self.on_block(result)
            block += 1
        return results

    def design(self) -> dict[str, Any] | None:
        """A fixed design written once when the run starts (``design.npz``), or None. Default: None."""
        return None

    def matches_design(self, recorded: Mapping[str, Any]) -> bool:
        """Resume: whether the design recorded in ``design.npz`` (``{}``: none) is the one this experiment shows.

        Default: :meth:`design` rebuilt now equals it array for array. An experiment whose design is costly to
        make (a synthesis) may compare what it was made from instead, and adopt the recorded one.
        """
        design = self.design()
        if design is None and not recorded:
            return True
        return design is not None and bool(recorded) and flat_tree(design) == flat_tree(recorded)

    def restore(self, run_dir: Path, blocks_done: int) -> None:
        """Resume: pick up where the recorded ``blocks_done`` blocks left off (e.g. optimizer states).

        Raises :class:`~latentopt.records.RecordError` when the records cannot be continued. Default: nothing.
        """

    @abstractmethod
    def provenance(self) -> dict[str, Any]:
        """What ``provenance.json`` records about the experiment and its components."""

    @abstractmethod
    def report(self, run_dir: Path) -> dict[str, Any]:
        """Write the end-of-run report into ``run_dir`` (figures, ``summary.json``); return the summary."""

    def components(self) -> list[Any]:
        """The generators and subject the experiment holds (closed by :meth:`close`)."""
        return [self.subject]

    def close(self) -> None:
        """Release the components (forward hooks, files). Safe to call twice."""
        seen: set[int] = set()
        for component in self.components():
            if id(component) not in seen:
                seen.add(id(component))
                getattr(component, "close", lambda: None)()


def flat_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A tree of arrays flattened to ``{path: (dtype, shape, bytes or values)}``: equal trees give equal dicts."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flat_tree(value, f"{prefix}{key}/"))
        else:
            array = np.asarray(value)
            out[f"{prefix}{key}"] = (array.dtype.str if array.dtype.kind not in "US" else "str", array.shape,
                                     array.tobytes() if array.dtype.kind not in "US" else tuple(array.ravel().tolist()))
    return out


def __getattr__(name: str) -> Any:
    # latentopt.experiment.Evolution: where the evolution loop lived before experiments were plugins
    if name == "Evolution":
        from latentopt.experiments.evolve import Evolution

        return Evolution
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
