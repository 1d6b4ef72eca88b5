"""The benchmark suite runs its profiles through Hydra multirun launchers and summarises them."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "suite"


def run_suite(*args: str, weights_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """run.py in a subprocess; ``weights_dir`` is the weight cache it sees (default: an empty one)."""
    env = dict(os.environ)
    env["LATENTOPT_WEIGHTS_DIR"] = str(weights_dir or Path(tempfile.mkdtemp(prefix="latentopt-no-weights-")))
    env["PYTORCH_PRETRAINED_BIGGAN_CACHE"] = env["LATENTOPT_WEIGHTS_DIR"]
    return subprocess.run(
        [sys.executable, str(SUITE / "run.py"), *args], capture_output=True, text=True, check=False, timeout=600,
        env=env,
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
        assert float(row["subject_s"]) > 0 and float(row["optimizer_s"]) > 0 and float(row["generator_s"]) > 0
        assert 0 < float(row["evals_to_90"]) <= int(row["evaluations"])
        assert float(row["norm_natural"]) == pytest.approx(float(row["activation"]) / float(row["natural_reference"]))
    summary = (tmp_path / "summary.md").read_text()
    assert "| ga_ponce |" in summary and "torch" in summary
    # the smoke profile's DeePSim sweep needs real weights; with an empty cache it is left out, and said so
    status = json.loads((tmp_path / "generators.json").read_text())
    assert status["deepsim_fc6"].startswith("not run: DeePSim fc6 weights are not on this machine")
    assert "- deepsim_fc6: not run: DeePSim fc6 weights are not on this machine" in summary
    assert "- pixel: 4 runs (no weight file)" in summary
    assert "the best noise-free score of 5 Adam steps at lr 0.2 on the codes" in summary
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


@pytest.mark.slow
def test_slurm_launcher_config_runs_on_submitit_local_executor(tmp_path: Path) -> None:
    """The full profile's cluster config (hydra/launcher=slurm_cluster) through Hydra's real
    SlurmLauncher, with submitit's local executor standing in for SLURM."""
    dry = run_suite("--profile", "smoke", "--launcher", "slurm_cluster", "--out", str(tmp_path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    command = next(line for line in dry.stdout.splitlines() if " -m " in line).split()
    assert "hydra/launcher=slurm_cluster" in command
    env = {**os.environ, "SLURM_AS_LOCAL_RECORD": str(tmp_path / "launcher.json")}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("slurm_as_local.py")), *command[1:]],
        capture_output=True, text=True, check=False, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "runs").rglob("summary.json"))) == 4
    asked = json.loads((tmp_path / "launcher.json").read_text())
    assert asked["clusters"] == ["slurm"]
    parameters = asked["parameters"]  # conf/hydra/launcher/slurm_cluster.yaml, as SLURM would get it
    assert (parameters["timeout_min"], parameters["cpus_per_task"], parameters["mem_gb"]) == (120, 2, 8)
    assert parameters["slurm_array_parallelism"] == 64 and parameters["slurm_partition"] is None


def test_weight_sweeps_run_only_where_the_weights_are(tmp_path: Path) -> None:
    """A DeePSim file in the cache adds the profile's DeePSim sweep; an empty cache leaves it out."""
    without = run_suite("--profile", "smoke", "--dry-run")
    assert without.returncode == 0, without.stderr
    assert "generator=deepsim_fc6" not in without.stdout and "deepsim_fc6: not run:" in without.stdout
    (tmp_path / "deepsim").mkdir()
    (tmp_path / "deepsim" / "upconvGAN_fc6.pt").write_bytes(b"present")  # run.py only looks, never loads
    with_file = run_suite("--profile", "smoke", "--dry-run", weights_dir=tmp_path)
    assert with_file.returncode == 0, with_file.stderr
    assert "deepsim_fc6: included (real weights in the cache)" in with_file.stdout
    command = next(line for line in with_file.stdout.splitlines() if "generator=deepsim_fc6" in line)
    assert "experiment.budget=80" in command and "optimizer=ga_ponce,sep_cma" in command
    assert "generator.image_size" not in command  # the offline generators' overrides stay with their sweeps


def test_workers_auto_is_half_the_cores_at_least_two_and_bad_values_are_named(monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("suite_run", SUITE / "run.py")
    assert spec is not None and spec.loader is not None
    suite_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite_run)
    for cores, workers in [(1, 1), (2, 2), (3, 2), (4, 2), (8, 4), (None, 1)]:
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert suite_run.resolve_workers("auto") == workers, cores
    monkeypatch.undo()
    proc = run_suite("--profile", "smoke", "--launcher", "joblib", "--workers", "auto", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    workers = suite_run.resolve_workers("auto")
    if workers == 1:  # one worker: the runs go one after another, without a joblib pool
        assert "hydra/launcher=" not in proc.stdout
    else:
        assert f"hydra.launcher.n_jobs={workers}" in proc.stdout
    bad = run_suite("--profile", "smoke", "--workers", "many", "--dry-run")
    assert bad.returncode != 0 and "workers must be a number or 'auto', got 'many'" in bad.stderr


def test_a_profile_can_be_a_yaml_file(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("sweeps:\n  - optimizer: random\n    subject: v1_gabor\n")
    proc = run_suite("--profile", str(profile), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "optimizer=random subject=v1_gabor" in proc.stdout


def test_full_profile_targets_the_slurm_launcher() -> None:
    proc = run_suite("--profile", "full", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "hydra/launcher=slurm_cluster" in proc.stdout and "seed=0,1,2,3,4" in proc.stdout


@pytest.mark.slow
def test_a_profiles_metric_is_computed_before_the_sweep_that_reads_it(tmp_path: Path) -> None:
    """``metrics``: latentopt-geometry writes OUT/metrics/<name>.npz, then bench_hessian_cma runs on it."""
    profile = tmp_path / "hcma.yaml"
    profile.write_text(
        "common: [generator=pixel, generator.image_size=32, generator.resolution=4, subject.size=32,\n"
        "         experiment.budget=36, 'experiment.references=[astronaut]', experiment.reference_every=1]\n"
        "metrics:\n"
        "  pixel32: [generator=pixel, generator.image_size=32, generator.resolution=4, device=cpu,\n"
        "            --codes=random, --n-codes=2, --k=12]\n"
        "sweeps:\n"
        "  - optimizer: bench_hessian_cma\n"
        "    optimizer.metric: '{metrics}/pixel32.npz'\n"
        "    optimizer.population_size: '12'\n"
        "    subject: v1_gabor\n"
        "    objective.channel: '0'\n"
        "    seed: '0'\n"
    )
    out = tmp_path / "out"
    proc = run_suite("--profile", str(profile), "--out", str(out), "--no-summary")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metric = np.load(out / "metrics" / "pixel32.npz")
    assert metric["eigvecs"].shape == (48, 12) and metric["eigvals"].shape == (12,)
    (summary,) = list((out / "runs").rglob("summary.json"))
    provenance = json.loads((summary.parent / "provenance.json").read_text())
    optimizer = provenance["optimizer"]
    assert optimizer["metric"] == str(out / "metrics" / "pixel32.npz") and optimizer["rank"] == 12
    # step_rms 1.5: σ0 x RMS(λ^-0.4) over the metric's eigenvalues is bench_sep_cma's σ0
    step_scale = metric["eigvals"].astype(float) ** -0.4
    assert optimizer["step_rms"] == 1.5
    assert optimizer["sigma0"] * np.sqrt(np.mean(step_scale**2)) == pytest.approx(1.5, rel=1e-6)
