"""Fault drills: a tiny session (32-px Fourier images, analytic Gabor cell, diagonal CMA-ES) on the
rig subject against the rig simulator running in a thread, with one fault, then an audit of the
run records against what the simulator delivered. Used by the fault-matrix test and
``benchmarks/rig_fault_matrix.py``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.assembly import thread_code_seed, thread_optimizer_seed
from latentopt.builtins.generators import FourierGenerator
from latentopt.builtins.objectives import SingleUnit
from latentopt.builtins.optimizers import PycmaES
from latentopt.builtins.subjects import GaborV1Subject
from latentopt.experiment import Thread
from latentopt.experiments.evolve import Evolution
from latentopt.records import RunWriter, load_generation
from latentopt.references import load_references
from latentopt_rig.simulator import Fault, RigSimulator, SimEvent, SimSettings, serve
from latentopt_rig.subject import RigSubject

FAST_WAIT: dict[str, Any] = {"poll_s": 0.01, "settle_s": 0.03, "corrupt_after_s": 0.4, "timeout_s": 20.0,
                             "message_every_s": 5.0}


def tiny_threads(names: Sequence[str] = ("main",), *, population_size: int = 8, seed: int = 0) -> list[Thread]:
    """Threads with 32-px Fourier generators (d = 90) and diagonal CMA-ES on channel 0, seeded as
    :mod:`latentopt.assembly` seeds every run's threads."""
    threads = []
    for k, name in enumerate(names):
        generator = FourierGenerator(image_size=32, max_frequency=2, device="cpu")
        initial = generator.initial_codes(population_size, rng=np.random.default_rng(thread_code_seed(seed, k)))
        optimizer = PycmaES(initial, seed=thread_optimizer_seed(seed, k), sigma0=1.0, diagonal=True)
        threads.append(Thread(name, generator, optimizer, SingleUnit(channel=0)))
    return threads


def rig_evolution(run_dir: Path, exchange: Path, *, generations: int = 3, names: Sequence[str] = ("main",),
                  references: bool = True, start: bool = True, seed: int = 0, **subject_kwargs: Any) -> Evolution:
    """An evolution of :func:`tiny_threads` (seeded by ``seed``) on a :class:`RigSubject`, recorded in ``run_dir``."""
    subject = RigSubject(exchange=exchange, **{**FAST_WAIT, **subject_kwargs})
    refs = load_references(["camera", "coffee"], (32, 32)) if references else None
    writer = RunWriter(run_dir)
    if start:
        writer.start(config_yaml="drill: rig\n", provenance={"drill": True})
    return Evolution(tiny_threads(names, seed=seed), subject, seed=seed, generations=generations, references=refs,
                     recorder=writer)


class SimThread:
    """The rig simulator answering in a background thread (restarts handled by ``serve``)."""

    def __init__(self, exchange: Path, *, faults: Sequence[str] = (), **settings: Any) -> None:
        self.stop = threading.Event()
        self.events: list[SimEvent] = []
        self.messages: list[str] = []
        self.settings = SimSettings(**{"delay_s": 0.3, "slow_pause_s": 0.1, "slow_pieces": 3, **settings})
        self.faults = [Fault.parse(f) for f in faults]
        self.error: BaseException | None = None

        def make(crashed: set[str], events: list[SimEvent]) -> RigSimulator:
            return RigSimulator(exchange, GaborV1Subject(device="cpu"), self.settings, faults=self.faults,
                                crashed=crashed, events=events, say=self.messages.append)

        def run() -> None:
            try:
                serve(make, poll_s=0.01, should_stop=self.stop.is_set, restart_pause_s=0.05, events=self.events)
            except BaseException as err:  # re-raised by close()
                self.error = err

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        if self.error is not None:
            raise self.error


@dataclass
class Audit:
    """Every image of a run checked against what the simulator delivered."""

    images: int = 0
    recorded: int = 0  # finite response equal to the mean of the delivered trials
    not_shown: int = 0  # NaN and listed as not shown in the record (the stated policy)
    lost: int = 0  # delivered in a usable file but NaN or different in the record, or NaN and unlisted
    duplicated: int = 0  # an id twice in one block's record
    requeued: int = 0
    unknown_logged: int = 0
    files_archived: int = 0
    files_written: int = 0


def audit(run_dir: Path, events: Sequence[SimEvent], generations: int) -> Audit:
    """Compare the run records with the simulator's ground truth."""
    result = Audit()
    delivered: dict[tuple[int, str], list[list[float]]] = {}
    for event in events:
        if event.usable:
            for image_id, trials in event.delivered.items():
                delivered.setdefault((event.generation, image_id), trials)
    written = {e.file for e in events}
    result.files_written = len(written)
    for g in range(generations):
        record = load_generation(run_dir, g)
        extras = record.get("subject", {})
        ids = [str(i) for i in record["block"]["image_ids"]]
        responses = record["block"]["responses"]
        not_shown = {str(i) for i in extras.get("not_shown", [])}
        result.duplicated += len(ids) - len(set(ids))
        result.requeued += len(extras.get("requeued", []))
        result.unknown_logged += len(extras.get("unknown_ids", []))
        result.files_archived += sum(1 for name in extras.get("files", {}) if name in written)
        for image_id, response in zip(ids, responses, strict=True):
            result.images += 1
            shown = delivered.get((g, image_id))
            if shown is not None:
                expected = np.mean(np.asarray(shown), axis=0)
                if np.allclose(response, expected, equal_nan=True):
                    result.recorded += 1
                else:
                    result.lost += 1
            elif not np.isfinite(response).any() and image_id in not_shown:
                result.not_shown += 1
            else:
                result.lost += 1
    return result


def run_drill(kind: str, root: Path, *, generations: int = 3, protocol: str = "xdream", fmt: str = "mat73",
              fault_blocks: str = "1", **subject_kwargs: Any) -> tuple[Audit, int, list[SimEvent]]:
    """Run one session with fault ``kind`` on ``fault_blocks``; return (audit, crashes, simulator events)."""
    exchange, run_dir = root / f"exchange_{kind}", root / f"run_{kind}"
    sim = SimThread(exchange, faults=[f"{kind}@{fault_blocks}"] if kind != "none" else [], protocol=protocol,
                    fmt=fmt)
    crashes = 0
    try:
        rig_evolution(run_dir, exchange, generations=generations, protocol=protocol, **subject_kwargs).run()
    except Exception:
        crashes += 1
    finally:
        sim.close()
    return audit(run_dir, sim.events, generations), crashes, sim.events
