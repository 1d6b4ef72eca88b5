"""Population control end to end: a natural-set session, a twin fitted from it (latentopt-twin fit), a control
session, its report, its stimuli read back, and the errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentopt.assembly import build_experiment
from latentopt.checks import ConfigError
from latentopt.cli import analyze_main
from latentopt.launch import run_experiment
from latentopt.run_record import load_run
from latentopt.stimuli import run_stimuli
from latentopt.twin.cli import main as twin_main

SUBJECT = {"name": "cnn_unit", "layer": "V1", "channels": [0, 1, 2, 3], "device": "cpu"}
BASE = {"seed": 0, "device": "cpu", "progress": False, "subject": SUBJECT,
        "generator": {"name": "pixel", "image_size": 32, "resolution": 4, "device": "cpu"}}
NATURAL = {"set": "natural", "n": 40}


def _control(twin: Path, **experiment) -> dict:
    node = {"name": "control", "twin": {"path": str(twin)}, "natural": NATURAL,
            "synthesis": {"method": "gradient", "steps": 25, "starts": 1, "lr": 0.1}, "repeats": 2,
            "block_size": 40, "image_size": 32, **experiment}
    return {**BASE, "experiment": node}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("control")
    natural = {**BASE, "experiment": {"name": "natural", "natural": NATURAL, "repeats": 2, "block_size": 30,
                                      "image_size": 32}}
    summary = run_experiment(natural, root / "natural", config_yaml=json.dumps(natural))
    twin_main(["fit", str(root / "natural"), "--out", str(root / "twin"), "--layers", "_blocks.3", "--pooling",
               "grid", "--device", "cpu", "--folds", "4"])
    return root, summary


def test_the_natural_session_records_every_image_twice_and_its_statistics(session):
    root, summary = session
    assert summary["trials_shown"] == summary["trials_planned"] == 80
    stats = summary["natural"]
    assert stats["images"] == 40 and len(stats["max"]) == 4
    assert all(r == pytest.approx(1.0) for r in stats["reliability"])  # noise-free: repeats are identical
    stimuli = run_stimuli(root / "natural")
    assert len(stimuli.keys) == 40 and len(stimuli) == 80 and np.bincount(stimuli.image_of).tolist() == [2] * 40


def test_a_control_session_shows_controllers_and_the_natural_set_and_reports(session):
    root, _ = session
    config = _control(root / "twin")
    summary = run_experiment(config, root / "control", config_yaml=json.dumps(config))
    assert summary["trials_shown"] == (8 + 40) * 2
    result = json.loads((root / "control" / "control.json").read_text())
    assert result["stretch"]["summary"]["channels"] == 4 and result["one_hot"]["summary"]["targets"] == 4
    assert 0 <= result["stretch"]["summary"]["chance_permutation"] <= 1
    assert len(result["twin"]["r_per_channel"]) == 4
    for name in ("control_channels.csv", "control.png", "summary.json"):
        assert (root / "control" / name).is_file()
    assert summary["headline"].startswith("control: stretch ")
    analyze_main(["control", str(root / "control"), "--out", str(root / "again")])
    assert json.loads((root / "again" / "control.json").read_text()) == result
    with pytest.raises(SystemExit):
        analyze_main(["control", str(root / "natural")])
    # what the session showed comes back from its records: the same images give the same responses
    stimuli = run_stimuli(root / "control")
    assert len(stimuli.keys) == 48 and stimuli.keys[0] == "ctl_stretch_0"
    experiment = build_experiment({**BASE, "experiment": {"name": "natural", "natural": NATURAL, "image_size": 32}})
    try:
        with torch.no_grad():
            again = experiment.subject.respond_torch(stimuli.images).double().numpy()
    finally:
        experiment.close()
    np.testing.assert_allclose(again[stimuli.image_of], stimuli.responses, atol=1e-5)


def test_a_twin_of_the_subject_itself_predicts_it_and_stretches_it(session, tmp_path):
    """Ground truth: when the 'animal' is the twin (subject=twin, noise-free), the twin's predictions are exact."""
    root, _ = session
    config = _control(root / "twin", synthesis={"method": "gradient", "steps": 30, "starts": 1, "lr": 0.2})
    config["subject"] = {"name": "twin", "path": str(root / "twin"), "device": "cpu"}
    run_experiment(config, tmp_path / "self", config_yaml=json.dumps(config))
    result = json.loads((tmp_path / "self" / "control.json").read_text())
    np.testing.assert_allclose(result["twin"]["r_per_channel"], 1.0, atol=1e-4)
    assert result["twin"]["explained_variance_fraction"] == pytest.approx(1.0, abs=1e-3)
    assert result["stretch"]["summary"]["fraction"] >= 0.75  # ascent on the true model beats 40 natural images


def test_the_evolution_method_synthesises_with_the_runs_optimizer(session, tmp_path):
    root, _ = session
    config = _control(root / "twin", controllers={"stretch": [1], "one_hot": "none"},
                      synthesis={"method": "evolution", "generations": 4})
    config["optimizer"] = {"name": "cmaes", "population_size": 6, "sigma0": 0.5, "diagonal": True}
    run_experiment(config, tmp_path / "evo", config_yaml=json.dumps(config))
    design = np.load(tmp_path / "evo" / "design.npz", allow_pickle=False)
    assert design["controllers/codes"].shape == (1, 48) and str(design["controllers/method"]) == "evolution"


@pytest.mark.parametrize(("change", "message"), [
    ({"twin": {"path": None}}, r"experiment\.twin\.path: give the twin folder"),
    ({"twin": {"path": "/nonexistent/twin"}}, r"experiment\.twin\.path: /nonexistent/twin holds no twin"),
    ({"twin": {"path": "TWIN", "layer": "V4"}}, r"experiment\.twin: unknown key\(s\) \['layer'\]"),
    ({"controllers": {"stretch": [9]}}, r"experiment\.controllers\.stretch: channel\(s\) \[9\]"),
    ({"controllers": {"stretch": "none", "one_hot": "none"}}, r"no controller to make"),
    ({"synthesis": {"method": "annealing"}}, r"experiment\.synthesis\.method must be one of gradient, evolution"),
    ({"synthesis": {"step": 3}}, r"experiment\.synthesis: unknown key\(s\) \['step'\]"),
    ({"natural": {"set": "natural", "n": 0}}, r"experiment\.natural\.n"),
])
def test_bad_control_settings_are_one_line_errors(session, change, message):
    root, _ = session
    config = _control(root / "twin")
    for key, value in change.items():
        if key == "twin" and value.get("path") == "TWIN":
            value = {**value, "path": str(root / "twin")}
        config["experiment"][key] = value
    with pytest.raises(ConfigError, match=message):
        build_experiment(config).close()


def test_a_twin_of_other_channels_is_refused(session):
    root, _ = session
    config = _control(root / "twin")
    config["subject"] = {**SUBJECT, "channels": [0, 1, 2]}
    with pytest.raises(ConfigError, match=r"the twin models 4 channel\(s\) but the subject has 3"):
        build_experiment(config).close()
    config["subject"] = {**SUBJECT, "channels": [4, 5, 6, 7]}
    with pytest.raises(ConfigError, match=r"differ from the subject's"):
        build_experiment(config).close()


def test_twin_fit_errors_are_one_line(session, tmp_path, capsys):
    root, _ = session
    for argv, message in [(["fit", "--out", str(tmp_path / "t")], "give run folders"),
                          (["fit", str(tmp_path / "nothing"), "--out", str(tmp_path / "t")], "nothing"),
                          (["fit", str(root / "natural"), "--out", str(root / "twin")], str(root / "twin")),
                          (["show", str(tmp_path / "nothing")], "nothing")]:
        with pytest.raises(SystemExit) as stop:
            twin_main(argv)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and err.startswith("latentopt: error:") and message in err
        assert len(err.splitlines()) == 1
    twin_main(["show", str(root / "twin")])
    assert "held-out r: median" in capsys.readouterr().out


def test_a_resumed_control_refuses_a_changed_synthesis(session, tmp_path):
    root, _ = session
    config = _control(root / "twin")
    run_experiment(config, tmp_path / "full", config_yaml=json.dumps(config))
    assert load_run(tmp_path / "full").generations == 3
    changed = _control(root / "twin", synthesis={"method": "gradient", "steps": 26, "starts": 1, "lr": 0.1})
    from latentopt.records import RecordError

    with pytest.raises(RecordError, match=r"design\.npz differs"):
        run_experiment(changed, tmp_path / "full", config_yaml=json.dumps(changed), resume=True)


def test_a_twin_is_a_subject_for_white_box_evolutions(session, tmp_path):
    """subject=twin: differentiable, so the gradient-ascent optimizer runs on the model of the neurons."""
    root, _ = session
    config = {**BASE, "subject": {"name": "twin", "path": str(root / "twin"), "device": "cpu"},
              "objective": {"name": "stretch", "channel": 2},
              "optimizer": {"name": "gradient_ascent", "population_size": 2, "lr": 0.2},
              "experiment": {"name": "evolve", "generations": 8, "references": None}}
    run_experiment(config, tmp_path / "run", config_yaml=json.dumps(config))
    scores = load_run(tmp_path / "run").scores
    assert scores[-1].max() > scores[0].max()
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["subject"]["name"] == "twin" and len(provenance["subject"]["twin_sha256"]) == 64


def test_a_twin_from_a_folder_of_images_and_a_csv_of_responses(tmp_path, capsys):
    """A lab's own images and responses: the twin recovers channels that are a known function of the images."""
    from PIL import Image

    from latentopt.natural import natural_set

    ids, images = natural_set(60, (32, 32), seed=2)
    folder = tmp_path / "images"
    folder.mkdir()
    lines = ["image,bright,red"]
    rng = np.random.default_rng(0)
    for name, image in zip(ids, images, strict=True):
        array = (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(array).save(folder / f"{name}.png")
        bright, red = float(array.mean()) / 255, float(array[..., 0].mean() - array[..., 2].mean()) / 255
        for _ in range(2):
            lines.append(f"{name}.png,{bright + rng.normal(0, 0.01):.5f},{red + rng.normal(0, 0.01):.5f}")
    (tmp_path / "responses.csv").write_text("\n".join(lines) + "\n")
    twin_main(["fit", "--images", str(folder), "--csv", str(tmp_path / "responses.csv"), "--out",
               str(tmp_path / "twin"), "--layers", "_blocks.1", "--device", "cpu", "--folds", "4"])
    out = capsys.readouterr().out
    assert "2 channels, 60 images (120 trials)" in out
    twin = json.loads((tmp_path / "twin" / "twin.json").read_text())
    assert twin["channel_names"] == ["bright", "red"]
    assert min(twin["r"]) > 0.8  # brightness and redness are linear in early features' channel means
