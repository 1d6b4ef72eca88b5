"""Weight files go through the real loading code: right files load, wrong ones fail on one clear line."""

from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from latentopt.weights import WeightsError, sha256_file
from latentopt_deepsim import DeePSimGenerator
from latentopt_deepsim.testing import (
    constant_colour_state_dict,
    random_state_dict,
    write_random_weights,
    write_state_dict,
)
from latentopt_deepsim.weights import WeightsUnavailable, cache_path, import_file, load_state_dict


def test_colour_convention_on_weights_whose_output_is_known(tmp_path):
    # raw output is BGR minus the mean (104, 117, 123), 0-255; images are RGB in [0, 1]
    rgb = (0.2, 0.5, 0.9)
    path = write_state_dict(tmp_path / "upconvGAN_fc6.pt", constant_colour_state_dict("fc6", rgb))
    generator = DeePSimGenerator(weights=path, device="cpu")
    images = generator.generate(np.random.default_rng(0).standard_normal((2, 4096)).astype(np.float32))
    expected = torch.tensor(rgb).view(1, 3, 1, 1).expand(2, 3, 256, 256)
    assert torch.allclose(images, expected, atol=1e-6)


def test_colour_convention_with_literal_numbers(tmp_path):
    # Written out by hand, independent of the code's own constant: a network that outputs raw zeros
    # gives the BGR mean (104, 117, 123), i.e. RGB (123, 117, 104) / 255; a raw BGR bias of
    # (-104, 13, 132) gives BGR (0, 130, 255), i.e. RGB (255, 130, 0) / 255.
    state = constant_colour_state_dict("fc6", (0.5, 0.5, 0.5))
    state["deconv0.bias"] = torch.zeros(3)
    path = write_state_dict(tmp_path / "zeros.pt", state)
    images = DeePSimGenerator(weights=path, device="cpu").generate(np.zeros((1, 4096), np.float32))
    assert images[0, :, 7, 9].tolist() == pytest.approx([123 / 255, 117 / 255, 104 / 255], abs=1e-6)
    state["deconv0.bias"] = torch.tensor([-104.0, 13.0, 132.0])
    path = write_state_dict(tmp_path / "orange.pt", state)
    images = DeePSimGenerator(weights=path, device="cpu").generate(np.zeros((1, 4096), np.float32))
    assert images[0, :, 200, 3].tolist() == pytest.approx([1.0, 130 / 255, 0.0], abs=1e-6)


def test_colours_outside_the_range_are_clamped(tmp_path):
    path = write_state_dict(tmp_path / "w.pt", constant_colour_state_dict("pool5", (1.4, -0.3, 0.5)))
    images = DeePSimGenerator(variant="pool5", weights=path, device="cpu").generate(np.zeros((1, 9216), np.float32))
    assert images[0, :, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.5], abs=1e-6)


def test_random_fc6_file_loads_and_its_hash_is_in_the_provenance(fc6_file):
    generator = DeePSimGenerator(weights=fc6_file, device="cpu")
    record = generator.provenance()
    assert record["weights"]["sha256"] == sha256_file(fc6_file)
    assert record["weights"]["path"] == str(fc6_file.resolve())
    assert record["parameters"] == 56_097_891 and record["variant"] == "fc6"
    reference = random_state_dict("fc6", seed=0)
    assert torch.equal(generator.network.G.defc7.weight, reference["defc7.weight"])  # type: ignore[union-attr,arg-type]


def test_missing_key_is_named(tmp_path):
    state = random_state_dict("pool5")
    del state["conv4_1.bias"]
    path = write_state_dict(tmp_path / "upconvGAN_pool5.pt", state)
    with pytest.raises(WeightsError, match=r"missing key 'conv4_1.bias' for DeePSim pool5$"):
        DeePSimGenerator(variant="pool5", weights=path, device="cpu")


def test_unexpected_key_is_named(tmp_path):
    state = random_state_dict("norm1")
    state["extra.weight"] = torch.zeros(1)
    path = write_state_dict(tmp_path / "w.pt", state)
    with pytest.raises(WeightsError, match=r"unexpected key 'extra\.weight'"):
        load_state_dict(path, "norm1")


def test_wrong_shape_is_named_with_both_shapes(tmp_path):
    state = random_state_dict("pool5")
    state["deconv0.weight"] = torch.zeros(32, 3, 3, 3)
    path = write_state_dict(tmp_path / "w.pt", state)
    with pytest.raises(WeightsError) as info:
        load_state_dict(path, "pool5")
    message = str(info.value)
    assert "'deconv0.weight' has shape (32, 3, 3, 3), DeePSim pool5 needs (32, 3, 4, 4)" in message
    assert "\n" not in message


def test_file_of_another_variant_is_recognised(tmp_path):
    path = write_state_dict(tmp_path / "w.pt", random_state_dict("norm2"))
    with pytest.raises(WeightsError, match=r"it looks like the norm2 file"):
        load_state_dict(path, "norm1")


def test_conversion_infix_in_key_names_is_accepted(tmp_path):
    state = random_state_dict("norm1")
    renamed = OrderedDict((k.replace(".", ".1.", 1), v) for k, v in state.items())
    path = write_state_dict(tmp_path / "w.pt", renamed)
    loaded = load_state_dict(path, "norm1")
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)


def test_legacy_serialisation_loads(tmp_path):
    state = random_state_dict("norm2", seed=5)
    path = write_state_dict(tmp_path / "w.pt", state, legacy=True)
    loaded = load_state_dict(path, "norm2")
    assert all(torch.equal(loaded[k], state[k]) for k in state)


class _NotWeights:
    pass


def test_pickled_objects_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"defc7.weight": _NotWeights()}, path)
    with pytest.raises(WeightsError, match="not a loadable torch state dict"):
        load_state_dict(path, "fc6")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(WeightsError, match="not a loadable torch state dict"):
        load_state_dict(plain, "fc6")


def test_offline_without_a_file_gives_one_clear_message(isolated_cache):
    with pytest.raises(WeightsUnavailable) as info:
        DeePSimGenerator(variant="fc6", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert "upconvGAN_fc6.pt" in message and "refused" in message
    assert str(isolated_cache / "deepsim" / "upconvGAN_fc6.pt") in message
    assert "latentopt-deepsim-weights import fc6" in message and "generator.weights=" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_download_disabled_says_so(isolated_cache):
    with pytest.raises(WeightsUnavailable, match="downloads are disabled"):
        DeePSimGenerator(variant="norm1", device="cpu", download=False)


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="no file at"):
        DeePSimGenerator(weights=tmp_path / "nope.pt", device="cpu")


def test_import_checks_then_copies_into_the_cache(tmp_path, isolated_cache):
    good = write_random_weights(tmp_path / "mine.pt", "norm2")
    target = import_file("norm2", good)
    assert target == cache_path("norm2") and target.read_bytes() == good.read_bytes()
    generator = DeePSimGenerator(variant="norm2", device="cpu", download=False)  # found in the cache
    assert generator.provenance()["weights"]["path"] == str(target.resolve())
    bad = write_random_weights(tmp_path / "bad.pt", "norm1")
    with pytest.raises(WeightsError):
        import_file("norm2", bad)
    assert target.read_bytes() == good.read_bytes()  # the cached file is untouched
