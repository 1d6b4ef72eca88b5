"""The example plugin's own tests: the contract, the registry, and an evolution through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from latentopt_example_generator import BlobsGenerator

import latentopt
from latentopt.plugins import build_registry
from latentopt.testing import check_generator


def test_contract():
    check_generator(BlobsGenerator.contract_instance())
    check_generator(BlobsGenerator(n_blobs=5, image_size=64, device="cpu"))


def test_registered_from_this_distribution():
    component = build_registry().get("generators", "example_blobs")
    assert component.factory is BlobsGenerator
    assert component.distribution.startswith("latentopt-example-generator ")


def test_evolution_runs_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    args = ["generator=example_blobs", "generator.image_size=64", "subject=gabor_v1", "optimizer=ga_ponce",
            "optimizer.population_size=12", "optimizer.n_elite=3", "experiment.generations=2",
            "experiment.references=[]", "progress=false", "device=cpu", f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "-c", "from latentopt.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    record = latentopt.load_run(run_dir)
    assert record.codes.shape == (2, 12, 48)
    assert json.loads((run_dir / "provenance.json").read_text())["generator"]["class"] == "BlobsGenerator"
