"""The benchmark suite runs its profiles through Hydra multirun launchers and summarises them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "suite"


def run_suite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUITE / "run.py"), *args], capture_output=True, text=True, check=False, timeout=600
    )


@pytest.mark.slow
def test_smoke_profile_writes_csv_table_and_plot(tmp_path: Path) -> None:
    proc = run_suite("--profile", "smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["optimizer"] for r in rows} == {"ga_ponce", "bench_sep_cma"}
    assert {r["noise"] for r in rows} == {"none", "mult05"}
    for row in rows:
        assert 0 < float(row["norm_best_ever"]) <= 1.0 + 1e-9
        assert float(row["gradient_reference"]) > 0 and float(row["natural_reference"]) > 0
        assert float(row["subject_s"]) > 0 and float(row["optimizer_s"]) > 0
    summary = (tmp_path / "summary.md").read_text()
    assert "| ga_ponce |" in summary and "torch" in summary and "DeePSim/BigGAN: not run" in summary
    assert "Runs: 4 finished\n" in summary  # Hydra's .hydra/config.yaml copies are not runs
    assert (tmp_path / "trajectories.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_run_every_job(tmp_path: Path, launcher: str) -> None:
    """joblib (local parallelism) and submitit's local executor (the cluster launcher, tested here)."""
    proc = run_suite(
        "--profile", "smoke", "--launcher", launcher, "--workers", "2", "--out", str(tmp_path), "--no-summary"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    finished = list((tmp_path / "runs").rglob("summary.json"))
    assert len(finished) == 4


def test_full_profile_targets_the_slurm_launcher() -> None:
    proc = run_suite("--profile", "full", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "hydra/launcher=slurm_cluster" in proc.stdout and "seed=0,1,2,3,4" in proc.stdout
