"""Every registered experiment passes the same contract (records, provenance, resume = uninterrupted), and a
third-party experiment registered through ``latentopt_register_experiments`` gets all of that for free."""

from __future__ import annotations

import json
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentopt.blocks import show_block
from latentopt.checks import integer
from latentopt.experiment import Experiment, GenerationResult
from latentopt.launch import run_experiment
from latentopt.plugins import build_registry, default_registry, get_plugin_manager, hookimpl
from latentopt.records import block_record, load_run
from latentopt.testing import check_experiment

TINY = {"seed": 3, "device": "cpu", "progress": False,
        "generator": {"name": "pixel", "image_size": 32, "resolution": 4},
        "subject": {"name": "gabor_v1", "size": 32, "noise": {"kind": "poisson", "level": 0.0, "gain": 5.0},
                    "device": "cpu"},
        "objective": {"name": "single_unit"}}


class LineScan(Experiment):
    """A third party's fixed-design experiment: images along one axis of code space, a few per block."""

    def __init__(self, generator: Any, subject: Any, objective: Any, *, steps: int, per_block: int, seed: int):
        self.generator, self.subject, self.objective, self.seed = generator, subject, objective, seed
        axis = np.zeros(generator.latent_dim, dtype=np.float32)
        axis[0] = 1.0
        self.codes = np.linspace(-3, 3, steps, dtype=np.float32)[:, None] * axis
        self.per_block = per_block

    def total_blocks(self) -> int:
        return -(-len(self.codes) // self.per_block)

    def finished(self, block: int) -> bool:
        return block >= self.total_blocks()

    def step(self, block: int) -> GenerationResult:
        index = np.arange(block * self.per_block, min(len(self.codes), (block + 1) * self.per_block))
        ids = [f"axis_{k:03d}" for k in index]
        t0 = time.perf_counter()
        shown = show_block(self.subject, block, [(ids, self.generator.generate(self.codes[index]))],
                           size=self.generator.image_size, seed=self.seed)
        scores = np.asarray(self.objective.score(shown.responses), dtype=np.float64)
        timings = {"generator_s": 0.0, "subject_s": shown.subject_s, "total_s": time.perf_counter() - t0}
        if self.recorder is not None:
            self.recorder.write_generation(block, block_record(shown, experiment=self.name, timings=timings,
                                                               design={"index": index, "scores": scores}))
        return GenerationResult(block, shown.image_ids, shown.owner, shown.responses, {"axis": scores}, {}, timings)

    def design(self) -> dict[str, Any]:
        return {"codes": self.codes}

    def provenance(self) -> dict[str, Any]:
        return {"experiment": {"name": self.name, **self.component_provenance.get("experiment", {})},
                "subject": {**self.component_provenance.get("subject", {}), **self.subject.provenance()}}

    def report(self, run_dir: Path) -> dict[str, Any]:
        return {"generations": load_run(run_dir).generations, "headline": "line scan recorded"}

    def components(self) -> list[Any]:
        return [self.generator, self.subject]


def line_scan(config: dict[str, Any], assembly: Any) -> LineScan:
    exp = config["experiment"]
    subject = assembly.subject()
    experiment = LineScan(assembly.generator(config["generator"]), subject,
                            assembly.objective(config["objective"], "objective", subject.n_channels),
                            steps=integer(exp.get("steps", 9), "experiment.steps", minimum=2),
                            per_block=integer(exp.get("per_block", 4), "experiment.per_block", minimum=1),
                            seed=assembly.seed)
    experiment.component_provenance = assembly.provenance
    return experiment


@pytest.fixture(scope="module")
def third_party_registry():
    module = types.ModuleType("line_scan_plugin")

    def latentopt_register_experiments(register):
        register("line_scan", line_scan)

    module.latentopt_register_experiments = hookimpl(latentopt_register_experiments)
    pm = get_plugin_manager(entry_points=False)
    pm.register(module, name="line_scan_plugin")
    return build_registry(pm)


def _codes_file(folder: Path) -> Path:
    """Codes of a pretend 4-generation evolution in the pixel generator's 48-d space (PCs well defined)."""
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((4, 40, 48)) * np.linspace(2, 0.2, 48)
    codes[-1] += 2.0
    path = folder / "codes.npz"
    np.savez(path, codes=codes.astype(np.float32))
    return path


def _axis_files(folder: Path) -> tuple[Path, Path]:
    """A code z0 and a random orthonormal 'metric' (6 eigenvectors) in the pixel generator's 48-d space."""
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.standard_normal((48, 6)))
    np.savez(folder / "metric.npz", eigvecs=basis, eigvals=np.logspace(0, -2, 6))
    np.savez(folder / "code.npz", code=(0.5 * rng.standard_normal(48)).astype(np.float32))
    return folder / "code.npz", folder / "metric.npz"


CNN = {"name": "cnn_unit", "layer": "V1", "channels": [0, 1], "noise": {"kind": "multiplicative", "level": 0.1},
       "device": "cpu"}


def _twin(folder: Path) -> Path:
    """A twin of :data:`CNN`'s channels, fitted on a small natural-set session."""
    from latentopt.twin.session import fit_from_runs

    config = {**TINY, "subject": CNN, "experiment": {"name": "natural", "natural": {"set": "natural", "n": 20},
                                                     "repeats": 2, "block_size": 20, "image_size": 32}}
    run_experiment(config, folder / "natural_session", config_yaml=json.dumps(config))
    fit_from_runs([folder / "natural_session"], folder / "twin", layers=["_blocks.2"], device="cpu",
                  cache_folder=folder / "cache", folds=3)
    return folder / "twin"


def _contract_config(name: str, folder: Path) -> dict[str, Any]:
    """A small config of each built-in experiment (a registered experiment without one fails the meta-test)."""
    if name == "evolve":
        return {**TINY, "optimizer": {"name": "cmaes", "population_size": 6, "sigma0": 0.5, "diagonal": True},
                "experiment": {"name": "evolve", "generations": 3, "references": ["coffee"]}}
    if name == "manifold":
        return {**TINY, "experiment": {"name": "manifold", "codes": str(_codes_file(folder)), "grid": 5,
                                       "n_components": 10, "spheres": ["PC1_PC2_PC3", "PC1_RND1_RND2"],
                                       "block_size": 12, "repeats": 2, "references": ["coffee"],
                                       "reference_every": 2}}
    if name == "axis_tuning":
        code, metric = _axis_files(folder)
        return {**TINY, "experiment": {"name": "axis_tuning", "code": str(code), "metric": str(metric), "axes": 2,
                                       "random_axes": 1, "distances": [-1.0, -0.5, 0.0, 0.5, 1.0], "repeats": 2,
                                       "block_size": 8, "references": ["coffee"], "reference_every": 2}}
    if name == "alignment":
        return {**TINY, "optimizer": {"name": "cmaes", "population_size": 6, "sigma0": 0.5, "diagonal": True},
                "experiment": {"name": "alignment", "generations": 3, "references": ["coffee"], "generators": {
                    "pixel": TINY["generator"],
                    "fourier": {"name": "fourier", "image_size": 32, "max_frequency": 2, "device": "cpu"}}}}
    if name == "natural":
        return {**TINY, "experiment": {"name": "natural", "natural": {"set": "natural", "n": 12}, "repeats": 2,
                                       "block_size": 10, "image_size": 16}}
    if name == "control":
        return {**TINY, "subject": CNN, "experiment": {
            "name": "control", "twin": {"path": str(_twin(folder))}, "natural": {"set": "natural", "n": 12},
            "controllers": {"stretch": [0], "one_hot": [1]}, "synthesis": {"steps": 3, "starts": 1},
            "repeats": 2, "block_size": 10, "image_size": 32}}
    raise AssertionError(f"experiment {name!r} has no contract config in {__file__}")


@pytest.mark.parametrize("name", default_registry().names("experiments"))
def test_every_registered_experiment_passes_the_contract(name, tmp_path):
    check_experiment(_contract_config(name, tmp_path), tmp_path, stop_after=1)


def test_a_third_party_experiment_gets_records_resume_and_provenance(third_party_registry, tmp_path):
    config = {**TINY, "experiment": {"name": "line_scan", "steps": 9, "per_block": 4}}
    check_experiment(config, tmp_path, registry=third_party_registry, stop_after=2)
    provenance = json.loads((tmp_path / "full" / "provenance.json").read_text())
    assert provenance["experiment"] == {"name": "line_scan", "distribution": "registered at run time"}
    assert provenance["subject"]["name"] == "gabor_v1" and "built-in" in provenance["subject"]["distribution"]
    record = load_run(tmp_path / "resumed")
    assert record.generations == 3 and record.experiment == "line_scan"
    assert [str(i) for i in record.block(2).image_ids] == ["axis_008"]


def test_an_unknown_experiment_name_is_one_error_naming_the_known_ones(tmp_path):
    from latentopt.assembly import build_experiment
    from latentopt.plugins import PluginError

    with pytest.raises(PluginError, match=r"no experiment named 'tunning'.*evolve.*manifold"):
        build_experiment({**TINY, "experiment": {"name": "tunning"}})
