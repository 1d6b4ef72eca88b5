"""latentopt against a stimulus computer written from XDream's protocol alone (not our simulator).

The rig below knows only XDream's conventions: it polls for ``block(\\d{3,})_(\\d{3})_(.+)\\.png``,
answers each block number once, in order, with ``block{NNN}.mat`` (v7.3: ``stimulusID``, the image
file names without ``.png``, and ``tEvokedResp``), and drops some trials so that re-queues happen.
It reads no manifest. The session must finish without stalling and attach every response to the
image the rig showed, by the rig's own ledger.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from latentopt.records import RunWriter, load_generation
from latentopt_rig.drill import rig_evolution
from latentopt_rig.matlab73 import write_mat73
from latentopt_rig.waiting import RigTimeout

XDREAM_PNG = re.compile(r"^block(\d{3,})_(\d{3})_(.+)\.png$")


class XDreamRig:
    """An independent XDream-style stimulus computer in a thread, with a ledger of every trial."""

    def __init__(self, folder: Path, *, hold_from: int | None = None) -> None:
        self.folder, self.hold_from = folder, hold_from
        self.ledger: list[dict] = []
        self.answered: list[int] = []
        self.shown: dict[str, int] = defaultdict(int)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def blocks(self) -> dict[int, dict[int, Path]]:
        found: dict[int, dict[int, Path]] = defaultdict(dict)
        for path in self.folder.glob("block*.png"):
            match = XDREAM_PNG.match(path.name)
            if match:
                found[int(match.group(1))][int(match.group(2))] = path
        return found

    def loop(self) -> None:
        while not self.stop.is_set():
            todo = sorted(b for b in self.blocks() if b not in self.answered)
            if todo and (self.hold_from is None or todo[0] < self.hold_from):
                count = len(self.blocks()[todo[0]])
                time.sleep(0.15)  # a block is complete once its images stop arriving
                if len(self.blocks()[todo[0]]) == count:
                    self.answer(todo[0], self.blocks()[todo[0]])
            time.sleep(0.02)

    def answer(self, block: int, files: dict[int, Path]) -> None:
        stems, values = [], []
        for k in sorted(files):
            stem = files[k].name[: -len(".png")]
            name = XDREAM_PNG.match(files[k].name).group(3)  # type: ignore[union-attr]
            dropped = self.shown[name] == 0 and k % 3 == 0  # fixation breaks on a first showing
            self.shown[name] += 1
            pixels = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(files[k]).convert("L"), float)
            value = pixels.mean() + (zlib.crc32(stem.encode()) % 1000) / 1000.0  # unique per trial
            self.ledger.append({"block": block, "stem": stem, "name": name, "value": value, "dropped": dropped})
            if not dropped:
                stems.append(stem)
                values.append([value])
        data = write_mat73({"stimulusID": stems, "tEvokedResp": np.asarray(values, dtype=np.float64)})
        (self.folder / f"block{block:03d}.mat").write_bytes(data)  # in place, as MATLAB's save does
        self.answered.append(block)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def check_against_ledger(run_dir: Path, rig: XDreamRig, generations: int) -> list[list[int]]:
    """Every recorded response is the mean of the rig's trials of that image; returns the blocks per generation."""
    per_generation = []
    for g in range(generations):
        record = load_generation(run_dir, g)
        extras = record["subject"]
        blocks = [int(b) for b in extras["blocks"]]
        per_generation.append(blocks)
        session = str(extras["session"])
        for image_id, response in zip(record["block"]["image_ids"], record["block"]["responses"], strict=True):
            trials = [t["value"] for t in rig.ledger if t["block"] in blocks and not t["dropped"]
                      and t["name"] == f"{session}_{image_id}"]
            assert trials, f"generation {g}: {image_id} never answered"
            np.testing.assert_allclose(response, [np.mean(trials)], err_msg=f"generation {g} {image_id}")
    flat = [b for blocks in per_generation for b in blocks]
    assert flat == list(range(len(flat)))  # one counter over the session, no block twice, no gap
    return per_generation


def test_session_with_requeues_completes_against_an_xdream_rig(tmp_path: Path) -> None:
    exchange, run_dir = tmp_path / "ex", tmp_path / "run"
    rig = XDreamRig(exchange)
    try:
        rig_evolution(run_dir, exchange, generations=3, timeout_s=15.0).run()
    finally:
        rig.close()
    blocks = check_against_ledger(run_dir, rig, 3)
    assert blocks == [[0, 1], [2, 3], [4, 5]]  # each generation re-queued its dropped images once
    # (ids 0, 3, 6 of a generation and, in block 000 only, the reference image 9, then new to the rig)
    assert sorted(rig.answered) == list(range(6))
    assert all(re.match(r"^block\d{3}(\.manifest\.json|\.mat|_\d{3}_.+\.png)$", p.name)
               for p in exchange.iterdir() if p.name.startswith("block"))
    gen1 = load_generation(run_dir, 1)["subject"]
    assert (gen1["attempt_1"]["block"], gen1["attempt_1"]["generation"]) == (3, 1)
    assert len(gen1["requeued"]) == 3 and len(gen1["not_shown"]) == 0


def test_resume_mid_requeue_continues_the_block_counter(tmp_path: Path) -> None:
    exchange, run_dir = tmp_path / "ex", tmp_path / "run"
    rig = XDreamRig(exchange, hold_from=3)  # the rig goes silent at generation 1's re-queue block
    try:
        with pytest.raises(RigTimeout, match="block 003"):
            rig_evolution(run_dir, exchange, generations=3, timeout_s=1.0).run()
        assert RunWriter(run_dir).completed_generations() == 1
        rig.hold_from = None  # the rig answers block 003 while latentopt is down
        deadline = time.monotonic() + 10
        while 3 not in rig.answered and time.monotonic() < deadline:
            time.sleep(0.02)
        resume(run_dir, exchange, generations=3)
        resume(run_dir, exchange, generations=4)  # extend the finished run on the same folder
        rig.close()
        new_exchange = tmp_path / "ex2"
        rig2 = XDreamRig(new_exchange)
        try:
            resume(run_dir, new_exchange, generations=5)  # and on a new folder: the counter goes on
        finally:
            rig2.close()
    finally:
        rig.close()
    assert load_generation(run_dir, 1)["subject"]["attempt_1"]["resumed"]
    rig.ledger += rig2.ledger
    blocks = check_against_ledger(run_dir, rig, 5)
    assert blocks == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert rig2.answered == [8, 9]


def resume(run_dir: Path, exchange: Path, generations: int) -> None:
    """What ``latentopt-resume`` does, in-process."""
    start = RunWriter(run_dir).completed_generations()
    evolution = rig_evolution(run_dir, exchange, generations=generations, start=False, timeout_s=15.0)
    last = load_generation(run_dir, start - 1)
    for thread in evolution.threads:
        thread.optimizer.load_state_dict(last["threads"][thread.name]["state"])
    evolution.run(start_block=start)
