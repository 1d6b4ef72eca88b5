"""A non-editable install (pip install .) carries its configs and Hydra plugin: run from elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY


@pytest.mark.slow
def test_non_editable_install_runs_from_another_folder(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, text=True)
    assert (target / "latentopt" / "conf" / "config.yaml").exists()
    env = dict(os.environ, PYTHONPATH=str(target))
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import latentopt, sys; from latentopt.cli import main; "
         "assert latentopt.__file__.startswith(sys.argv.pop(1)), latentopt.__file__; main()", str(target),
         *TINY, "experiment.generations=2", f"hydra.run.dir={work / 'run'}"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (work / "run" / "generations" / "gen_00001.npz").exists()
