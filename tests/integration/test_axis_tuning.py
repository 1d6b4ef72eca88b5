"""The axis-tuning experiment end to end against ground truth, from an evolution, resumed, and fed bad input.

Ground truth: the pixel generator at ``image_size = resolution = 16`` makes ``image = sigmoid(code)`` pixel for
pixel (its bilinear resize to the same size is the identity), so a subject can read the code back exactly
(``code = logit(image)``, float32 rounding ~1e-4) and respond to its projections on chosen directions. The
test's "metric" is a random orthonormal basis ``e1..e8`` of code space (d = 768); the subject responds
``1 + 4 exp(−(p1 − peak)² / (2 w²)) + slope · p2`` (+ noise) with ``p_i = code · e_i``. Along ``e1`` the
curve is a Gaussian centred at ``peak − z0·e1`` (0.2 ‖z0‖) of width ``w`` (0.3 ‖z0‖); along ``e2`` it is a
line of the given slope; along ``e3..e8`` (orthogonal to both) it is flat; a random unit axis has projections
of order 1/√768 on ``e1``, ``e2``: almost flat. The truth is exact in code space: no Jacobian is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from latentopt.checks import ConfigError
from latentopt.experiments.axis_tuning_report import load_axis_tuning
from latentopt.launch import run_experiment
from latentopt.plugins import build_registry, get_plugin_manager, hookimpl
from latentopt.records import GENERATION_DIR, RecordError, load_run
from latentopt.subject import Subject

SIDE = 16
D = 3 * SIDE * SIDE


class ProjectionNeuron(Subject):
    """Responds to the projections of the code inside a pixel-generator image (see the module docstring)."""

    def __init__(self, *, e1: list[float], e2: list[float], peak: float, width: float, slope: float,
                 noise: float = 0.0) -> None:
        self.channel_names = ["projection"]
        self.e1, self.e2 = np.asarray(e1), np.asarray(e2)
        self.peak, self.width, self.slope, self.noise = peak, width, slope, noise

    def truth(self, codes: np.ndarray) -> np.ndarray:
        p1, p2 = codes @ self.e1, codes @ self.e2
        return 1.0 + 4.0 * np.exp(-0.5 * ((p1 - self.peak) / self.width) ** 2) + self.slope * p2

    def respond(self, images: torch.Tensor, *, image_ids: Any, rng: np.random.Generator) -> np.ndarray:
        codes = torch.logit(images.double().clamp(1e-9, 1 - 1e-9)).reshape(images.shape[0], -1).numpy()
        r = self.truth(codes)
        return (r + self.noise * rng.standard_normal(r.shape))[:, None]


@pytest.fixture(scope="module")
def registry():
    module = types.ModuleType("projection_test_plugin")

    def latentopt_register_subjects(register):
        register("projection_neuron", lambda **kw: ProjectionNeuron(**kw))

    module.latentopt_register_subjects = hookimpl(latentopt_register_subjects)
    pm = get_plugin_manager(entry_points=False)
    pm.register(module, name="projection_test_plugin")
    return build_registry(pm)


def _basis(d: int, k: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))
    return q


def _truth_files(tmp: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """``code.npz`` (z0), ``metric.npz`` (8 orthonormal eigenvectors, eigenvalues falling), z0 and the basis."""
    basis = _basis(D, 8, seed=11)
    z0 = 0.5 * np.random.default_rng(12).standard_normal(D)
    np.savez(tmp / "metric.npz", eigvecs=basis, eigvals=np.logspace(0, -3, 8))
    np.savez(tmp / "code.npz", code=z0)
    return tmp / "code.npz", tmp / "metric.npz", z0, basis


def _truth_config(tmp: Path, *, noise: float, **experiment: Any) -> tuple[dict[str, Any], dict[str, float]]:
    code, metric, z0, basis = _truth_files(tmp)
    norm = float(np.linalg.norm(z0))
    truth = {"centre": 0.2 * norm, "width": 0.3 * norm, "slope": 2.0 / norm}
    subject = {"name": "projection_neuron", "e1": basis[:, 0].tolist(), "e2": basis[:, 1].tolist(),
               "peak": float(z0 @ basis[:, 0]) + truth["centre"], "width": truth["width"], "slope": truth["slope"],
               "noise": noise}
    config = {"seed": 0, "device": "cpu", "progress": False,
              "generator": {"name": "pixel", "image_size": SIDE, "resolution": SIDE, "device": "cpu"},
              "subject": subject, "objective": {"name": "single_unit"},
              "experiment": {"name": "axis_tuning", "code": str(code), "metric": str(metric),
                             "references": ["coffee"], **experiment}}
    return config, truth


def _run(config: dict[str, Any], out: Path, registry: Any = None) -> Path:
    run_experiment(config, out, config_yaml=json.dumps(config), registry=registry)
    return out


def _by_name(out: Path) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in json.loads((out / "axis_tuning.json").read_text())["axes"]}


def test_known_tuning_is_recovered_through_the_whole_pipeline(tmp_path, registry):
    """Noise sd 0.2 (5 % of the bell's amplitude), 2 repeats, the default 9 distances, 8 top and 4 random axes:
    e1 is bell-shaped with its centre within 0.2 widths and its width within 25 % (the unit tests' tolerances
    for this noise and sampling), e2 monotonic with the slope within 10 %, the orthogonal e3..e8 and the random
    axes never bell-shaped and (e3..e8) at most one of six called tuned."""
    config, truth = _truth_config(tmp_path, noise=0.2)
    out = _run(config, tmp_path / "out", registry)
    axes = _by_name(out)
    assert list(axes) == [f"eig{r}" for r in range(1, 9)] + [f"rnd{j}" for j in range(1, 5)]
    bell = axes["eig1"]
    assert bell["classification"] == "bell-shaped" and bell["anova_p"] < 1e-6, bell
    assert abs(bell["gaussian"]["centre"] - truth["centre"]) < 0.2 * truth["width"], bell["gaussian"]
    assert abs(bell["gaussian"]["width"] - truth["width"]) < 0.25 * truth["width"], bell["gaussian"]
    ramp = axes["eig2"]
    assert ramp["classification"] == "monotonic" and ramp["anova_p"] < 1e-6, ramp
    assert abs(ramp["linear"]["slope"] - truth["slope"]) < 0.1 * truth["slope"], ramp["linear"]
    nulls = [axes[f"eig{r}"] for r in range(3, 9)]
    assert all(a["classification"] != "bell-shaped" for a in nulls), nulls
    assert sum(a["classification"] == "flat" for a in nulls) >= 5, [(a["name"], a["anova_p"]) for a in nulls]
    randoms = [axes[f"rnd{j}"] for j in range(1, 5)]
    assert all(a["classification"] != "bell-shaped" for a in randoms), randoms
    assert axes["eig1"]["eigenvalue"] == pytest.approx(1.0) and axes["rnd1"]["eigenvalue"] is None
    # the records: 12 axes x 8 distances + z0 once, 2 repeats, in blocks of 40 with the reference in each
    record = load_axis_tuning(out)
    assert len(record.design.image_ids) == 12 * 8 + 1 and record.trials.shape[:2] == (97, 2)
    assert np.isfinite(record.trials).all() and load_run(out).generations == -(-194 // 40)
    assert record.reference_ids == ["ref_coffee"] and np.isfinite(record.reference_responses).all()
    csv_rows = (out / "axis_tuning.csv").read_text().splitlines()
    assert len(csv_rows) == 13 and csv_rows[1].startswith("eig1,top,1,1,bell-shaped,True,")
    assert (out / "axis_tuning.png").stat().st_size > 20_000
    assert (out / "axis_tuning_images.png").stat().st_size > 5_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["top"]["bell-shaped"] == 1 and summary["counts"]["random"]["bell-shaped"] == 0
    assert summary["headline"].startswith("axis_tuning: top 8: 1 bell-shaped, 1 monotonic, 6 flat | random 4: ")
    # latentopt-analyze axis_tuning re-runs the analysis on the recorded responses: the same verdicts by
    # default; with --alpha 0 nothing is tuned, so every curve is flat
    from latentopt.cli import analyze_main

    analyze_main(["axis_tuning", str(out), "--out", str(tmp_path / "again")])
    assert {n: a["classification"] for n, a in _by_name(tmp_path / "again").items()} == {
        n: a["classification"] for n, a in axes.items()}
    analyze_main(["axis_tuning", str(out), "--alpha", "0", "--out", str(tmp_path / "strict")])
    assert {a["classification"] for a in _by_name(tmp_path / "strict").values()} == {"flat"}


def test_noise_free_curves_are_the_truth_at_every_distance(tmp_path, registry):
    """Without noise the recorded means are the subject's function of the design's codes (to float32 pixel
    rounding) and the classes hold without an ANOVA (it does not apply: no trial variance)."""
    config, _ = _truth_config(tmp_path, noise=0.0, axes=[1, 2], random_axes=0, repeats=1, block_size=9)
    out = _run(config, tmp_path / "out", registry)
    record = load_axis_tuning(out)
    subject = ProjectionNeuron(**{k: v for k, v in config["subject"].items() if k != "name"})
    np.testing.assert_allclose(record.trials[:, 0, 0], subject.truth(record.design.codes.astype(np.float64)),
                               rtol=0, atol=2e-3)
    z0 = np.load(config["experiment"]["code"])["code"]
    np.testing.assert_allclose(record.design.codes[record.design.grid_index[0]],
                               z0 + np.outer(record.design.distances, record.design.directions[0]), atol=1e-5)
    axes = _by_name(out)
    assert axes["eig1"]["anova_p"] is None and axes["eig1"]["classification"] == "bell-shaped"
    assert axes["eig2"]["classification"] == "monotonic"


# ---------------------------------------------------------------------------- after an evolution
TINY = {"seed": 2, "device": "cpu", "progress": False,
        "generator": {"name": "pixel", "image_size": 16, "resolution": 4, "device": "cpu"},
        "subject": {"name": "gabor_v1", "size": 16, "noise": {"kind": "poisson", "gain": 5.0}, "device": "cpu"},
        "objective": {"name": "single_unit"}}


@pytest.fixture(scope="module")
def evolution(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-generation evolution of a Gabor cell in the pixel generator's 48-d space, and a 4-axis metric."""
    folder = tmp_path_factory.mktemp("evolution")
    config = {**TINY, "optimizer": {"name": "cmaes", "population_size": 6, "sigma0": 0.5, "diagonal": True},
              "experiment": {"name": "evolve", "generations": 2, "references": []}}
    _run(config, folder / "run")
    np.savez(folder / "metric.npz", eigvecs=_basis(48, 4, seed=1), eigvals=np.array([4.0, 3.0, 2.0, 1.0]))
    return folder / "run", folder / "metric.npz"


def _follow_up(run: Path, metric: Path, **experiment: Any) -> dict[str, Any]:
    """An axis tuning of ``run`` with nothing but its experiment group: the components are inherited."""
    return {"seed": 2, "device": "cpu", "progress": False,
            "experiment": {"name": "axis_tuning", "source": str(run), "metric": str(metric), "axes": 2,
                           "random_axes": 1, "distances": [-1.0, -0.5, 0.0, 0.5, 1.0], "repeats": 2,
                           "block_size": 8, "references": ["coffee"], **experiment}}


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but the lock's (it records who held the folder last, a refused resume included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


def test_from_an_evolution_z0_is_the_best_of_its_last_generation_and_the_components_are_its_own(evolution,
                                                                                                tmp_path):
    run, metric = evolution
    before = _snapshot(run)
    out = _run(_follow_up(run, metric), tmp_path / "out")
    source = load_run(run)
    last = source.scores[-1]
    best = int(np.nanargmax(last))
    record = load_axis_tuning(out)
    np.testing.assert_array_equal(record.design.centre, source.codes[-1, best].astype(np.float64))
    provenance = json.loads((out / "provenance.json").read_text())
    described = provenance["experiment"]["source"]
    assert described["member"] == best and described["generation"] == 1 and described["score"] == last[best]
    assert described["inherited"] == ["generator", "objective", "subject"]
    assert provenance["subject"]["class"] == "GaborV1Subject" and provenance["generator"]["resolution"] == 4
    assert provenance["experiment"]["metric"] == str(metric.absolute())
    assert provenance["experiment"]["axes"] == ["eig1", "eig2", "rnd1"]
    assert record.design.scale == pytest.approx(np.linalg.norm(source.codes[-1, best]))
    assert _snapshot(run) == before  # the source run is only read


def test_a_resume_restores_the_design_and_refuses_a_changed_one(evolution, tmp_path):
    run, metric = evolution
    config = _follow_up(run, metric)
    full = _run(config, tmp_path / "full")
    blocks = load_run(full).generations
    assert blocks == -(-26 // 8)  # 3 axes x 4 distances + z0, 2 repeats, 8 per block
    killed = tmp_path / "killed"
    shutil.copytree(full, killed)
    for g in range(2, blocks):
        (killed / GENERATION_DIR / f"gen_{g:05d}.npz").unlink()
    stopped = _snapshot(killed)
    # the metric file changed since the run started: the design rebuilt now differs, nothing is added
    changed = tmp_path / "changed.npz"
    np.savez(changed, eigvecs=_basis(48, 4, seed=2), eigvals=np.array([4.0, 3.0, 2.0, 1.0]))
    other = _follow_up(run, changed)
    with pytest.raises(RecordError, match=r"design.npz differs from the design this config builds now"):
        run_experiment(other, killed, config_yaml=json.dumps(other), resume=True)
    assert _snapshot(killed) == stopped
    # a metric file that became a pickle: one line naming it, the run left as it was
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, eigvecs=np.array([np.eye(2)], dtype=object), eigvals=np.ones(2))
    bad = _follow_up(run, pickled)
    with pytest.raises(ConfigError, match=r"experiment.metric: .*pickled.npz: array 'eigvecs' is a pickled object"):
        run_experiment(bad, killed, config_yaml=json.dumps(bad), resume=True)
    assert _snapshot(killed) == stopped
    # the unchanged config goes on where the run stopped and ends as the uninterrupted run
    run_experiment(config, killed, config_yaml=json.dumps(config), resume=True)
    np.testing.assert_array_equal(load_axis_tuning(killed).trials, load_axis_tuning(full).trials)
    assert json.loads((killed / "axis_tuning.json").read_text())["axes"] == \
        json.loads((full / "axis_tuning.json").read_text())["axes"]


def _write_metric(folder: Path, **arrays: Any) -> Path:
    path = folder / "bad_metric.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(("change", "expected"), [
    (lambda f, m: {"metric": None}, "experiment.metric: give the .npz of the generator's metric"),
    (lambda f, m: {"metric": str(f / "missing.npz")}, "experiment.metric: {f}/missing.npz does not exist"),
    (lambda f, m: {"metric": str(_write_metric(f, eigvecs=_basis(40, 4, 0), eigvals=np.ones(4)))},
     "experiment.metric: {f}/bad_metric.npz: eigvecs has d = 40 rows but the generator takes d = 48"),
    (lambda f, m: {"metric": str(_write_metric(f, eigvecs=np.array([np.eye(3)], dtype=object),
                                               eigvals=np.ones(3)))},
     "experiment.metric: {f}/bad_metric.npz: array 'eigvecs' is a pickled object array"),
    (lambda f, m: {"metric": str(_write_metric(f, eigvecs=_basis(48, 4, 0)))},
     "experiment.metric: {f}/bad_metric.npz holds no array 'eigvals' (it has eigvecs)"),
    (lambda f, m: {"axes": 5}, "experiment.axes: rank 5 asked for, but {m} holds 4 eigenvectors"),
    (lambda f, m: {"axes": [1, 1]}, "experiment.axes must list different ranks"),
    (lambda f, m: {"distances": [0.0, 1.0, 2.0, 3.0]}, "experiment.distances must hold at least 5 different"),
    (lambda f, m: {"distances_scale": "percent"}, "experiment.distances_scale must be one of norm, absolute"),
    (lambda f, m: {"axes": 0, "random_axes": 0}, "the design needs at least one axis"),
    (lambda f, m: {"source": None}, "experiment.source (a run folder) or experiment.code"),
    (lambda f, m: {"inherit": ["optimizer"]}, "experiment.inherit must list groups of generator, subject"),
])
def test_bad_input_is_one_line_naming_the_key_and_file_and_writes_nothing(evolution, tmp_path, change, expected):
    run, metric = evolution
    config = _follow_up(run, metric)
    config["experiment"].update(change(tmp_path, metric))
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as caught:
        run_experiment(config, out, config_yaml=json.dumps(config))
    message = str(caught.value)
    assert expected.format(f=tmp_path, m=metric) in message and "\n" not in message, message
    assert not any(out.rglob("*"))  # the folder the runner made is empty (the command line removes it)


def test_a_code_of_another_dimension_is_refused(tmp_path):
    np.savez(tmp_path / "code.npz", code=np.zeros(40))
    np.savez(tmp_path / "metric.npz", eigvecs=_basis(48, 4, 0), eigvals=np.ones(4))
    config = {**TINY, "experiment": {"name": "axis_tuning", "code": str(tmp_path / "code.npz"),
                                     "metric": str(tmp_path / "metric.npz"), "axes": 2, "references": []}}
    with pytest.raises(ConfigError, match=r"^experiment.code: its code has 40 dimensions but the generator takes 48"):
        run_experiment(config, tmp_path / "out", config_yaml=json.dumps(config))


# ---------------------------------------------------------------------------- the command line
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from latentopt.cli import main; main()", *args],
                          env={**os.environ, "LATENTOPT_TCMALLOC": "0"}, capture_output=True, text=True,
                          timeout=300)


def test_analyze_of_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    from latentopt.cli import analyze_main

    with pytest.raises(SystemExit) as exit_info:
        analyze_main(["axis_tuning", str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("latentopt: error: ") and "nothing" in message and "\n" not in message


def test_the_documented_command_runs_and_a_missing_metric_is_one_line(evolution, tmp_path):
    run, metric = evolution
    small = ["experiment.axes=2", "experiment.random_axes=1", "experiment.distances=[-1,-0.5,0,0.5,1]",
             "experiment.references=[]", "progress=false", "device=cpu"]
    out = tmp_path / "out"
    done = _cli("experiment=axis_tuning", f"experiment.source={run}", f"experiment.metric={metric}",
                f"hydra.run.dir={out}", *small)
    assert done.returncode == 0, done.stderr
    assert "axis_tuning: top 2: " in done.stdout and "random 1: " in done.stdout
    assert {"axis_tuning.json", "axis_tuning.csv", "axis_tuning.png", "design.npz"} <= {p.name for p in out.iterdir()}
    import yaml

    recorded = yaml.safe_load((out / "config.yaml").read_text())["experiment"]
    assert recorded["inherit"] == ["generator", "subject", "objective"] and recorded["alpha"] == 0.01
    failed = _cli("experiment=axis_tuning", f"experiment.source={run}", f"hydra.run.dir={tmp_path / 'bad'}", *small)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "experiment.metric: give the .npz" in lines[0], failed.stderr
    assert not (tmp_path / "bad").exists()
