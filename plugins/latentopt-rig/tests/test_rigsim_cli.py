"""The command line: a rig session that times out stops with the resume command, and resumes;
``latentopt-rigsim`` refuses bad options in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.records import load_run

ENV = {**os.environ, "LATENTOPT_TCMALLOC": "0"}
OVERRIDES = [
    "subject=rig_native", "subject.poll_s=0.02", "subject.settle_s=0.05", "subject.timeout_s=0.5",
    "generator.image_size=32", "generator.max_frequency=2", "optimizer.population_size=6",
    "experiment.generations=2", "experiment.references=[camera]", "progress=false", "device=cpu",
    "experiment.threads={deepsim:{},biggan:{optimizer:{sigma0:0.2}}}",
]


def cli(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", f"from latentopt.cli import {entry}; {entry}()", *args],
                          env=ENV, capture_output=True, text=True, timeout=180)


def test_timeout_is_one_line_with_the_resume_command_then_resume_runs(tmp_path: Path, sim_factory: Any) -> None:
    exchange, run_dir = tmp_path / "exchange", tmp_path / "run"
    stopped = cli("main", *OVERRIDES, f"subject.exchange={exchange}", f"hydra.run.dir={run_dir}")
    assert stopped.returncode == 3, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    expected = r"latentopt: stopped: no response for block 000 after 0\.\d s \(expected block000\.mat or block000\.h5"
    assert re.match(expected, last)
    assert last.endswith(f"The run is resumable: latentopt-resume {run_dir}")
    assert (exchange / "block000.manifest.json").exists()
    sim_factory(exchange, protocol="native", fmt="npz")
    resumed = cli("resume_main", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    lines = [line for line in resumed.stderr.splitlines() if line.startswith("block ")]
    assert len(lines) == 2 and lines[0].startswith("block 0 | shown 13/13 | deepsim best ")
    assert " | biggan best " in lines[0] and " | waited " in lines[0]
    run = load_run(run_dir)
    assert set(run.threads) == {"deepsim", "biggan"} and np.isfinite(run.threads["biggan"].scores).all()


def test_rigsim_refuses_bad_options(tmp_path: Path) -> None:
    def rigsim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "latentopt_rig.simcli", str(tmp_path), *args], env=ENV,
                              capture_output=True, text=True, timeout=120)

    bad_fault = rigsim("--fault", "meteor@1")
    assert bad_fault.returncode == 2 and "unknown fault 'meteor'" in bad_fault.stderr
    bad_generations = rigsim("--fault", "missing@one")
    assert bad_generations.returncode == 2 and bad_generations.stderr.strip() == (
        "latentopt-rigsim: error: --fault missing@one: generations are 'all' or integers separated by commas")
    bad_format = rigsim("--protocol", "xdream", "--format", "csv")
    assert bad_format.returncode == 2 and "does not fit protocol xdream" in bad_format.stderr
    bad_subject = rigsim("--subject", "nobody")
    assert bad_subject.returncode == 2 and "no subject named 'nobody'" in bad_subject.stderr
