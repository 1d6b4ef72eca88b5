"""The rig simulator: plays the stimulus computer and the recording system, with faults on demand.

It watches the exchange folder for block manifests, loads the block's images, computes each
image's drive with any simulated subject from the registry (``gabor_v1``, ``cnn_unit`` ...), turns
it into Poisson spike trains in time bins (baseline rate before the response latency, baseline +
``rate_gain`` x drive after it), and writes the response file of the protocol: XDream's
``block{NNN}.mat`` (MATLAB v7.3 or v5) or a native ``.h5``/``.npz``/``.csv``/``.mat``, with evoked
rates (response window minus baseline, spikes/s) or the raw PSTH. Like MATLAB's ``save`` it writes
the file in place, not by rename.

It echoes each image's name as the protocol asks (docs/rig.md): XDream's ``stimulusID`` is the
image file name without ``.png``, the native protocol's id is the manifest's ``stimulus_id``; both
carry the session id, which is how latentopt tells this session's responses from another's.

Faults (each on chosen generations, first showing only, so re-queued blocks come back clean):
``delay`` (answer late), ``missing`` (drop the trials of some images), ``repeated`` (extra
trials), ``truncated`` (file cut short), ``corrupt`` (garbage bytes), ``unknown`` (trials with ids
not in the manifest, including a path), ``nan`` (NaN responses), ``slow`` (file written in
pieces with pauses), ``restart`` (the simulator dies before answering and starts afresh).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.checks import ConfigError
from latentopt.responses import BASELINE_WINDOW_MS, RESPONSE_WINDOW_MS, evoked_response
from latentopt.subject import Subject
from latentopt_rig.exchange import read_manifest
from latentopt_rig.formats import FORMAT_SUFFIX, RESPONSE_SUFFIXES, TrialResponses, encode_responses

FAULT_KINDS = ("delay", "missing", "repeated", "truncated", "corrupt", "unknown", "nan", "slow", "restart")
UNUSABLE_FAULTS = ("truncated", "corrupt")


class SimulatedRestart(Exception):
    """The simulator 'crashes' (fault ``restart``); its supervisor starts a fresh one.

    Control flow inside the simulator, caught by :func:`serve`: not a ``LatentoptError``."""


@dataclass(frozen=True)
class Fault:
    """A fault on the first showing (first block) of some generations (``blocks=None``: every one)."""

    kind: str
    blocks: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"--fault: unknown fault {self.kind!r}; faults are {', '.join(FAULT_KINDS)}")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``"missing@1,3"`` (generations 1 and 3), ``"delay@all"`` or ``"nan"`` (every generation)."""
        kind, _, where = text.partition("@")
        if where in ("", "all"):
            return cls(kind.strip())
        try:
            blocks = frozenset(int(b) for b in where.split(","))
        except ValueError:
            raise ConfigError(f"--fault {text}: generations are 'all' or integers separated by commas") from None
        return cls(kind.strip(), blocks)

    def applies(self, generation: int, attempt: int) -> bool:
        return attempt == 0 and (self.blocks is None or generation in self.blocks)


@dataclass
class SimSettings:
    """How the simulated rig behaves (times in s unless ``_ms``)."""

    protocol: str = "xdream"
    fmt: str = "mat73"
    psth: bool = False
    bin_ms: float = 10.0
    duration_ms: float = 250.0
    latency_ms: float = 50.0
    baseline_hz: float = 5.0
    rate_gain: float = 10.0
    repeats: int = 1
    poisson: bool = True  # False: expected counts, no trial-to-trial noise (contract tests)
    seed: int = 0
    show_s: float = 0.0
    delay_s: float = 1.0
    missing_fraction: float = 0.25
    slow_pieces: int = 4
    slow_pause_s: float = 0.3
    response_window_ms: tuple[float, float] = RESPONSE_WINDOW_MS
    baseline_window_ms: tuple[float, float] = BASELINE_WINDOW_MS

    def __post_init__(self) -> None:
        if self.protocol not in ("xdream", "native"):
            raise ConfigError(f"--protocol must be xdream or native, got {self.protocol!r}")
        if self.fmt not in FORMAT_SUFFIX or (self.protocol == "xdream" and FORMAT_SUFFIX[self.fmt] != ".mat"):
            raise ConfigError(f"--format: format {self.fmt!r} does not fit protocol {self.protocol} "
                              "(xdream: mat73 | mat5; native: h5 | npz | csv | mat73 | mat5)")

    @property
    def bin_edges_ms(self) -> np.ndarray:
        return np.arange(0.0, self.duration_ms + self.bin_ms / 2, self.bin_ms)


@dataclass
class SimEvent:
    """What the simulator did for one block label (the ground truth of the fault tests)."""

    label: str
    generation: int
    faults: list[str]
    file: str
    usable: bool
    delivered: dict[str, list[list[float]]] = field(default_factory=dict)  # image id -> finite evoked trials
    unknown_ids: list[str] = field(default_factory=list)
    complete_at: float = 0.0


class RigSimulator:
    """One simulated stimulus computer + recording system on an exchange folder.

    Args:
        exchange: the folder shared with latentopt.
        subject: the simulated neuron(s); its channels are the rig's channels.
        settings: protocol, format, spiking and fault parameters.
        faults: faults to inject.
        crashed: labels on which a ``restart`` fault already fired (kept by the supervisor).
        events: where to append a :class:`SimEvent` per answered block (kept by the supervisor).
        say: operator messages.
    """

    def __init__(self, exchange: str | Path, subject: Subject, settings: SimSettings, *,
                 faults: Sequence[Fault] = (), crashed: set[str] | None = None,
                 events: list[SimEvent] | None = None, say: Callable[[str], None] = print) -> None:
        self.exchange = Path(exchange)
        self.subject, self.settings, self.faults = subject, settings, list(faults)
        self.crashed = crashed if crashed is not None else set()
        self.events = events if events is not None else []
        self.say = say

    def pending(self) -> list[Path]:
        """Manifests whose block has no response file yet, oldest block first."""
        out = []
        for path in sorted(self.exchange.glob("block*.manifest.json")):
            label = path.name[len("block") : -len(".manifest.json")]
            if not any((self.exchange / f"block{label}{s}").exists() for s in RESPONSE_SUFFIXES):
                out.append(path)
        return out

    def poll_once(self) -> int:
        """Answer every pending block; return how many."""
        paths = self.pending()
        for path in paths:
            self.answer(path)
        return len(paths)

    def _drive(self, manifest: dict[str, Any], block: int, attempt: int) -> np.ndarray:
        from PIL import Image

        frames = [np.asarray(Image.open(self.exchange / e["file"]).convert("RGB")) for e in manifest["images"]]
        images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
        ids = [e["image_id"] for e in manifest["images"]]
        drive = np.asarray(self.subject.respond(images, image_ids=ids, rng=np.random.default_rng([self.settings.seed,
                                                                                             block, attempt, 1])))
        return drive.mean(2) if drive.ndim == 3 else drive

    def _spikes(self, drive: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(channels,)`` drive -> ``(channels, bins)`` Poisson spike counts."""
        s = self.settings
        edges = s.bin_edges_ms
        after = (edges[:-1] >= s.latency_ms)[None, :]
        rate = s.baseline_hz + after * s.rate_gain * np.maximum(drive, 0.0)[:, None]
        expected = rate * np.diff(edges)[None, :] / 1000.0
        return rng.poisson(expected).astype(np.float64) if self.settings.poisson else expected

    def evoked(self, counts: np.ndarray) -> np.ndarray:
        """``(trials, channels, bins)`` counts -> evoked rate ``(trials, channels)`` spikes/s."""
        s = self.settings
        edges = s.bin_edges_ms
        return evoked_response(counts / (np.diff(edges) / 1000.0), edges, response_window_ms=s.response_window_ms,
                               baseline_window_ms=s.baseline_window_ms)

    def answer(self, manifest_path: Path) -> SimEvent:
        """Show one block and write its response file (with this block's faults)."""
        s = self.settings
        manifest = read_manifest(manifest_path)
        label, block, attempt = manifest["label"], int(manifest["block"]), int(manifest["attempt"])
        generation = int(manifest["generation"])
        kinds = [f.kind for f in self.faults if f.applies(generation, attempt)]
        if "restart" in kinds and label not in self.crashed:
            self.crashed.add(label)
            self.say(f"block {label}: simulated crash before answering (fault restart)")
            raise SimulatedRestart(label)
        rng = np.random.default_rng([s.seed, block, attempt])
        drive = self._drive(manifest, block, attempt)
        entries = manifest["images"]
        n = len(entries)
        chosen = set(rng.choice(n, size=max(1, round(s.missing_fraction * n)), replace=False).tolist())
        order = [k for k in range(n) for _ in range(s.repeats)]
        if "missing" in kinds:
            order = [k for k in order if k not in chosen]
        if "repeated" in kinds:
            order += sorted(chosen)
        n_bins = len(s.bin_edges_ms) - 1
        counts = (np.stack([self._spikes(drive[k], rng) for k in order]) if order
                  else np.zeros((0, drive.shape[1], n_bins)))
        if "nan" in kinds:
            counts[[i for i, k in enumerate(order) if k in chosen]] = np.nan
        stim = [entries[k]["file"][: -len(".png")] if s.protocol == "xdream" else entries[k]["stimulus_id"]
                for k in order]
        unknown = []
        if "unknown" in kinds:
            unknown = ["g99999_ghost_000", "../../../etc/passwd", "block999_000_ref_nothing"]
            stim += unknown
            extra = np.stack([self._spikes(drive[0], rng) for _ in unknown])
            counts = np.concatenate([counts, extra])
        evoked = self.evoked(counts)
        values = counts if s.psth else evoked
        trials = TrialResponses(stim, values, s.bin_edges_ms if s.psth else None)
        data = encode_responses(trials, s.fmt)
        if "truncated" in kinds:
            data = data[: len(data) // 2]
        if "corrupt" in kinds:
            data = rng.integers(0, 256, size=len(data), dtype=np.uint8).tobytes()
        event = SimEvent(label, generation, kinds, f"block{label}{FORMAT_SUFFIX[s.fmt]}",
                         usable=not any(k in UNUSABLE_FAULTS for k in kinds), unknown_ids=unknown)
        for k, trial in zip(order, evoked[: len(order)], strict=True):
            if np.isfinite(trial).any():
                event.delivered.setdefault(entries[k]["image_id"], []).append(trial.tolist())
        time.sleep(s.show_s + (s.delay_s if "delay" in kinds else 0.0))
        self._write(self.exchange / event.file, data, slow="slow" in kinds)
        event.complete_at = time.time()
        self.events.append(event)
        self.say(f"block {label}: {len(order)} trials of {n} images -> {event.file}"
                 + (f" (faults: {', '.join(kinds)})" if kinds else ""))
        return event

    def _write(self, path: Path, data: bytes, *, slow: bool) -> None:
        """Write in place like MATLAB's ``save`` (readers may see the file while it grows)."""
        pieces = max(1, self.settings.slow_pieces) if slow else 1
        size = -(-len(data) // pieces)
        with open(path, "wb") as handle:
            for k in range(pieces):
                handle.write(data[k * size : (k + 1) * size])
                handle.flush()
                if slow and k + 1 < pieces:
                    time.sleep(self.settings.slow_pause_s)


def serve(
    make: Callable[[set[str], list[SimEvent]], RigSimulator],
    *,
    poll_s: float = 0.05,
    should_stop: Callable[[], bool] = lambda: False,
    idle_exit_s: float | None = None,
    max_blocks: int | None = None,
    restart_pause_s: float = 0.2,
    events: list[SimEvent] | None = None,
    log: Path | None = None,
) -> list[SimEvent]:
    """Run simulators until told to stop, idle too long, or ``max_blocks`` answered.

    A simulated crash (fault ``restart``) discards the simulator and, after ``restart_pause_s``,
    builds a fresh one with ``make`` that knows only what is in the folder.
    """
    crashed: set[str] = set()
    events = events if events is not None else []
    sim = make(crashed, events)
    idle_since, logged = time.monotonic(), 0
    while not should_stop():
        try:
            answered = sim.poll_once()
        except SimulatedRestart:
            sim.subject.close()
            time.sleep(restart_pause_s)
            sim = make(crashed, events)
            sim.say("simulator restarted; resuming from the exchange folder")
            continue
        if log is not None and len(events) > logged:
            with open(log, "a") as handle:
                for event in events[logged:]:
                    handle.write(json.dumps(event.__dict__) + "\n")
            logged = len(events)
        if answered:
            idle_since = time.monotonic()
        if max_blocks is not None and len(events) >= max_blocks:
            break
        if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
            break
        time.sleep(poll_s)
    sim.subject.close()
    return events


def loopback(exchange: str | Path, subject: Subject, settings: SimSettings) -> Callable[[], None]:
    """Answer blocks on ``exchange`` from a background thread; returns a function that stops it."""
    import threading

    stop = threading.Event()

    def make(crashed: set[str], events: list[SimEvent]) -> RigSimulator:
        return RigSimulator(exchange, subject, settings, crashed=crashed, events=events, say=lambda m: None)

    thread = threading.Thread(target=serve, kwargs={"make": make, "poll_s": 0.01, "should_stop": stop.is_set},
                              daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(10)

    return close
