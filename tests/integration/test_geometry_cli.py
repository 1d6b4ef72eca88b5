"""``latentopt-geometry compute``: a metric file that ``optimizer=hessian_cma`` reads as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

SMALL = ["generator=fourier", "generator.image_size=16", "generator.max_frequency=2", "device=cpu"]


def geometry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from latentopt.geometry_cli import main; main()", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_random_codes_give_a_metric_that_hessian_cma_runs_with(tmp_path: Path) -> None:
    """The eigenvalues are those of the exact Gauss-Newton Hessian of the generator (2 JᵀJ / P at the code)."""
    from latentopt.builtins.generators import FourierGenerator
    from latentopt_cmafamily.hessian import load_metric

    out = tmp_path / "metric.npz"
    done = geometry("compute", *SMALL, "--codes", "random", "--k", "6", "--trace-probes", "0", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.exists() and out.with_suffix(".png").stat().st_size > 5000
    eigvecs, eigvals = load_metric(out)
    assert eigvecs.shape == (90, 6) and np.all(np.diff(eigvals) <= 0)
    np.testing.assert_allclose(eigvecs.T @ eigvecs, np.eye(6), atol=1e-6)
    with np.load(out, allow_pickle=False) as data:
        provenance = json.loads(str(data["provenance"]))
    assert provenance["codes_source"]["random"].startswith("generator.initial_codes(1")
    assert provenance["generator_config"]["max_frequency"] == 2
    # the truth: the same code (seed [0, 7]) and the Jacobian of the generator there
    import torch

    generator = FourierGenerator(image_size=16, max_frequency=2, device="cpu")
    code = generator.initial_codes(1, rng=np.random.default_rng([0, 7]))[0]
    jac = torch.autograd.functional.jacobian(lambda z: generator._generate(z[None])[0].flatten(),
                                             torch.from_numpy(code)).double().numpy()
    truth = np.linalg.eigvalsh(2 * jac.T @ jac / jac.shape[0])[::-1][:6]
    np.testing.assert_allclose(eigvals, truth, rtol=1e-4)
    run = tmp_path / "run"
    done = run_cli([*SMALL, "subject=gabor_v1", "subject.size=16", "optimizer=hessian_cma",
                    f"optimizer.metric={out}", "optimizer.population_size=8", "experiment.generations=2",
                    "experiment.references=[]", "progress=false", f"hydra.run.dir={run}"], check=False)
    assert done.returncode == 0, done.stderr
    assert (run / "summary.json").exists()


def test_a_runs_best_codes_with_the_runs_own_generator(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = run_cli([*SMALL, "subject=gabor_v1", "subject.size=16", "optimizer=cmaes_diag",
                    "optimizer.population_size=6", "experiment.generations=2", "experiment.references=[]",
                    "progress=false", f"hydra.run.dir={run}"], check=False)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "m" / "metric.npz"
    done = geometry("compute", "device=cpu", "--codes", str(run), "--n-codes", "3", "--k", "4", "--trace-probes",
                    "8", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "% of the trace" in done.stdout
    with np.load(out, allow_pickle=False) as data:
        provenance = json.loads(str(data["provenance"]))
        assert data["eigvecs"].shape == (90, 4)
    assert provenance["n_codes"] == 3 and provenance["codes_source"]["run"] == str(run.absolute())
    assert provenance["generator_config"]["image_size"] == 16  # the run's, not the default 224
    assert 0 < provenance["variance_captured"] <= 1.5


@pytest.mark.parametrize("args, message", [
    (["subject=gabor_v1", "--codes", "random"], "'subject=gabor_v1': compute takes generator=NAME"),
    (["generator=nope", "--codes", "random"], "Could not find 'generator/nope'"),
    (["--codes", "/nonexistent/run"], "--codes: /nonexistent/run is neither 'random' nor a run folder"),
    ([*SMALL, "--codes", "random", "--distance", "lpipz"], "distance: unknown distance 'lpipz'"),
    ([*SMALL, "--codes", "random", "--n-codes", "0"], "--n-codes must be >= 1"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = geometry("compute", *args, "--out", str(tmp_path / "m.npz"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "m.npz").exists()


def test_an_existing_file_is_not_written_over(tmp_path: Path) -> None:
    out = tmp_path / "metric.npz"
    out.write_bytes(b"keep me")
    done = geometry("compute", *SMALL, "--codes", "random", "--k", "2", "--out", str(out))
    assert done.returncode == 2 and "exists" in done.stderr and out.read_bytes() == b"keep me"
