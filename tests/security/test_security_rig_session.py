"""Hostile input to the rig session: another session's exchange folder, response files and tampered blocks.

Each case: one line naming the culprit, no foreign response attached to an image of this session,
nothing already recorded lost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from latentopt_rig.drill import SimThread, rig_evolution
from latentopt_rig.exchange import RigProtocolError, png_bytes
from latentopt_rig.session import MARKER, load_run_session

from latentopt.records import RunWriter, load_generation

PROTOCOLS = [("xdream", "mat73"), ("native", "h5")]


def session_a(root: Path, protocol: str, fmt: str, generations: int = 2) -> tuple[Path, str]:
    """A finished session on ``root/ex`` (its run folder ``root/run_a``); returns the folder and its session id."""
    exchange = root / "ex"
    sim = SimThread(exchange, protocol=protocol, fmt=fmt)
    try:
        rig_evolution(root / "run_a", exchange, generations=generations, protocol=protocol).run()
    finally:
        sim.close()
    session = load_run_session(root / "run_a")
    return exchange, str(session)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def one_line(err: pytest.ExceptionInfo[BaseException], *needles: str) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def later(condition: Callable[[], bool], action: Callable[[], None], timeout: float = 20.0) -> threading.Thread:
    """Run ``action`` in a thread once ``condition`` holds (gives up after ``timeout``)."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("rig_running", [False, True], ids=["no_rig", "rig_answering"])
@pytest.mark.parametrize(("protocol", "fmt"), PROTOCOLS)
def test_reused_exchange_folder_is_refused_at_start(tmp_path: Path, protocol: str, fmt: str,
                                                    rig_running: bool) -> None:
    """The audit case: a new session (another seed, a new run folder) on session A's exchange folder."""
    exchange, a = session_a(tmp_path, protocol, fmt)
    before = snapshot(exchange)
    sim = SimThread(exchange, protocol=protocol, fmt=fmt) if rig_running else None
    try:
        with pytest.raises(RigProtocolError) as err:
            rig_evolution(tmp_path / "run_b", exchange, generations=2, seed=7, protocol=protocol,
                          timeout_s=3.0).run()
    finally:
        if sim is not None:
            sim.close()
    one_line(err, str(exchange), f"belongs to session {a}", "own exchange folder")
    assert RunWriter(tmp_path / "run_b").completed_generations() == 0  # nothing of A attached to B
    assert snapshot(exchange) == before  # A's files untouched
    assert load_generation(tmp_path / "run_a", 1)["subject"]["session"] == a


def test_folder_with_block_files_and_no_marker_is_refused(tmp_path: Path) -> None:
    """Files of an unknown session (an older latentopt, files copied in): refused, not adopted."""
    exchange, _ = session_a(tmp_path, "xdream", "mat73", generations=1)
    (exchange / MARKER).unlink()
    with pytest.raises(RigProtocolError) as err:
        rig_evolution(tmp_path / "run_b", exchange, generations=1, seed=7).run()
    one_line(err, str(exchange), "unknown session", "block000")
    assert RunWriter(tmp_path / "run_b").completed_generations() == 0


@pytest.mark.parametrize(("protocol", "fmt"), PROTOCOLS)
def test_response_file_of_another_session_placed_mid_session_is_refused(
        tmp_path: Path, protocol: str, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    foreign_ex, a = session_a(tmp_path / "a", protocol, fmt, generations=1)
    suffix = {"mat73": ".mat", "h5": ".h5"}[fmt]
    exchange = tmp_path / "ex_b"
    sims: list[SimThread] = []
    placer = later(lambda: (exchange / "block000.manifest.json").exists(),
                   lambda: shutil.copy(foreign_ex / f"block000{suffix}", exchange / f"block000{suffix}"))
    starter = later(lambda: (exchange / "block001.manifest.json").exists(),
                    lambda: sims.append(SimThread(exchange, protocol=protocol, fmt=fmt)))
    try:
        rig_evolution(tmp_path / "run_b", exchange, generations=1, seed=7, protocol=protocol, timeout_s=8.0).run()
    finally:
        placer.join(1)
        starter.join(1)
        for sim in sims:
            sim.close()
    record = load_generation(tmp_path / "run_b", 0)
    extras = record["subject"]
    assert len(extras["foreign_ids"]) == 10 and list(extras["blocks"]) == [0, 1]
    assert extras["files"][f"block000{suffix}"] == (foreign_ex / f"block000{suffix}").read_bytes()  # archived
    answered = next(e for e in sims[0].events if e.label == "001")  # the rig's answer to the re-queue
    for image_id, response in zip(record["block"]["image_ids"], record["block"]["responses"], strict=True):
        np.testing.assert_allclose(response, np.mean(answered.delivered[str(image_id)], axis=0))
    lines = [line for line in capsys.readouterr().err.splitlines() if f"session(s) {a}" in line]
    assert len(lines) == 1 and f"block000{suffix}" in lines[0] and "refused" in lines[0]


@pytest.mark.parametrize("what", ["image", "manifest"])
def test_block_tampered_after_writing_has_its_response_refused(tmp_path: Path, what: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    exchange = tmp_path / "ex"
    sims: list[SimThread] = []

    def tamper() -> None:
        path = exchange / "block000.manifest.json"
        if what == "manifest":
            path.write_text(path.read_text().replace('"sha256": "', '"sha256": "0', 1))
        else:
            victim = next(exchange.glob("block000_000_*.png"))
            victim.write_bytes(png_bytes(np.full((32, 32, 3), 255, dtype=np.uint8)))
        sims.append(SimThread(exchange))  # the rig shows the tampered block

    thread = later(lambda: (exchange / "block000.manifest.json").exists(), tamper)
    try:
        rig_evolution(tmp_path / "run", exchange, generations=1, timeout_s=8.0).run()
    finally:
        thread.join(1)
        for sim in sims:
            sim.close()
    record = load_generation(tmp_path / "run", 0)
    extras = record["subject"]
    assert extras["attempt_0"]["status"] == "unusable" and "refused" in extras["attempt_0"]["error"]
    answered = next(e for e in sims[0].events if e.label == "001")
    for image_id, response in zip(record["block"]["image_ids"], record["block"]["responses"], strict=True):
        np.testing.assert_allclose(response, np.mean(answered.delivered[str(image_id)], axis=0))
    lines = [line for line in capsys.readouterr().err.splitlines() if "block 000: block000.mat is unusable" in line]
    assert len(lines) == 1 and ("sha256" in lines[0] or "changed after latentopt wrote it" in lines[0])


def test_tampered_block_is_not_adopted_on_resume(tmp_path: Path) -> None:
    exchange, run_dir = tmp_path / "ex", tmp_path / "run"
    sim = SimThread(exchange, faults=["delay@1"], delay_s=1.0)
    try:
        with pytest.raises(Exception, match="no response for block 001"):
            rig_evolution(run_dir, exchange, generations=2, timeout_s=0.4).run()
    finally:
        sim.close()  # it answered block 001 meanwhile
    gen0 = (run_dir / "generations" / "gen_00000.npz").read_bytes()
    victim = next(exchange.glob("block001_003_*.png"))
    victim.write_bytes(png_bytes(np.zeros((32, 32, 3), dtype=np.uint8)))
    evolution = rig_evolution(run_dir, exchange, generations=2, start=False)
    for thread in evolution.threads:
        thread.optimizer.load_state_dict(load_generation(run_dir, 0)["threads"][thread.name]["state"])
    with pytest.raises(RigProtocolError) as err:
        evolution.run(start_block=1)
    one_line(err, "block001.manifest.json", victim.name, "does not match its sha256", "new exchange folder")
    assert RunWriter(run_dir).completed_generations() == 1
    assert (run_dir / "generations" / "gen_00000.npz").read_bytes() == gen0


def test_reused_folder_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    exchange, a = session_a(tmp_path, "xdream", "mat73", generations=1)
    overrides = ["subject=rig_xdream", "subject.timeout_s=5", "generator.image_size=32", "generator.max_frequency=2",
                 "optimizer.population_size=6", "experiment.generations=2", "progress=false", "device=cpu", "seed=3"]
    env = {**os.environ, "LATENTOPT_TCMALLOC": "0"}
    run_b = tmp_path / "run_b"
    done = subprocess.run([sys.executable, "-c", "from latentopt.cli import main; main()", *overrides,
                           f"subject.exchange={exchange}", f"hydra.run.dir={run_b}"], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"latentopt: stopped: exchange folder {exchange} belongs to session {a}")
    assert RunWriter(run_b).completed_generations() == 0


def test_unreadable_session_marker_is_one_line(tmp_path: Path) -> None:
    exchange = tmp_path / "ex"
    exchange.mkdir()
    (exchange / MARKER).write_bytes(b"\x00\xffnot json" * 10)
    with pytest.raises(RigProtocolError) as err:
        rig_evolution(tmp_path / "run", exchange, generations=1).run()
    one_line(err, str(exchange / MARKER), "unreadable", "new exchange folder")
    assert RunWriter(tmp_path / "run").completed_generations() == 0


def test_bare_image_ids_from_the_rig_are_not_used_and_explained(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A rig that echoes the session-less image id (the old native protocol): nothing attached, one hint."""
    from latentopt_rig.formats import TrialResponses, encode_responses

    exchange = tmp_path / "ex"

    def answer_bare() -> None:
        manifest = json.loads((exchange / "block000.manifest.json").read_text())
        ids = [e["image_id"] for e in manifest["images"]]
        (exchange / "block000.h5").write_bytes(encode_responses(TrialResponses(ids, np.ones((len(ids), 1))), "h5"))

    thread = later(lambda: (exchange / "block000.manifest.json").exists(), answer_bare)
    try:
        rig_evolution(tmp_path / "run", exchange, generations=1, protocol="native", not_shown="nan").run()
    finally:
        thread.join(1)
    record = load_generation(tmp_path / "run", 0)
    assert np.isnan(record["block"]["responses"]).all()
    assert len(record["subject"]["not_shown"]) == 10 and len(record["subject"]["unknown_ids"]) == 10
    lines = [line for line in capsys.readouterr().err.splitlines() if "bare image id" in line]
    assert len(lines) == 1 and "stimulus_id" in lines[0]
