"""The live view of a running rig session, in a real headless browser; the view started with a run; the CLI.

The rig session is the ``latentopt`` command (two threads on ``subject=rig_native``, ``live.enabled=true
live.port=0``) in a subprocess, answered by the rig simulator in a thread of the test (``latentopt_rig.drill``):
the page must follow it by itself, block after block, with the rig's waiting state and operator messages.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import browser_session

from latentopt.launch import run_experiment
from latentopt.live import RunState
from latentopt.records import load_run
from latentopt_rig.drill import SimThread, rig_evolution
from latentopt_rig.waiting import RigTimeout

ENV = {**os.environ, "LATENTOPT_TCMALLOC": "0"}
GENERATIONS = 8
SESSION = [
    "subject=rig_native", "subject.poll_s=0.02", "subject.settle_s=0.05", "subject.message_every_s=0.5",
    "generator.image_size=32", "generator.max_frequency=2", "optimizer.population_size=6",
    f"experiment.generations={GENERATIONS}", "experiment.references=[camera]", "progress=false", "device=cpu",
    "experiment.threads={deepsim:{},biggan:{optimizer:{sigma0:0.2}}}",
    "live.enabled=true", "live.port=0",
]
TINY = {"seed": 3, "device": "cpu", "progress": False,
        "generator": {"name": "pixel", "image_size": 32, "resolution": 4},
        "subject": {"name": "gabor_v1", "size": 32, "device": "cpu"},
        "optimizer": {"name": "ga", "population_size": 8, "n_elite": 2},
        "objective": {"name": "single_unit"},
        "experiment": {"name": "evolve", "generations": 3, "references": []}}


class Session:
    """``latentopt`` in a subprocess; its stderr collected by a thread (the live view's URL is on it)."""

    def __init__(self, args: list[str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-c", "from latentopt.cli import main; main()", *args],
                                        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                match = re.fullmatch(r"latentopt: live view of \S+ at (http://127\.0\.0\.1:\d+/)", line)
                if match:
                    return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no live view URL on stderr:\n" + "\n".join(self.lines))

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code


def block_shown(page: Any) -> int:
    match = re.fullmatch(r"block (\d+)", page.text("#block"))
    return int(match.group(1)) if match else -1


def best_images(page: Any) -> list[str]:
    return list(page.script("return Array.from(document.querySelectorAll('#best-images img')).map(i => i.src);"))


def test_page_follows_a_rig_session_by_itself(tmp_path: Path) -> None:
    exchange, run_dir = tmp_path / "exchange", tmp_path / "run"
    sim = SimThread(exchange, protocol="native", fmt="npz", show_s=0.7)
    session = Session([*SESSION, f"subject.exchange={exchange}", f"hydra.run.dir={run_dir}"])
    try:
        url = session.url()
        with browser_session() as page:
            page.open(url)
            page.wait_for(lambda p: block_shown(p) >= 0, timeout=20, what="a first block on the page")
            first, images = block_shown(page), best_images(page)
            assert len(images) == 2 and all(f"_{first:05d}.png" in src for src in images)
            assert re.fullmatch(r"\d+/\d+", page.text("#shown"))
            page.wait_for(lambda p: block_shown(p) > first and best_images(p) != images, timeout=15,
                          what=f"the page to move on from block {first} by itself")
            now = block_shown(page)
            assert all(f"_{now:05d}.png" in src for src in best_images(page))
            assert f"Best images of block {now}" == page.text("#images-title")
            page.wait_for(lambda p: p.text("#phase") == "waiting for the rig", timeout=10, what="the waiting state")
            waiting = page.text("#waiting") + " | " + page.text("#waiting-sub")
            assert re.match(r"waiting \d+\.\d s \| block \d{3} \(generation \d+\): 13 images expected; "
                            r"response block\d{3}\.mat or block\d{3}\.h5", waiting), waiting
            messages = page.text("#messages")
            assert re.search(r"block \d+ \| shown 13/13 \| deepsim best \S+ mean \S+ \| biggan best", messages)
            assert re.search(r"block \d{3}: waiting for block\d{3}\.mat or block\d{3}\.h5", messages)
            assert "deepsim" in page.text("#legend") and "biggan" in page.text("#legend")
            paths = page.script("return document.querySelectorAll('#chart path[data-thread]').length;")
            assert paths == 4  # best and mean of each thread
            page.wait_for(lambda p: p.undecoded_images() == [], timeout=5, what="the best images to decode")
            with urllib.request.urlopen(best_images(page)[0], timeout=5) as response:
                name = best_images(page)[0].rsplit("/", 1)[1]
                assert response.read() == (run_dir / "images" / name).read_bytes()
            assert page.console_errors() == []
            page.screenshot(tmp_path / "live_view.png")
            assert (tmp_path / "live_view.png").stat().st_size > 10_000
        assert session.wait() == 0, "\n".join(session.lines)
    finally:
        if session.process.poll() is None:
            session.process.kill()
        sim.close()
    assert load_run(run_dir).generations == GENERATIONS  # the view did not disturb the session
    status = json.loads((run_dir / "live_status.json").read_text())
    assert status["format"] == "latentopt-live-status" and status["phase"] == "running"
    assert status["messages"][-1]["text"].startswith(f"block {GENERATIONS - 1} | shown 13/13")


def test_a_view_that_cannot_start_is_one_line_and_the_run_goes_on(tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = {**TINY, "live": {"enabled": True, "host": "127.0.0.1", "port": port, "allow_remote": False}}
        summary = run_experiment(config, tmp_path / "run", config_yaml=json.dumps(config))
    lines = [line for line in capfd.readouterr().err.splitlines() if "live view" in line]
    assert lines == [f"latentopt: live view not started: cannot serve on 127.0.0.1 port {port}: in use by another "
                     "program; choose another port, or port 0 for a free one; the run goes on"]
    assert summary["generations"] == 3 and load_run(tmp_path / "run").generations == 3


def test_latentopt_live_serves_a_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_experiment(TINY, run_dir, config_yaml=json.dumps(TINY))
    process = subprocess.Popen([sys.executable, "-c", "from latentopt.live.cli import main; main()", str(run_dir),
                                "--port", "0"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(rf"latentopt-live: serving {re.escape(str(run_dir))} at (http://127\.0\.0\.1:\d+/) "
                             r"\(Ctrl-C to stop\)", line)
        assert match, line
        with urllib.request.urlopen(match.group(1) + "state.json", timeout=10) as response:
            state = json.loads(response.read())
    finally:
        process.terminate()
        process.wait(10)
    run = load_run(run_dir)
    assert state["finished"] and state["recorded"] == 3 and state["total_blocks"] == 3
    assert state["trajectories"]["main"]["best"] == pytest.approx(np.nanmax(run.scores, axis=1).tolist())
    assert state["trajectories"]["main"]["mean"] == pytest.approx(np.nanmean(run.scores, axis=1).tolist())
    assert state["last"]["images"] == {"main": "best_main_00002.png"}
    assert state["last"]["shown"] == state["last"]["expected"] == 8


def test_the_status_file_says_what_the_rig_waits_for_and_why_it_stopped(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    evolution = rig_evolution(run_dir, tmp_path / "exchange", generations=2, references=False, timeout_s=0.4,
                              message_every_s=0.1)
    with pytest.raises(RigTimeout):
        evolution.run()
    evolution.close()
    status = json.loads((run_dir / "live_status.json").read_text())
    assert status["phase"] == "stopped" and status["reason"].startswith("no response for block 000 after 0.")
    assert (status["generation"], status["block"], status["label"], status["attempt"]) == (0, 0, "000", 0)
    assert status["images"] == 8 and "block000.mat" in status["response_files"]
    assert status["waiting_since"] <= status["updated"]
    assert any(m["kind"] == "rig" and m["text"].startswith("block 000: waiting for block000.mat")
               for m in status["messages"])
    assert not list(run_dir.glob(".*.tmp"))
    state = RunState(run_dir).snapshot()
    assert state["status"]["phase"] == "stopped" and state["recorded"] == 0 and state["last"] is None
