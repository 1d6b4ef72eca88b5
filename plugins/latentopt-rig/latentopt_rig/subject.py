"""The rig subject: a real neuron behind a stimulus computer that shares a folder with latentopt.

Per block (= generation) it writes the images and a manifest into the exchange folder, waits for
the rig's response file, archives it, matches trials to images by id, averages repeats, re-queues
images that were not shown, and returns one evoked response per image and channel.

Policies (also in ``docs/rig.md``):

* **Not shown** (no trial with a finite response: aborted trial, fixation break, NaN, missing
  row, or the whole file corrupt): with ``not_shown="requeue"`` the images are shown again, within
  the same generation, in the next block (block numbers are one counter over the session, as
  XDream numbers them; up to ``requeue_attempts`` follow-up blocks per generation); whatever is
  still missing after that, or at once with ``not_shown="nan"``, is scored NaN and the
  optimizer's ``nan_policy`` applies. Every such image is listed in the record.
* **Unknown ids** (a trial whose id is no image of the block): logged to the operator, listed in the
  record and never used; ids that name another session are told apart (one line per file).
* **Session**: the exchange folder is claimed for this session (:mod:`latentopt_rig.session`); a
  folder of another session is refused at start, and a block whose manifest or images changed
  after latentopt wrote them has its response refused (re-queued).
* **Time-binned responses**: spike counts per bin become rates (spikes/s); the evoked response is
  the mean rate in ``response_window_ms`` minus the mean rate in ``baseline_window_ms``. The raw bins
  are kept in the record.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.checks import ConfigError, finite_number, integer
from latentopt.live.status import SessionStatus, session_status
from latentopt.responses import BASELINE_WINDOW_MS, RESPONSE_WINDOW_MS, check_window, evoked_response
from latentopt.subject import Subject
from latentopt_rig.channels import COMBINE, channel_name, load_area_table, select_channels
from latentopt_rig.exchange import (
    RigProtocolError,
    block_label,
    check_image_id,
    clean_temporaries,
    read_manifest,
    response_paths,
    verify_block,
    write_block,
)
from latentopt_rig.formats import RESPONSE_SUFFIXES, ResponseFileError, TrialResponses
from latentopt_rig.limits import MAX_CHANNELS
from latentopt_rig.session import (
    FolderState,
    claim_folder,
    inspect_folder,
    load_run_session,
    new_session_id,
    save_run_session,
    session_of,
)
from latentopt_rig.waiting import ON_TIMEOUT, Arrival, RigTimeout, WaitPolicy, wait_for_response

logger = logging.getLogger("latentopt_rig")
PROTOCOLS = {"xdream": (".mat",), "native": RESPONSE_SUFFIXES}
NOT_SHOWN = ("requeue", "nan")


def _text_array(values: Sequence[str]) -> np.ndarray:
    return np.asarray([str(v)[:200] for v in values], dtype=str) if len(values) else np.zeros(0, dtype="<U1")


def _unusable(label: str, name: str, error: str, kept: str) -> str:
    """The operator line for an unusable response file (the error may already start with the name)."""
    error = " ".join(error.split()).removeprefix(f"{name}: ")
    return f"block {label}: {name} is unusable ({error}); {kept}"


def _exchange_folder(exchange: Any) -> Path:
    """``subject.exchange`` as a folder, created if missing; a ConfigError naming the key otherwise."""
    if isinstance(exchange, bool) or not isinstance(exchange, (str, Path)) or not str(exchange).strip():
        raise ConfigError(f"subject.exchange must be a folder path, got {exchange!r}")
    folder = Path(exchange)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"subject.exchange: cannot use {folder} as the exchange folder ({err.strerror})") from None
    return folder


class RigSubject(Subject):
    """A neuron recorded by a rig, through a shared exchange folder.

    Args:
        exchange: the folder shared with the stimulus computer (created if missing).
        protocol: ``xdream`` (responses in ``block{NNN}.mat``) or ``native`` (``.h5``, ``.npz``,
            ``.csv`` or ``.mat``); images and manifest are the same in both.
        n_channels: channels in every response file (columns of ``tEvokedResp``).
        channels: ``"all"``, one 0-based channel index, or a list of them.
        area: keep only selected channels of this area (needs ``channel_areas``).
        channel_areas: CSV ``channel,area`` mapping array channels to areas (V1, V4, PIT).
        combine: ``separate`` (one response per channel) or ``mean`` (their average).
        response_window_ms, baseline_window_ms: windows of the evoked response for time-binned
            files (Wang & Ponce 2026: 50-200 ms and 0-45 ms); ``baseline_window_ms=None``: none.
        poll_s, settle_s, timeout_s, on_timeout, corrupt_after_s, message_every_s: see
            :class:`latentopt_rig.waiting.WaitPolicy`.
        max_file_mb: largest response file read (MiB).
        not_shown: ``requeue`` or ``nan`` (see the module docstring).
        requeue_attempts: follow-up blocks per generation for images not shown.
        png_compression: zlib level of the PNG images: 0 (fastest: ~15 ms per block of 40, files of
            ~200 KB at 256 px) or 1-9 (Pillow, ~0.3 s or more per block, files 2-4x smaller).

    Raises:
        ConfigError: naming the ``subject.*`` key of an unusable value, before the exchange folder is
            created or looked at.
    """

    live = True

    def __init__(
        self,
        *,
        exchange: str | Path,
        protocol: str = "xdream",
        n_channels: int = 1,
        channels: str | int | Sequence[int] = "all",
        area: str | None = None,
        channel_areas: str | None = None,
        combine: str = "separate",
        response_window_ms: Sequence[float] = RESPONSE_WINDOW_MS,
        baseline_window_ms: Sequence[float] | None = BASELINE_WINDOW_MS,
        poll_s: float = 0.025,
        settle_s: float = 0.1,
        timeout_s: float = 600.0,
        on_timeout: str = "stop",
        corrupt_after_s: float = 10.0,
        message_every_s: float = 15.0,
        max_file_mb: float = 64.0,
        not_shown: str = "requeue",
        requeue_attempts: int = 2,
        png_compression: int = 0,
    ) -> None:
        for key, value, choices in (("protocol", protocol, tuple(PROTOCOLS)), ("not_shown", not_shown, NOT_SHOWN),
                                    ("combine", combine, COMBINE), ("on_timeout", on_timeout, ON_TIMEOUT)):
            if not isinstance(value, str) or value not in choices:
                raise ConfigError(f"subject.{key} must be one of {', '.join(choices)}, got {value!r}")
        integer(n_channels, "subject.n_channels", minimum=1, maximum=MAX_CHANNELS)
        integer(requeue_attempts, "subject.requeue_attempts", minimum=0)
        integer(png_compression, "subject.png_compression", minimum=0, maximum=9)
        max_file_bytes = int(finite_number(max_file_mb, "subject.max_file_mb", minimum=0.0) * (1 << 20))
        self.response_window_ms = check_window(response_window_ms, "subject.response_window_ms")
        self.baseline_window_ms = None if baseline_window_ms is None else check_window(
            baseline_window_ms, "subject.baseline_window_ms")
        self.policy = WaitPolicy(poll_s=poll_s, settle_s=settle_s, timeout_s=timeout_s, on_timeout=on_timeout,
                                 corrupt_after_s=corrupt_after_s, message_every_s=message_every_s,
                                 max_file_bytes=max(1, max_file_bytes))
        self.protocol, self.n_channels_in_file = protocol, int(n_channels)
        self.areas = load_area_table(channel_areas) if channel_areas else {}
        self.channels = select_channels(channels, n_channels=self.n_channels_in_file, areas=self.areas, area=area)
        self.exchange = _exchange_folder(exchange)
        self._folder: FolderState | RigProtocolError
        try:
            self._folder = inspect_folder(self.exchange)  # before this session writes anything
        except RigProtocolError as err:
            self._folder = err
        self.session = new_session_id()
        self._run_dir: Path | None = None
        self._claimed = False
        self._next_block: int | None = None
        self._generation = 0
        self.combine, self.area = combine, area
        names = [channel_name(c, self.areas) for c in self.channels]
        self.channel_names = names if combine == "separate" else [f"mean({','.join(names)})"]
        self.not_shown, self.requeue_attempts = not_shown, int(requeue_attempts)
        self.png_compression = int(png_compression)
        self._extras: dict[str, Any] = {}
        self._closers: list[Callable[[], None]] = []
        self._status: SessionStatus | None = None  # RUN_DIR/live_status.json for a live view (docs/live.md)

    @classmethod
    def contract_instance(cls) -> RigSubject:
        """A rig subject on a temporary folder answered by a noise-free loopback simulator (Gabor cell)."""
        import shutil
        import tempfile

        from latentopt.builtins.subjects import GaborV1Subject
        from latentopt_rig.simulator import SimSettings, loopback

        folder = Path(tempfile.mkdtemp(prefix="latentopt-rig-contract-"))
        subject = cls(exchange=folder, poll_s=0.01, settle_s=0.02, timeout_s=30.0, corrupt_after_s=1.0)
        subject._closers += [loopback(folder, GaborV1Subject(device="cpu"), SimSettings(poisson=False)),
                             lambda: shutil.rmtree(folder, ignore_errors=True)]
        return subject

    def close(self) -> None:
        """Stop what :meth:`contract_instance` started (a real rig needs nothing released)."""
        while self._closers:
            self._closers.pop(0)()

    # ------------------------------------------------------------------ operator
    def say(self, message: str) -> None:
        """An operator message: stderr (always visible) and the ``latentopt_rig`` logger."""
        print(f"[rig] {message}", file=sys.stderr, flush=True)
        logger.info(message)
        if self._status is not None:
            self._status.message(message)

    # ------------------------------------------------------------------ Subject API
    def bind_run(self, run_dir: Path) -> None:
        """Adopt the session id recorded in ``run_dir`` (a resume) or record a new one, and claim the folder."""
        recorded = load_run_session(run_dir)
        if recorded is not None:
            self.session = recorded
        self._run_dir = run_dir
        self._status = session_status(run_dir)
        self._status.update(phase="running", reason=None)
        self._claim()
        if recorded is None:
            save_run_session(run_dir, self.session, self.exchange)

    def _claim(self) -> None:
        if self._claimed:
            return
        if isinstance(self._folder, RigProtocolError):
            raise self._folder
        claim_folder(self.exchange, self._folder, self.session, self._run_dir)
        clean_temporaries(self.exchange)  # only now: they are this session's
        self._claimed = True

    def start_block(self, block: int) -> None:
        """Begin generation ``block``; its first block number continues the session's counter."""
        self._generation = int(block)
        self._claim()
        if self._next_block is None:
            self._next_block = self._first_block(self._generation)

    def _first_block(self, generation: int) -> int:
        """The number of the generation's first block: the one already in the folder (resume), else the next."""
        ours: dict[int, int] = {}
        for path in self.exchange.glob("block*.manifest.json"):
            try:
                manifest = read_manifest(path)
            except RigProtocolError:
                continue
            if manifest.get("session") == self.session:
                ours[int(manifest["block"])] = int(manifest["generation"])
        in_flight = [b for b, g in ours.items() if g == generation]
        if in_flight:
            return min(in_flight)
        return 1 + max([*ours, self._recorded_last_block(generation)])

    def _recorded_last_block(self, generation: int) -> int:
        """The last block number in the run record of ``generation - 1`` (-1 if none)."""
        if self._run_dir is None or generation < 1:
            return -1
        from latentopt.records import load_generation

        try:
            blocks = load_generation(self._run_dir, generation - 1).get("subject", {}).get("blocks")
        except (OSError, KeyError, ValueError, RuntimeError):
            return -1
        return int(np.max(blocks)) if blocks is not None and np.size(blocks) else -1

    def block_extras(self) -> dict[str, Any]:
        return self._extras

    def respond(self, images: torch.Tensor, *, image_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        """Show the block on the rig (re-queueing images not shown) and return ``(n, channels)`` float64."""
        ids = [check_image_id(str(i)) for i in image_ids]
        if len(set(ids)) != len(ids):
            raise ValueError("image ids of a block must be unique")
        frames = list((images.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu()
                      .numpy())
        results = np.full((len(ids), len(self.channel_names)), np.nan)
        pending = list(range(len(ids)))
        if not self._claimed or self._next_block is None:
            self.start_block(self._generation)
        generation = self._generation
        extras: dict[str, Any] = {"protocol": self.protocol, "session": self.session, "generation": generation,
                                  "block": self._next_block, "expected": len(ids), "files": {}}
        blocks: list[int] = []
        requeued, unknown, foreign = [], [], []
        attempts = 1 + (self.requeue_attempts if self.not_shown == "requeue" else 0)
        t0 = time.monotonic()
        for attempt in range(attempts):
            arrival, info = self._show(generation, attempt, [ids[i] for i in pending], [frames[i] for i in pending])
            blocks.append(info["block"])
            self._archive(arrival, extras, info)
            if arrival.trials is not None:
                try:
                    accepted, unknown_now = self._match(arrival.trials, info["manifest"])
                    for k, value in accepted.items():
                        results[pending[k]] = value
                    unknown += unknown_now
                    foreign += self._foreign(unknown_now, info["manifest"], arrival.path.name)
                    info["trials"] = self._trial_record(arrival.trials)
                except ResponseFileError as err:
                    arrival.error = str(err)
            if arrival.error is not None:
                extras.setdefault("unusable_files", {})[arrival.path.name] = arrival.error
                kept = "name and reason recorded" if arrival.refused else "archived"
                self.say(_unusable(info["label"], arrival.path.name, arrival.error, kept))
            info.update(status="unusable" if arrival.error else "ok", error=arrival.error or "")
            del info["manifest"]
            extras[f"attempt_{attempt}"] = info
            pending = [i for i in pending if not np.isfinite(results[i]).any()]
            if not pending:
                break
            if attempt + 1 < attempts:
                requeued += [ids[i] for i in pending]
                assert self._next_block is not None  # _show has numbered the next block
                self.say(f"block {info['label']}: {len(pending)} image(s) not shown; re-queued in block "
                         f"{block_label(self._next_block)}")
        self._tell_outcome(block_label(blocks[0]), len(pending), attempt + 1, unknown)
        extras.update(attempts=attempt + 1, seconds_waited=time.monotonic() - t0, shown=len(ids) - len(pending),
                      not_shown=_text_array([ids[i] for i in pending]), requeued=_text_array(requeued),
                      unknown_ids=_text_array(unknown), foreign_ids=_text_array(foreign),
                      blocks=np.asarray(blocks, dtype=np.int64))
        self._extras = extras
        self._generation = generation + 1
        return results

    def _tell_outcome(self, first: str, not_shown: int, attempts: int, unknown: list[str]) -> None:
        """Operator lines at the end of a generation: images scored NaN, unknown trial ids."""
        if not_shown:
            self.say(f"block {first}: {not_shown} image(s) not shown after {attempts} "
                     f"attempt(s); scored NaN (not_shown={self.not_shown})")
        if unknown:
            shown = ", ".join(repr(u[:60]) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            self.say(f"block {first}: {len(unknown)} trial(s) with ids not in the manifest, logged "
                     f"and not used: {shown}")

    def _foreign(self, unknown: list[str], manifest: dict[str, Any], file: str) -> list[str]:
        """The unknown trial ids that name another session (one operator line); a hint for bare image ids."""
        label = manifest["label"]
        foreign = [u for u in unknown if session_of(u) not in (None, self.session)]
        if foreign:
            sessions = sorted({str(session_of(u)) for u in foreign})
            self.say(f"block {label}: {file} holds {len(foreign)} trial(s) of session(s) {', '.join(sessions)}, "
                     f"not of this session {self.session}; refused, not used")
        bare = {e["image_id"] for e in manifest["images"]}.intersection(unknown)
        if bare:
            self.say(f"block {label}: {file} names {len(bare)} image(s) by the bare image id, without the session "
                     "id; not used: the rig must echo the image file name or the manifest's stimulus_id (docs/rig.md)")
        return foreign

    # ------------------------------------------------------------------ steps
    def _show(self, generation: int, attempt: int, ids: list[str], frames: list[np.ndarray]) -> tuple[Arrival, dict]:
        """Write the next block of the session's counter and wait for its response."""
        assert self._next_block is not None
        block = self._next_block
        self._next_block += 1
        label = block_label(block)
        suffixes = PROTOCOLS[self.protocol]
        hint = f"block{label}.mat" if self.protocol == "xdream" else f"block{label}.{{h5,npz,csv,mat}}"
        manifest, resumed = write_block(self.exchange, block=block, generation=generation, attempt=attempt,
                                        session=self.session, protocol=self.protocol, image_ids=ids, images=frames,
                                        response_hint=hint, compression=self.png_compression)
        if resumed:
            self.say(f"block {label}: already in the exchange folder (resumed session); collecting its response")
        written_at = time.time()
        paths = response_paths(self.exchange, label, suffixes)
        if self._status is not None:
            self._status.update(phase="waiting", generation=generation, block=block, label=label, attempt=attempt,
                                images=len(ids), response_files=[p.name for p in paths], waiting_since=written_at,
                                received=None)
        try:
            arrival = wait_for_response(paths, self.policy, say=self.say, what=f"block {label}")
        except RigTimeout as err:
            if self._status is not None:
                self._status.update(phase="stopped", reason=str(err))
            raise
        if self._status is not None:
            self._status.update(phase="running", waiting_since=None, received=arrival.path.name)
        problem = verify_block(self.exchange, manifest)
        if problem is not None and arrival.error is None:
            arrival.trials, arrival.error = None, f"refused: {problem}; its responses may be to other images"
        info = {"label": label, "block": block, "generation": generation, "file": arrival.path.name,
                "resumed": resumed, "images": len(ids),
                "manifest_written_at": written_at, "response_complete_at": arrival.complete_at,
                "response_read_at": time.time(),
                "waited_s": arrival.waited_s, "manifest": manifest}
        return arrival, info

    def _evoked(self, trials: TrialResponses) -> np.ndarray:
        """``(trials, channels[, bins])`` -> evoked ``(trials, len(channel_names))``."""
        values = trials.values
        if values.shape[1] != self.n_channels_in_file:
            raise ResponseFileError(f"{values.shape[1]} channels in the file, subject.n_channels is "
                                    f"{self.n_channels_in_file}")
        if values.ndim == 3:
            assert trials.bin_edges_ms is not None
            rates = values / (np.diff(trials.bin_edges_ms) / 1000.0)  # spike counts per bin -> spikes/s
            try:
                values = evoked_response(rates, trials.bin_edges_ms, response_window_ms=self.response_window_ms,
                                         baseline_window_ms=self.baseline_window_ms)
            except ValueError as err:
                raise ResponseFileError(str(err)) from err
        chosen = values[:, self.channels]
        if self.combine == "mean":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                chosen = np.nanmean(chosen, axis=1, keepdims=True)
        return chosen

    def _match(self, trials: TrialResponses, manifest: dict) -> tuple[dict[int, np.ndarray], list[str]]:
        """Average each shown image's trials; return ``{index in block: (channels,)}`` and unknown ids."""
        evoked = self._evoked(trials)
        index: dict[str, int] = {}
        for entry in manifest["images"]:
            k, file = int(entry["index"]), entry["file"]
            for name in (entry["stimulus_id"], file, file[: -len(".png")]):  # all carry the session id
                index[name] = k
        rows: dict[int, list[np.ndarray]] = {}
        unknown: list[str] = []
        for image_id, row in zip(trials.image_ids, evoked, strict=True):
            found = index.get(image_id)
            if found is None:
                unknown.append(image_id)
            elif np.isfinite(row).any():
                rows.setdefault(found, []).append(row)
        accepted = {}
        for k, trial_rows in rows.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                accepted[k] = np.nanmean(np.stack(trial_rows), axis=0)
        return accepted, unknown

    def _archive(self, arrival: Arrival, extras: dict[str, Any], info: dict[str, Any]) -> None:
        """Keep the file's bytes (or, if refused unread, its name and the reason); report impossible values."""
        name, label = arrival.path.name, info["label"]
        for other, (reason, data) in arrival.others.items():  # e.g. a directory named block005.h5 beside .csv
            extras.setdefault("unusable_files", {})[other] = reason
            if data:
                extras["files"][other] = data
                self.say(_unusable(label, other, reason, "archived"))
        if not arrival.refused:
            extras["files"][name] = arrival.data
        invalid = arrival.trials.invalid if arrival.trials is not None else {}
        if invalid and arrival.trials is not None:
            ids = arrival.trials.image_ids
            listed = [f"{ids[t][:60]!r} ({reason})" for t, reason in sorted(invalid.items())]
            self.say(f"block {label}: {name}: {len(invalid)} trial(s) with impossible values treated as not shown: "
                     + ", ".join(listed[:5]) + (" ..." if len(listed) > 5 else ""))
            info["invalid_trials"] = _text_array([f"{t} {ids[t][:60]!r}: {r}" for t, r in sorted(invalid.items())])

    @staticmethod
    def _trial_record(trials: TrialResponses) -> dict[str, Any]:
        record: dict[str, Any] = {"image_ids": _text_array(trials.image_ids), "values": trials.values}
        if trials.bin_edges_ms is not None:
            record["bin_edges_ms"] = trials.bin_edges_ms
        return record

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "exchange": str(self.exchange.resolve()), "protocol": self.protocol,
                "n_channels": self.n_channels_in_file, "channels": self.channels, "area": self.area,
                "areas": {str(k): v for k, v in self.areas.items()}, "combine": self.combine,
                "response_window_ms": list(self.response_window_ms),
                "baseline_window_ms": None if self.baseline_window_ms is None else list(self.baseline_window_ms),
                "wait": self.policy.__dict__, "not_shown": self.not_shown, "requeue_attempts": self.requeue_attempts,
                "png_compression": self.png_compression}
