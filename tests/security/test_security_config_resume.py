"""Resume overrides: what may change is recorded; everything else is one line and touches nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import TINY, run_cli
from omegaconf import OmegaConf

import latentopt
from latentopt.cli import resume_main
from latentopt.resume_policy import RESUMABLE_KEYS, allowed_keys, apply_overrides


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    run_cli([*TINY, "experiment.generations=3", "subject.noise.kind=poisson", f"hydra.run.dir={run_dir}"])
    return run_dir


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# (override, the key the one-line refusal names)
REFUSED = [
    ("seed=9", "seed"),
    ("subject.noise.gain=50", "subject.noise.gain"),
    ("optimizer.sigma0=0.1", "optimizer.sigma0"),  # not a key of the GA this run uses
    ("optimizer.population_size=10", "optimizer.population_size"),
    ("optimizer.mutation_size=0.1", "optimizer.mutation_size"),
    ("optimizer=random", "optimizer"),
    ("generator.init_scale=0.3", "generator.init_scale"),
    ("generator=fourier", "generator"),
    ("+generator.extra=1", "generator.extra"),
    ("~experiment.references", "experiment.references"),
    ("objective.channel=1", "objective.channel"),
    ("subject.device=cpu:1", "subject.device"),
    ("experiment.generations=1e23", "experiment.generations"),
    ("experiment.generations=abc", "experiment.generations"),
    ("experiment.budget=-5", "experiment.budget"),
    ("progress=maybe", "progress"),
    ("device=tpu", "device"),
    ("experiment.generations", "experiment.generations"),
]


@pytest.mark.parametrize(("override", "key"), REFUSED, ids=[o for o, _ in REFUSED])
def test_resume_refuses_with_one_line_and_leaves_the_folder_as_it_was(finished_run, override, key, capsys,
                                                                        monkeypatch):
    monkeypatch.setenv("LATENTOPT_TCMALLOC", "0")
    before = _snapshot(finished_run)
    with pytest.raises(SystemExit) as info:
        resume_main([str(finished_run), "experiment.generations=4", override])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert info.value.code == 2
    assert len(err) == 1 and err[0].startswith("latentopt: error:") and key in err[0], err
    assert _snapshot(finished_run) == before


def test_resume_with_unchanged_values_is_accepted_whatever_the_key(finished_run):
    cfg = OmegaConf.load(finished_run / "config.yaml")
    merged, changes = apply_overrides(cfg, ["seed=0", "optimizer.population_size=12", "subject.noise.kind=poisson"])
    assert changes == {} and merged == cfg


def test_rig_subject_may_change_its_waiting_keys_only():
    rig = OmegaConf.create({"seed": 0, "subject": {"name": "rig", "timeout_s": 600, "poll_s": 0.025, "n_channels": 1},
                            "experiment": {"generations": 3}})
    assert "subject.timeout_s" in allowed_keys(rig)
    merged, changes = apply_overrides(rig, ["subject.timeout_s=1200", "experiment.generations=9"])
    assert changes == {"subject.timeout_s": {"old": 600, "new": 1200},
                       "experiment.generations": {"old": 3, "new": 9}}
    assert merged.subject.timeout_s == 1200 and rig.subject.timeout_s == 600
    with pytest.raises(ValueError, match=r"subject\.n_channels cannot change on resume"):
        apply_overrides(rig, ["subject.n_channels=2"])
    # docs/rig.md: a session whose exchange folder was lost or taken goes on in a new one
    rig_with_folder = OmegaConf.merge(rig, {"subject": {"exchange": "/data/rig/a"}})
    _, moved = apply_overrides(rig_with_folder, ["subject.exchange=/data/rig/b"])
    assert moved == {"subject.exchange": {"old": "/data/rig/a", "new": "/data/rig/b"}}
    gabor = OmegaConf.create({"subject": {"name": "gabor_v1", "timeout_s": 1}})
    assert allowed_keys(gabor) == RESUMABLE_KEYS


def test_allowed_changes_are_recorded_and_config_yaml_is_never_rewritten(finished_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    config_before = (run_dir / "config.yaml").read_bytes()
    first = (run_dir / "generations" / "gen_00000.npz").read_bytes()
    run_cli([str(run_dir), "experiment.generations=5", "progress=true", "device=cpu"], entry="resume_main")
    assert latentopt.load_run(run_dir).scores.shape == (5, 12)
    assert (run_dir / "config.yaml").read_bytes() == config_before
    assert (run_dir / "generations" / "gen_00000.npz").read_bytes() == first
    entry = json.loads((run_dir / "resumes.jsonl").read_text().splitlines()[-1])
    assert entry["from_generation"] == 3
    assert entry["changes"] == {"experiment.generations": {"old": 3, "new": 5},
                                "progress": {"old": False, "new": True}}
    effective = yaml.safe_load(entry["effective_config"])
    assert effective["experiment"]["generations"] == 5 and effective["progress"] is True
    assert effective["seed"] == 0 and effective["optimizer"]["population_size"] == 12
    # A later resume starts from the effective config: no override, nothing to undo, nothing changed.
    run_cli([str(run_dir)], entry="resume_main")
    last = json.loads((run_dir / "resumes.jsonl").read_text().splitlines()[-1])
    assert last["from_generation"] == 5 and last["changes"] == {}
    assert yaml.safe_load(last["effective_config"])["experiment"]["generations"] == 5
    assert latentopt.load_run(run_dir).scores.shape == (5, 12)


def test_refused_resume_through_the_command_line_has_no_traceback(finished_run):
    before = _snapshot(finished_run)
    proc = run_cli([str(finished_run), "seed=9", "subject.noise.gain=50"], entry="resume_main", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "seed cannot change on resume" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and _snapshot(finished_run) == before


@pytest.mark.parametrize("text", ["{unclosed: [", "- a list\n- not a mapping\n", "key: ${oc.env:NOPE_NOT_SET}x: ["])
def test_damaged_config_yaml_is_one_line(tmp_path, text, capsys, monkeypatch):
    monkeypatch.setenv("LATENTOPT_TCMALLOC", "0")
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(SystemExit) as info:
        resume_main([str(tmp_path)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(err) == 1 and "config.yaml" in err[0], err
