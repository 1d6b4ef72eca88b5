"""Rebuilding what a recorded run showed: the rebuilt images, shown again to the same noise-free subject, give
the recorded responses exactly (atol 1e-5); references and manifold repeats group under one key; aborted trials
are dropped; a folder of images with a CSV of responses reads the same way; errors are one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from latentopt.assembly import Assembly
from latentopt.blocks import noise_rng
from latentopt.launch import run_experiment
from latentopt.records import GENERATION_DIR, RecordError, load_tree, tree_to_npz_bytes
from latentopt.run_record import load_run
from latentopt.stimuli import StimuliError, folder_stimuli, run_stimuli

SUBJECT = {"name": "gabor_v1", "size": 16, "noise": {"kind": "none"}, "device": "cpu"}
PIXEL = {"name": "pixel", "image_size": 16, "resolution": 4, "device": "cpu"}
OPTIMIZER = {"name": "cmaes", "population_size": 5, "sigma0": 0.5, "diagonal": True}


def _config(experiment: dict[str, Any], generator: dict[str, Any] = PIXEL) -> dict[str, Any]:
    return {"seed": 2, "device": "cpu", "progress": False, "generator": generator, "subject": SUBJECT,
            "objective": {"name": "single_unit"}, "optimizer": OPTIMIZER, "experiment": experiment}


def _run(config: dict[str, Any], folder: Path) -> Path:
    run_experiment(config, folder, config_yaml=json.dumps(config))
    return folder


def _replayed(stimuli, config: dict[str, Any]) -> np.ndarray:
    """The noise-free subject's responses to the rebuilt images, per presentation."""
    subject = Assembly(config).subject()
    responses = subject.respond(stimuli.images, image_ids=stimuli.keys, rng=noise_rng(0, 0))
    return np.asarray(responses)[stimuli.image_of]


@pytest.fixture(scope="module")
def evolve_run(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    config = _config({"name": "evolve", "generations": 3, "references": ["coffee", "chelsea"],
                      "reference_every": 2})
    return _run(config, tmp_path_factory.mktemp("evolve") / "run"), config


def test_an_evolution_rebuilt_gives_the_recorded_responses(evolve_run):
    run, config = evolve_run
    stimuli = run_stimuli(run)
    record = load_run(run)
    assert len(stimuli) == 3 * 5 + 2 * 2  # references in blocks 0 and 2 (the last)
    assert stimuli.images.shape == (len(stimuli.keys), 3, 16, 16) and stimuli.images.dtype == torch.float32
    assert len(set(stimuli.keys)) == len(stimuli.keys) == 3 * 5 + 2
    np.testing.assert_allclose(_replayed(stimuli, config), stimuli.responses, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(stimuli.responses[stimuli.owner == 0].reshape(3, 5, 1), record.responses)
    assert stimuli.presentation_ids[:5] == [f"g00000_main_{k:03d}" for k in range(5)]
    assert stimuli.channel_names == Assembly(config).subject().channel_names  # from provenance.json
    assert np.ptp(stimuli.responses) > 0.5  # responses that tell images apart
    assert stimuli.source["experiment"] == "evolve" and stimuli.source["generations"] == 3
    assert stimuli.source["presentations"] == 19 and stimuli.source["dropped"] == 0
    assert stimuli.blocks.tolist().count(1) == 5 and set(stimuli.blocks.tolist()) == {0, 1, 2}


def test_references_group_by_id_one_key_per_photograph(evolve_run):
    run, _ = evolve_run
    stimuli = run_stimuli(run)
    references = np.flatnonzero(stimuli.owner == -1)
    assert sorted({stimuli.keys[k] for k in stimuli.image_of[references]}) == ["ref_chelsea", "ref_coffee"]
    coffee = stimuli.keys.index("ref_coffee")
    assert (stimuli.image_of == coffee).sum() == 2  # shown in blocks 0 and 2
    np.testing.assert_array_equal(stimuli.blocks[stimuli.image_of == coffee], [0, 2])
    # deterministic subject: the two presentations of one image answered the same
    np.testing.assert_allclose(*stimuli.responses[stimuli.image_of == coffee], atol=1e-9)


def test_a_size_resizes_the_rebuilt_images(evolve_run):
    stimuli = run_stimuli(evolve_run[0], size=8)
    assert stimuli.images.shape[1:] == (3, 8, 8)


def _damaged_copy(run: Path, folder: Path, edit) -> Path:
    """A copy of ``run`` whose block files went through ``edit(tree, generation)``."""
    copy = folder / "copy"
    shutil.copytree(run, copy)
    for g in range(load_run(run).generations):
        path = copy / GENERATION_DIR / f"gen_{g:05d}.npz"
        tree = load_tree(path)
        edit(tree, g)
        path.write_bytes(tree_to_npz_bytes(tree))
    return copy


def test_aborted_trials_are_dropped(evolve_run, tmp_path):
    run, config = evolve_run

    def abort(tree, g):
        if g == 1:
            tree["block"]["responses"][[0, 3]] = np.nan

    stimuli = run_stimuli(_damaged_copy(run, tmp_path, abort))
    assert len(stimuli) == 17 and stimuli.source["dropped"] == 2 and np.isfinite(stimuli.responses).all()
    assert "g00001_main_000" not in stimuli.keys and "g00001_main_003" not in stimuli.presentation_ids
    assert len(stimuli.keys) == 15  # the images never answered are gone too
    np.testing.assert_allclose(_replayed(stimuli, config), stimuli.responses, atol=1e-5, rtol=0)


def test_time_binned_responses_become_the_evoked_response(evolve_run, tmp_path):
    run, _ = evolve_run
    edges = np.arange(0.0, 260.0, 10.0)  # 25 bins of 10 ms
    profile = np.where((edges[:-1] >= 50) & (edges[1:] <= 200), 1.0, 0.0) + 3.0  # 3 in the baseline, 4 in window

    def binned(tree, g):
        tree["block"]["responses"] = tree["block"]["responses"][..., None] * profile
        tree["block"]["time_bins_ms"] = edges

    copy = _damaged_copy(run, tmp_path, binned)
    plain = run_stimuli(run)
    evoked = run_stimuli(copy)
    np.testing.assert_allclose(evoked.responses, plain.responses, atol=1e-9)  # 4r - 3r
    assert evoked.source["responses"] == "evoked: mean over 50-200 ms minus 0-45 ms"
    np.testing.assert_allclose(run_stimuli(copy, time_bins="mean").responses, plain.responses * profile.mean())
    assert run_stimuli(copy, time_bins="keep").responses.shape == (19, 1, 25)


def test_an_alignment_with_two_generators_is_rebuilt(tmp_path):
    config = _config({"name": "alignment", "generations": 2, "references": ["coffee"], "generators": {
        "pixel": PIXEL, "fourier": {"name": "fourier", "image_size": 24, "max_frequency": 2, "device": "cpu"}}})
    stimuli = run_stimuli(_run(config, tmp_path / "run"))
    assert stimuli.images.shape[1:] == (3, 24, 24)  # the block's size: the larger generator's
    assert len(stimuli) == 2 * (5 + 5 + 1) and set(stimuli.owner.tolist()) == {-1, 0, 1}
    assert any(i.startswith("g00001_fourier_") for i in stimuli.presentation_ids)
    np.testing.assert_allclose(_replayed(stimuli, config), stimuli.responses, atol=1e-5, rtol=0)


def _codes_file(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((4, 20, 48)) * np.linspace(2, 0.2, 48)
    codes[-1] += 1.0
    np.savez(folder / "codes.npz", codes=codes.astype(np.float32))
    return folder / "codes.npz"


def test_a_manifold_is_rebuilt_with_repeats_grouped(tmp_path):
    config = _config({"name": "manifold", "codes": str(_codes_file(tmp_path)), "grid": 3, "n_components": 5,
                      "spheres": ["PC1_PC2_PC3", "PC1_RND1_RND2"], "block_size": 4, "repeats": 2,
                      "references": ["coffee"], "reference_every": 2})
    stimuli = run_stimuli(_run(config, tmp_path / "run"))
    grid = [k for k in stimuli.keys if k != "ref_coffee"]
    assert len(grid) == 2 * 5  # per sphere 3 x 3 angles, each pole column once: 3 + 2 images
    counts = np.bincount(stimuli.image_of, minlength=len(stimuli.keys))
    assert all(counts[stimuli.keys.index(k)] == 2 for k in grid)  # two repeats of every grid image
    first = stimuli.presentation_ids[0]
    assert stimuli.keys[stimuli.image_of[0]] == first.rsplit("_r", 1)[0]
    np.testing.assert_allclose(_replayed(stimuli, config), stimuli.responses, atol=1e-5, rtol=0)


def test_a_manifold_inheriting_its_generator_from_the_source_run(evolve_run, tmp_path):
    run, config = evolve_run
    manifold = {**config, "generator": {"name": "fourier"}, "experiment": {
        "name": "manifold", "source": str(run), "inherit": ["generator", "subject", "objective"], "grid": 3,
        "n_components": 3, "spheres": ["PC1_PC2_PC3"], "block_size": 5, "references": []}}
    stimuli = run_stimuli(_run(manifold, tmp_path / "run"))
    assert len(stimuli.keys) == 5 and stimuli.images.shape[1:] == (3, 16, 16)  # the source run's pixel generator
    np.testing.assert_allclose(_replayed(stimuli, config), stimuli.responses, atol=1e-5, rtol=0)


def test_errors_are_one_line(evolve_run, tmp_path):
    run, _ = evolve_run
    with pytest.raises(RecordError, match="not a latentopt run folder"):
        run_stimuli(tmp_path / "nothing")

    def rename(tree, g):
        tree["meta"]["experiment"] = "axis_tuning"

    with pytest.raises(StimuliError, match=r"copy: experiment 'axis_tuning' has no stimulus reader") as caught:
        run_stimuli(_damaged_copy(run, tmp_path, rename))
    assert "\n" not in str(caught.value)
    from latentopt.weights import WeightsError

    missing = tmp_path / "weights"
    shutil.copytree(run, missing)
    config = json.loads((missing / "config.yaml").read_text())
    config["generator"] = {"name": "deepsim", "variant": "fc6", "weights": str(tmp_path / "no.pt"), "download": False}
    (missing / "config.yaml").write_text(json.dumps(config))
    with pytest.raises(WeightsError) as caught:
        run_stimuli(missing)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------- a lab's folder and CSV
@pytest.fixture()
def lab(tmp_path) -> Path:
    for name, colour in {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}.items():
        Image.new("RGB", (30, 20), colour).save(tmp_path / f"{name}.png")
    return tmp_path


def test_a_folder_and_csv_read_as_stimuli(lab):
    (lab / "responses.csv").write_text("image,unit_a,unit_b\nred.png,1.5,2\ngreen,3,4\nred,1.7,2.2\n"
                                       "blue.png,nan,5\n\nblue,6,7\n")
    stimuli = folder_stimuli(lab, lab / "responses.csv")
    assert stimuli.keys == ["red", "green", "blue"] and stimuli.channel_names == ["unit_a", "unit_b"]
    assert stimuli.images.shape == (3, 3, 20, 20)  # the first image's shorter side
    assert float(stimuli.images[0, 0].mean()) == pytest.approx(1.0) and float(stimuli.images[0, 1:].max()) == 0
    assert stimuli.image_of.tolist() == [0, 1, 0, 2]  # the blue trial with a NaN is dropped
    assert stimuli.presentation_ids == ["red_r0", "green_r0", "red_r1", "blue_r1"]
    np.testing.assert_array_equal(stimuli.responses, [[1.5, 2], [3, 4], [1.7, 2.2], [6, 7]])
    assert stimuli.source["dropped"] == 1
    assert folder_stimuli(lab, lab / "responses.csv", size=8).images.shape == (3, 3, 8, 8)


@pytest.mark.parametrize(("text", "message"), [
    ("", r"responses\.csv is empty"),
    ("picture,a\nred,1\n", r"responses\.csv:1: the header must be 'image'"),
    ("image\nred\n", r"responses\.csv:1: the header must be 'image'"),
    ("image,a,a\nred,1,2\n", r"responses\.csv:1: channel names must be unique"),
    ("image,a\nred,1\ngreen,1,2\n", r"responses\.csv:3: 3 columns, the header has 2"),
    ("image,a\nred,1\ngreen,lots\n", r"responses\.csv:3, column 'a': 'lots' is not a number"),
    ("image,a\nred,inf\n", r"responses\.csv:2, column 'a': 'inf' is not a finite number"),
    ("image,a\nred,1\npurple.png,2\n", r"responses\.csv:3: no image file 'purple\.png' in "),
    ("image,a\n", r"responses\.csv holds a header but no trial"),
])
def test_a_bad_csv_is_one_error_naming_its_line(lab, text, message):
    (lab / "responses.csv").write_text(text)
    with pytest.raises(StimuliError, match=message) as caught:
        folder_stimuli(lab, lab / "responses.csv")
    assert "\n" not in str(caught.value)


def test_two_files_sharing_a_stem_need_the_file_name(lab):
    Image.new("RGB", (20, 20), (9, 9, 9)).save(lab / "red.jpg")
    (lab / "responses.csv").write_text("image,a\nred.jpg,1\nred.png,2\n")
    stimuli = folder_stimuli(lab, lab / "responses.csv")
    assert stimuli.keys == ["red.jpg", "red.png"]
    (lab / "responses.csv").write_text("image,a\nred,1\n")
    with pytest.raises(StimuliError, match=r"responses\.csv:2: 'red' matches red\.jpg, red\.png"):
        folder_stimuli(lab, lab / "responses.csv")


def test_another_experiment_registers_its_own_reader(evolve_run, tmp_path):
    from latentopt.stimuli import STIMULUS_READERS, register_stimulus_reader
    from latentopt.stimulus_readers import _read_threads

    run, config = evolve_run

    def rename(tree, g):
        tree["meta"]["experiment"] = "replay_test"

    copy = _damaged_copy(run, tmp_path, rename)
    calls = []

    def reader(source):
        calls.append(source.run.path)
        _read_threads(source)  # this pretend experiment lays its blocks out as an evolution

    register_stimulus_reader("replay_test", reader)
    try:
        with pytest.raises(ValueError, match="has a stimulus reader already"):
            register_stimulus_reader("replay_test", reader)
        stimuli = run_stimuli(copy)
    finally:
        STIMULUS_READERS.pop("replay_test")
    assert calls == [copy] and stimuli.source["experiment"] == "replay_test" and len(stimuli) == 19
    np.testing.assert_allclose(_replayed(stimuli, config), stimuli.responses, atol=1e-5, rtol=0)


def test_a_window_without_bins_and_a_refused_generator_name_the_run(evolve_run, tmp_path):
    run, _ = evolve_run

    def binned(tree, g):
        tree["block"]["responses"] = np.repeat(tree["block"]["responses"][..., None], 3, axis=2)
        tree["block"]["time_bins_ms"] = np.array([0.0, 10.0, 20.0, 30.0])  # nothing inside 50-200 ms

    with pytest.raises(StimuliError, match=r"copy: no time bin lies inside the response window \[50, 200\] ms"):
        run_stimuli(_damaged_copy(run, tmp_path, binned))
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    config = json.loads((bad / "config.yaml").read_text())
    config["generator"]["resolution"] = 0
    (bad / "config.yaml").write_text(json.dumps(config))
    with pytest.raises(RecordError, match=r"bad/config\.yaml: generator\.resolution must be"):
        run_stimuli(bad)
