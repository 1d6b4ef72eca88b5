"""An evolution in the DeePSim fc6 space runs end to end through the ``latentopt`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import latentopt
from latentopt.weights import sha256_file


def test_evolution_with_deepsim_fc6_runs_end_to_end(fc6_file, tmp_path):
    run_dir = tmp_path / "run"
    args = ["generator=deepsim_fc6", f"generator.weights={fc6_file}", "generator.download=false",
            "subject=gabor_v1", "optimizer=ga_ponce", "optimizer.population_size=8", "optimizer.n_elite=2",
            "experiment.generations=2", "experiment.references=[]", "progress=false", "device=cpu",
            f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "-c", "from latentopt.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    record = latentopt.load_run(run_dir)
    assert record.codes.shape == (2, 8, 4096)
    assert record.scores.shape == (2, 8)
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["generator"]["weights"]["sha256"] == sha256_file(fc6_file)
    assert provenance["generator"]["variant"] == "fc6"


def test_missing_weights_offline_stop_the_command_with_one_line(tmp_path):
    args = ["generator=deepsim_fc6", "subject=gabor_v1", "experiment.generations=1", "experiment.references=[]",
            "progress=false", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # the fixture's empty cache, dead URL
    proc = subprocess.run([sys.executable, "-c", "from latentopt.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "upconvGAN_fc6.pt" in lines[0] and "latentopt-deepsim-weights import fc6" in lines[0]
