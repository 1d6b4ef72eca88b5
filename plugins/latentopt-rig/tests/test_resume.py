"""Sessions that survive: a timeout stops resumably, and kill -9 mid-block loses nothing.

The resumed run must end exactly where an uninterrupted one ends (same codes, responses, scores and
optimizer state), including the response the rig wrote while latentopt was down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentopt.records import RunWriter, load_generation, load_run
from latentopt_rig.drill import rig_evolution, tiny_threads
from latentopt_rig.waiting import RigTimeout


def assert_same_tree(a: Any, b: Any, where: str = "") -> None:
    """Equal nested states; opaque library blobs (bytes) are compared by behaviour in :func:`assert_same_run`."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif not isinstance(a, bytes):
        assert a == b, where


def assert_same_run(run_a: Path, run_b: Path, generations: int) -> None:
    a, b = load_run(run_a), load_run(run_b)
    assert a.generations == b.generations == generations
    for name in a.threads:
        np.testing.assert_array_equal(a.threads[name].codes, b.threads[name].codes)
        np.testing.assert_array_equal(a.threads[name].responses, b.threads[name].responses)
        np.testing.assert_array_equal(a.threads[name].scores, b.threads[name].scores)
        state_a, state_b = a.optimizer_state(name), b.optimizer_state(name)
        assert_same_tree(state_a, state_b)
        proposals = []
        for state in (state_a, state_b):  # the restored optimizers propose the same next generation
            optimizer = tiny_threads([name])[0].optimizer
            optimizer.load_state_dict(state)
            proposals.append(optimizer.ask())
        np.testing.assert_array_equal(proposals[0], proposals[1])
    assert np.isfinite(a.scores).all()


def resume(run_dir: Path, exchange: Path, generations: int) -> None:
    """What ``latentopt-resume`` does, in-process."""
    start = RunWriter(run_dir).completed_generations()
    evolution = rig_evolution(run_dir, exchange, generations=generations, start=False)
    last = load_generation(run_dir, start - 1)
    for thread in evolution.threads:
        thread.optimizer.load_state_dict(last["threads"][thread.name]["state"])
    evolution.run(start_block=start)


def test_timeout_stops_resumably_and_resume_matches_uninterrupted(tmp_path: Path, sim_factory: Any) -> None:
    sim_factory(tmp_path / "ex_ref")
    rig_evolution(tmp_path / "ref", tmp_path / "ex_ref", generations=4).run()

    exchange, run_dir = tmp_path / "ex", tmp_path / "run"
    sim = sim_factory(exchange, faults=["delay@2"], delay_s=1.5)  # the rig stalls on block 2
    with pytest.raises(RigTimeout, match="block 002"):
        rig_evolution(run_dir, exchange, generations=4, timeout_s=0.5).run()
    assert RunWriter(run_dir).completed_generations() == 2  # block 2 not recorded: resumable
    deadline = time.monotonic() + 10
    while not (exchange / "block002.mat").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # the rig answers block 2 while latentopt is down
    resume(run_dir, exchange, generations=4)
    sim.close()
    assert load_generation(run_dir, 2)["subject"]["attempt_0"]["resumed"]
    assert_same_run(run_dir, tmp_path / "ref", 4)


# ---------------------------------------------------------------------------- kill -9 with the real CLI
CLI_OVERRIDES = [
    "subject=rig_xdream", "subject.poll_s=0.02", "subject.settle_s=0.05", "subject.timeout_s=60",
    "generator.image_size=32", "generator.max_frequency=2",
    "optimizer=cmaes_diag", "optimizer.population_size=8", "optimizer.sigma0=1.0",
    "experiment.generations=4", "experiment.references=[camera]", "progress=false", "device=cpu",
]
ENV = {**os.environ, "LATENTOPT_TCMALLOC": "0", "PYTHONUNBUFFERED": "1"}


def latentopt(run_dir: Path, exchange: Path) -> subprocess.Popen[bytes]:
    code = "from latentopt.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *CLI_OVERRIDES, f"subject.exchange={exchange}",
                             f"hydra.run.dir={run_dir}"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def simulator(exchange: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "latentopt_rig.simcli", str(exchange), "--poll-s", "0.02",
                             "--quiet", *extra], env=ENV)


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_mid_block_then_resume_loses_nothing(tmp_path: Path) -> None:
    sim = simulator(tmp_path / "ex_ref")
    try:
        ref = latentopt(tmp_path / "ref", tmp_path / "ex_ref")
        out, _ = ref.communicate(timeout=120)
        assert ref.returncode == 0, out.decode()
    finally:
        sim.kill()
        sim.wait()

    exchange, run_dir = tmp_path / "ex", tmp_path / "run"
    sim = simulator(exchange, "--show-s", "0.8")  # each block takes 0.8 s on the "rig"
    try:
        proc = latentopt(run_dir, exchange)
        wait_for(lambda: (exchange / "block002.manifest.json").exists())  # block 2 on screen, latentopt waiting
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (run_dir / "generations" / "gen_00002.npz").exists()
        wait_for(lambda: (exchange / "block002.mat").exists())  # answered while latentopt is down
        time.sleep(0.3)
        resumed = subprocess.run([sys.executable, "-c", "from latentopt.cli import resume_main; resume_main()",
                                  str(run_dir)], env=ENV, capture_output=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr.decode()
    finally:
        sim.kill()
        sim.wait()
    assert b"block 002: already in the exchange folder (resumed session)" in resumed.stderr
    assert b"block 3 | shown 9/9 | main best" in resumed.stderr  # the operator line
    gen2 = load_generation(run_dir, 2)["subject"]
    assert gen2["attempt_0"]["resumed"] and gen2["files"]["block002.mat"] == (exchange / "block002.mat").read_bytes()
    assert_same_run(run_dir, tmp_path / "ref", 4)
