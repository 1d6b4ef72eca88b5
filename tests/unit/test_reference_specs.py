"""``experiment.references`` as a natural set or a lab's folder: the evolution shows and records them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from latentopt.assembly import build_experiment
from latentopt.checks import ConfigError
from latentopt.launch import run_experiment
from latentopt.natural import natural_set
from latentopt.references import check_reference_spec, reference_set
from latentopt.run_record import load_run


def tiny(references, generations: int = 2) -> dict:
    return {"seed": 1, "device": "cpu", "progress": False,
            "generator": {"name": "pixel", "image_size": 16, "resolution": 2, "device": "cpu"},
            "subject": {"name": "gabor_v1", "size": 16, "noise": {"kind": "poisson", "level": 0.0, "gain": 5.0},
                        "device": "cpu"},
            "objective": {"name": "single_unit"},
            "optimizer": {"name": "cmaes", "population_size": 4, "sigma0": 0.5, "diagonal": True},
            "experiment": {"name": "evolve", "generations": generations, "references": references}}


def _run(config, folder):
    run_experiment(config, folder, config_yaml=json.dumps(config))
    return load_run(folder)


def test_an_evolution_shows_30_natural_images_in_every_block(tmp_path):
    record = _run(tiny({"set": "natural", "n": 30}), tmp_path / "run")
    ids, _ = natural_set(30, (16, 16), seed=0)
    assert record.generations == 2
    for g in range(2):
        block = record.block(g)
        assert [str(i) for i in block.image_ids[block.owner == -1]] == ids
        assert np.isfinite(block.responses[block.owner == -1]).all()
    assert record.reference_ids == ids and record.reference_responses.shape == (2, 30, 1)


def test_the_natural_set_spec_reads_its_seed_and_defaults():
    assert check_reference_spec({"set": "natural"}) == {"set": "natural", "n": 500, "seed": 0}
    a, _ = reference_set({"set": "natural", "n": 5, "seed": 1}, (8, 8))
    b, _ = reference_set({"set": "natural", "n": 5, "seed": 2}, (8, 8))
    assert len(a) == 5 and a != b and all(i.startswith("nat_") for i in a)
    assert check_reference_spec([{"set": "natural", "n": 3}]) == {"set": "natural", "n": 3, "seed": 0}
    assert check_reference_spec(None) == [] and reference_set([], (8, 8))[1].shape == (0, 3, 8, 8)
    assert reference_set(["coffee"], (8, 8))[0] == ["ref_coffee"]


def test_a_folder_of_pngs_is_the_natural_block(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    for name, colour in colours.items():
        Image.new("RGB", (20, 24), colour).save(folder / f"{name}.png")
    ids, images = reference_set({"folder": str(folder)}, (16, 16))
    assert ids == ["nat_blue", "nat_green", "nat_red"] and images.shape == (3, 3, 16, 16)
    assert float(images[2, 0].mean()) == pytest.approx(1.0) and float(images[2, 1:].max()) == pytest.approx(0.0)
    record = _run(tiny({"folder": str(folder)}), tmp_path / "run")
    block = record.block(1)
    assert [str(i) for i in block.image_ids[block.owner == -1]] == ids


@pytest.mark.parametrize(("spec", "message"), [
    ({"set": "natural", "n": 0}, r"experiment\.references\.n must be in \[1, 1260\], got 0"),
    ({"set": "natural", "n": 1261}, r"experiment\.references\.n must be in \[1, 1260\]"),
    ({"set": "natural", "n": 2.5}, r"experiment\.references\.n must be an integer"),
    ({"set": "imagenet"}, r"experiment\.references\.set: unknown set 'imagenet'"),
    ({"set": "natural", "count": 3}, r"experiment\.references: unknown key\(s\) \['count'\]"),
    ({"folder": "/no/such/folder"}, r"experiment\.references\.folder: /no/such/folder: no such folder"),
    ({"folder": "/tmp", "set": "natural"}, r"experiment\.references: a mapping needs exactly one of"),
    ({}, r"experiment\.references: a mapping needs exactly one of"),
    ("coffee", r"experiment\.references must be a list of image names or a mapping"),
    (["coffee", "espresso"], r"experiment\.references: 'espresso' is not one of"),
])
def test_bad_specs_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as caught:
        check_reference_spec(spec)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=message):
        build_experiment(tiny(spec))


def test_a_folder_with_an_unreadable_image_names_the_key_and_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match=r"experiment\.references\.folder: natural image .*broken\.png"):
        build_experiment(tiny({"folder": str(tmp_path)}))
