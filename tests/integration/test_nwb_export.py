"""NWB export of recorded runs: reading the file back with pynwb gives load_run's responses exactly (per channel,
and per PSTH bin for the time-binned simulated subject), every distinct image once and one presentation per image
shown; nwbinspector finds nothing critical on an evolution, a manifold, an alignment and a natural-set session;
bad input is one line naming the culprit, and no file is ever overwritten."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

# the optional dependencies (pip install 'latentopt[nwb]'; scripts/setup.sh installs them): imported, not
# skipped, so a set-up without them fails here instead of passing with the export untested
import nwbinspector
import pynwb
import pytest
from PIL import Image

from latentopt.export.cli import main
from latentopt.launch import run_experiment
from latentopt.references import load_references
from latentopt.run_record import load_run

PIXEL = {"name": "pixel", "image_size": 16, "resolution": 4, "device": "cpu"}
GABOR = {"name": "gabor_v1", "size": 16, "orientations_deg": [0.0, 45.0], "device": "cpu"}
OPTIMIZER = {"name": "cmaes", "population_size": 5, "sigma0": 0.5, "diagonal": True}
BLOCKING = {"CRITICAL", "PYNWB_VALIDATION", "ERROR"}


def _config(experiment: dict[str, Any], **groups: Any) -> dict[str, Any]:
    return {"seed": 3, "device": "cpu", "progress": False, "generator": PIXEL, "subject": GABOR,
            "objective": {"name": "single_unit"}, "optimizer": OPTIMIZER, "experiment": experiment, **groups}


def _run(config: dict[str, Any], folder: Path) -> Path:
    run_experiment(config, folder, config_yaml=json.dumps(config))
    return folder


def _export(run: Path, out: Path, *extra: str) -> Path:
    main(["nwb", str(run), "--out", str(out), *extra])
    return out


def _blocking(path: Path) -> list[str]:
    """nwbinspector's messages at CRITICAL or above (schema validation and check errors included)."""
    return [f"{m.importance.name} {m.check_function_name} {m.object_name}: {m.message}"
            for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path)) if m.importance.name in BLOCKING]


def _read(path: Path) -> dict[str, Any]:
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        trials = nwb.trials
        images = nwb.stimulus_template["stimuli"]
        order = [image.name for image in images.order_of_images.data]
        return {"columns": {name: np.asarray(trials[name].data[:]) for name in trials.colnames},
                "image_names": order, "images": {name: np.asarray(images.images[name].data[:]) for name in order},
                "presentations": np.asarray(nwb.stimulus["presentations"].data[:]),
                "indexed": nwb.stimulus["presentations"].indexed_images.name,
                "channels": [str(c) for c in nwb.electrodes["channel_name"].data[:]],
                "locations": [str(c) for c in nwb.electrodes["location"].data[:]],
                "module": sorted(nwb.processing["latentopt"].data_interfaces),
                "bins": (np.asarray(nwb.processing["latentopt"]["time_bins"]["start_ms"].data[:])
                         if "time_bins" in nwb.processing["latentopt"].data_interfaces else None),
                "protocol": nwb.protocol, "subject": (nwb.subject.subject_id, nwb.subject.sex, nwb.subject.age)}


def _assert_round_trip(run_dir: Path, read: dict[str, Any]) -> None:
    """Trial responses equal load_run's, thread by thread and for the references; one trial per presentation."""
    run = load_run(run_dir)
    columns = read["columns"]
    blocks = [run.block(g) for g in range(run.generations)]
    assert len(columns["block"]) == sum(len(b.image_ids) for b in blocks)  # one presentation per image shown
    assert len(read["presentations"]) == len(columns["block"])
    np.testing.assert_array_equal(read["presentations"], columns["image_index"])
    for name, thread in run.threads.items():
        mine = columns["thread"].astype(str) == name
        expected = thread.responses.reshape(-1, *thread.responses.shape[2:])
        np.testing.assert_array_equal(columns["response"][mine], expected)
        np.testing.assert_array_equal(columns["score"][mine], thread.scores.reshape(-1))
        assert columns["image_id"][mine].astype(str).tolist() == thread.image_ids.reshape(-1).tolist()
    natural = columns["natural"].astype(bool)
    shown = ~np.isnan(run.reference_responses.reshape(run.generations, len(run.reference_ids), -1)).all(axis=(1, 2))
    expected = run.reference_responses[shown].reshape(-1, *run.reference_responses.shape[2:])
    np.testing.assert_array_equal(columns["response"][natural], expected)
    # every distinct image once, named by its id
    assert len(read["image_names"]) == len(set(columns["image_id"].astype(str))) == len(set(read["image_names"]))
    assert [read["image_names"][k] for k in columns["image_index"]] == columns["image_id"].astype(str).tolist()


# ---------------------------------------------------------------------------- an evolution
@pytest.fixture(scope="module")
def evolution(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("evolve")
    run = _run(_config({"name": "evolve", "generations": 3, "references": ["coffee", "chelsea"],
                        "reference_every": 2}), folder / "run")
    return run, _export(run, folder / "evolve.nwb")


def test_an_evolution_reads_back_with_the_recorded_responses(evolution):
    run_dir, path = evolution
    read = _read(path)
    _assert_round_trip(run_dir, read)
    columns = read["columns"]
    assert columns["response"].shape == (3 * 5 + 2 * 2, 2)  # references in blocks 0 and 2 (the last)
    assert len(read["image_names"]) == 3 * 5 + 2 and read["indexed"] == "stimuli"
    assert columns["generation"].tolist() == columns["block"].tolist()
    assert sorted(set(columns["thread"].astype(str))) == ["main", "reference"]
    assert read["channels"] == ["gabor_0deg", "gabor_45deg"] and read["locations"] == ["unknown", "unknown"]
    assert read["module"] == ["codes_main", "stimulus_images", "threads"]
    assert "gabor_v1" in read["protocol"] and read["subject"] == ("gabor_v1", "U", "P0D/")
    assert (np.diff(columns["start_time"]) >= 0).all() and (columns["stop_time"] >= columns["start_time"]).all()


def test_the_images_are_the_ones_shown(evolution):
    run_dir, path = evolution
    read = _read(path)
    run = load_run(run_dir)
    for g in range(run.generations):  # the stored best image of each generation is its template, exactly
        best = str(run.image_ids[g][int(np.nanargmax(run.scores[g]))])
        stored = np.asarray(Image.open(run_dir / "images" / f"best_main_{g:05d}.png").convert("RGB"))
        np.testing.assert_array_equal(read["images"][best], stored)
    _, photos = load_references(["coffee"], (16, 16))
    coffee = (np.clip(photos[0].permute(1, 2, 0).numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(read["images"]["ref_coffee"], coffee)
    assert all(image.shape == (16, 16, 3) and image.dtype == np.uint8 for image in read["images"].values())


def test_nwbinspector_finds_nothing_critical_in_an_evolution(evolution):
    assert _blocking(evolution[1]) == []


# ---------------------------------------------------------------------------- a manifold after it
def test_a_manifold_exports_each_grid_image_once_and_every_repeat(evolution, tmp_path):
    source, _ = evolution
    config = _config({"name": "manifold", "source": str(source), "grid": 3, "n_components": 3, "repeats": 2,
                      "spheres": ["PC1_PC2_PC3"], "block_size": 6, "references": ["coffee"]})
    run_dir = _run(config, tmp_path / "manifold")
    path = _export(run_dir, tmp_path / "manifold.nwb")
    read = _read(path)
    _assert_round_trip(run_dir, read)
    columns = read["columns"]
    design = [name for name in read["image_names"] if name.startswith("PC1_PC2_PC3")]
    assert len(design) == 3 + 2  # 3 x 3 grid: the two pole columns are one image each
    grid = columns["thread"].astype(str) == "design"
    assert grid.sum() == 2 * len(design)  # every repeat is a presentation of the same template
    assert np.bincount(columns["image_index"][grid]).max() == 2 and (columns["generation"] == -1).all()
    recorded = load_run(run_dir)
    np.testing.assert_array_equal(columns["response"][grid],
                                  np.concatenate([recorded.block(g).responses[recorded.block(g).owner == 0]
                                                  for g in range(recorded.generations)]))
    assert _blocking(path) == []


# ---------------------------------------------------------------------------- alignment, time-binned responses
def test_an_alignment_session_with_psth_bins_reads_back_per_bin(tmp_path):
    """Two generators' threads in the same blocks, answered by the time-binned EfficientNet unit."""
    generators = {"fourier": {"name": "fourier", "image_size": 32, "max_frequency": 2, "device": "cpu"},
                  "pixel": {"name": "pixel", "image_size": 32, "resolution": 4, "device": "cpu"}}
    subject = {"name": "insilico_dynamic", "layer": "V1", "channels": [0, 1], "bin_ms": 25.0,
               "span_ms": [0.0, 200.0], "batch_size": 20, "device": "cpu"}
    config = _config({"name": "alignment", "generations": 2, "references": ["coffee"], "generators": generators},
                     subject=subject, optimizer={**OPTIMIZER, "population_size": 4})
    run_dir = _run(config, tmp_path / "alignment")
    read = _read(_export(run_dir, tmp_path / "alignment.nwb"))
    _assert_round_trip(run_dir, read)
    columns = read["columns"]
    assert columns["response"].shape == (2 * (4 + 4 + 1), 2, 8)  # (presentations, channels, time bins)
    np.testing.assert_array_equal(read["bins"], np.arange(0.0, 200.0, 25.0))
    assert {"codes_fourier", "codes_pixel", "time_bins"} <= set(read["module"])
    assert read["locations"] == ["V1", "V1"]
    assert _blocking(tmp_path / "alignment.nwb") == []


# ---------------------------------------------------------------------------- a natural-set session
def test_a_natural_set_session_groups_repeats_under_one_image(tmp_path):
    config = _config({"name": "natural", "natural": {"set": "natural", "n": 6, "seed": 0}, "repeats": 2,
                      "block_size": 5, "image_size": 16})
    run_dir = _run(config, tmp_path / "natural")
    read = _read(_export(run_dir, tmp_path / "natural.nwb"))
    columns = read["columns"]
    assert len(read["image_names"]) == 6 and len(columns["block"]) == 12 and columns["natural"].all()
    np.testing.assert_array_equal(columns["response"],
                                  np.concatenate([load_run(run_dir).block(g).responses
                                                  for g in range(load_run(run_dir).generations)]))
    assert _blocking(tmp_path / "natural.nwb") == []


# ---------------------------------------------------------------------------- a control session
@pytest.mark.slow
def test_a_control_session_exports_its_controllers_and_natural_images(tmp_path):
    """The contract's control config (its twin fitted on a natural-set session in tmp_path): every image
    shown once as a template, one trial per presentation with the recorded responses, nothing critical."""
    from contract.test_experiment_contract import _contract_config

    config = _contract_config("control", tmp_path)
    run_dir = tmp_path / "control"
    run_experiment(config, run_dir, config_yaml=json.dumps(config))
    read = _read(_export(run_dir, tmp_path / "control.nwb"))
    run = load_run(run_dir)
    blocks = [run.block(g) for g in range(run.generations)]
    np.testing.assert_array_equal(read["columns"]["response"], np.concatenate([b.responses for b in blocks]))
    # shown ids carry their repeat (``_r0``, ``_r1``): a template is the image, once
    shown = {re.sub(r"_r\d+$", "", str(i)) for b in blocks for i in b.image_ids}
    assert sorted(read["image_names"]) == sorted(shown) and len(shown) < sum(len(b.image_ids) for b in blocks)
    assert len(read["columns"]["block"]) == sum(len(b.image_ids) for b in blocks)
    assert _blocking(tmp_path / "control.nwb") == []


# ---------------------------------------------------------------------------- errors
def _error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("latentopt-export: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_no_run_folder_is_one_line(tmp_path, capsys):
    assert str(tmp_path / "nowhere") in _error(capsys, ["nwb", str(tmp_path / "nowhere")])


def test_an_unstarted_run_is_one_line(evolution, tmp_path, capsys):
    folder = tmp_path / "unstarted"
    folder.mkdir()
    shutil.copy(evolution[0] / "config.yaml", folder / "config.yaml")
    err = _error(capsys, ["nwb", str(folder), "--out", str(tmp_path / "x.nwb")])
    assert "run.json" in err and not (tmp_path / "x.nwb").exists()


def test_an_existing_output_is_never_overwritten(evolution, tmp_path, capsys):
    out = tmp_path / "taken.nwb"
    out.write_bytes(b"mine")
    assert str(out) in _error(capsys, ["nwb", str(evolution[0]), "--out", str(out)])
    assert out.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["taken.nwb"]


def test_missing_pynwb_is_one_line(evolution, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynwb", None)  # import pynwb raises ImportError
    assert "pip install 'latentopt[nwb]'" in _error(capsys, ["nwb", str(evolution[0]), "--out",
                                                             str(tmp_path / "x.nwb")])


def test_a_stored_image_that_differs_stops_the_export_naming_it(evolution, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(evolution[0], copy, ignore=shutil.ignore_patterns("*.nwb"))
    png = copy / "images" / "best_main_00001.png"
    pixels = np.asarray(Image.open(png).convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(png)
    err = _error(capsys, ["nwb", str(copy), "--out", str(tmp_path / "x.nwb")])
    assert str(png) in err and "generator" in err
    assert not (tmp_path / "x.nwb").exists() and not list(tmp_path.glob(".*.tmp*"))
    main(["nwb", str(copy), "--out", str(tmp_path / "x.nwb"), "--tolerance", "255"])  # accepted when asked
    assert (tmp_path / "x.nwb").exists()


def test_the_default_output_lands_in_the_run_folder(evolution, tmp_path, capsys):
    copy = tmp_path / "session7"
    shutil.copytree(evolution[0], copy)
    main(["nwb", str(copy)])
    assert (copy / "session7.nwb").exists() and "session7.nwb" in capsys.readouterr().out
    assert str(copy / "session7.nwb") in _error(capsys, ["nwb", str(copy)])  # the second time: refused
