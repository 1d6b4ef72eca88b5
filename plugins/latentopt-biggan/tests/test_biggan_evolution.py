"""Evolutions in the BigGAN-deep spaces run end to end through the ``latentopt`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import latentopt
from latentopt_biggan.testing import tiny_config, write_random_model


@pytest.mark.parametrize(
    ("config", "space", "dim"),
    [("biggan_deep_256", "full", 256), ("biggan_deep_128", "class", 128), ("biggan_deep_512", "noise", 128)],
)
def test_evolution_with_biggan_runs_end_to_end(tmp_path, config, space, dim):
    resolution = int(config.rsplit("_", 1)[1])
    folder = write_random_model(tmp_path / "weights", tiny_config(resolution), seed=0)
    run_dir = tmp_path / "run"
    args = [f"generator={config}", f"generator.weights={folder}", "generator.download=false",
            f"generator.space={space}", "subject=gabor_v1", "optimizer=ga_ponce", "optimizer.population_size=8",
            "optimizer.n_elite=2", "experiment.generations=2", "experiment.references=[]", "progress=false",
            "device=cpu", f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "-c", "from latentopt.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    record = latentopt.load_run(run_dir)
    assert record.codes.shape == (2, 8, dim)
    provenance = json.loads((run_dir / "provenance.json").read_text())
    recorded = provenance["generator"]
    if space != "full":  # the subspace records itself and, under "base", the generator it wraps
        assert (recorded["class"], recorded["space"], recorded["free_dims"]) == ("BigGANSubspace", space, dim)
        recorded = recorded["base"]
    assert recorded["class"] == "BigGANGenerator" and recorded["model"] == f"biggan-deep-{resolution}"
    assert len(recorded["weights"]["state_dict"]["sha256"]) == 64
