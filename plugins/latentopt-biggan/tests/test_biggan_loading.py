"""BigGAN weights go through the real loading code; the prepared network matches the library's."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from latentopt.weights import WeightsError
from latentopt_biggan import BigGANGenerator
from latentopt_biggan.loading import WeightsUnavailable, load_model
from latentopt_biggan.network import truncation_statistics
from latentopt_biggan.testing import random_model, tiny_config


def test_random_model_is_finite_and_loads_strictly(tiny_folder):
    network = load_model(tiny_folder / "config.json", tiny_folder / "pytorch_model.bin", "biggan-deep-128")
    codes = torch.randn(3, 256) * 0.5
    with torch.no_grad():
        images = network.generator(codes, 0.5)
    assert images.shape == (3, 3, 128, 128) and torch.isfinite(images).all()
    assert images.std() > 0.01  # not a flat image: the random model does something


def test_prepared_network_matches_the_library_forward_on_the_truncation_grid(tiny_folder):
    # 0.5 / 0.02 is exactly 25.0 in floating point, so the library takes row 25 unblended too
    assert math.modf(0.5 / (1.0 / 50))[0] == 0.0
    reference = load_model(tiny_folder / "config.json", tiny_folder / "pytorch_model.bin", "biggan-deep-128")
    codes = torch.randn(4, 256) * 0.5
    with torch.no_grad():
        expected = (reference.generator(codes, 0.5) + 1) / 2
    generator = BigGANGenerator(model="biggan-deep-128", weights=tiny_folder, truncation=0.5, device="cpu")
    # same images up to float rounding (fused batch norm, baked spectral norm): < 1/4 of an 8-bit level
    assert (generator.generate(codes) - expected).abs().max() < 1e-3


def test_truncation_statistics_are_exact_on_the_grid_and_interpolated_between():
    means = torch.arange(51, dtype=torch.float32)[:, None].repeat(1, 3)
    variances = means + 100
    for k in range(1, 51):
        for t in (k / 50, k * 0.02):
            mean, var = truncation_statistics(means, variances, t)
            assert mean.tolist() == [k] * 3 and var.tolist() == [k + 100] * 3
    mean, _ = truncation_statistics(means, variances, 0.705)
    assert mean.tolist() == pytest.approx([35.25] * 3)
    # the library's own lookup, by float rounding and a reversed blend, takes 0.56's row for 0.58
    coef, start = math.modf(0.58 / (1.0 / 50))
    assert int(start) == 28 and coef > 0.999


def test_generator_uses_the_statistics_of_its_truncation(tiny_folder):
    codes = torch.randn(2, 256) * 0.5
    at = {t: BigGANGenerator(model="biggan-deep-128", weights=tiny_folder, truncation=t, device="cpu").generate(codes)
          for t in (0.68, 0.7, 0.7000000001)}
    assert torch.equal(at[0.7], at[0.7000000001])
    assert not torch.allclose(at[0.7], at[0.68], atol=1e-4)


def _broken_folder(tiny_folder, tmp_path, edit):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_folder, folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    edit(state)
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_legacy_serialisation_loads(tiny_folder, tmp_path):
    folder = tmp_path / "legacy"
    shutil.copytree(tiny_folder, folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    generator = BigGANGenerator(model="biggan-deep-128", weights=folder, device="cpu")
    assert torch.equal(torch.from_numpy(generator.embeddings), state["embeddings.weight"])


def test_missing_key_is_named(tiny_folder, tmp_path):
    folder = _broken_folder(tiny_folder, tmp_path, lambda s: s.pop("generator.layers.3.conv_1.weight_u"))
    with pytest.raises(WeightsError, match=r"missing key 'generator.layers.3.conv_1.weight_u'"):
        BigGANGenerator(model="biggan-deep-128", weights=folder, device="cpu")


def test_wrong_shape_is_named_on_one_line(tiny_folder, tmp_path):
    folder = _broken_folder(tiny_folder, tmp_path, lambda s: s.__setitem__("embeddings.weight", torch.zeros(128, 999)))
    with pytest.raises(WeightsError) as info:
        BigGANGenerator(model="biggan-deep-128", weights=folder, device="cpu")
    assert "'embeddings.weight' has shape (128, 999), the config needs (128, 1000)" in str(info.value)
    assert "\n" not in str(info.value)


def test_unexpected_key_is_named(tiny_folder, tmp_path):
    folder = _broken_folder(tiny_folder, tmp_path, lambda s: s.__setitem__("generator.extra", torch.zeros(1)))
    with pytest.raises(WeightsError, match=r"unexpected key 'generator\.extra'"):
        BigGANGenerator(model="biggan-deep-128", weights=folder, device="cpu")


def test_config_of_another_resolution_is_refused(tiny_folder):
    with pytest.raises(WeightsError, match="output_dim is 128, biggan-deep-256 makes 256x256"):
        BigGANGenerator(model="biggan-deep-256", weights=tiny_folder, device="cpu")


def test_folder_without_weights_is_named(tiny_folder, tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    shutil.copy(tiny_folder / "config.json", folder)
    with pytest.raises(WeightsError, match=r"no pytorch_model\.bin"):
        BigGANGenerator(model="biggan-deep-128", weights=folder, device="cpu")


def test_weights_in_the_library_cache_are_found(tiny_folder, empty_library_cache):
    from pytorch_pretrained_biggan.file_utils import url_to_filename
    from pytorch_pretrained_biggan.model import PRETRAINED_CONFIG_ARCHIVE_MAP, PRETRAINED_MODEL_ARCHIVE_MAP

    empty_library_cache.mkdir()
    for url, name in ((PRETRAINED_CONFIG_ARCHIVE_MAP["biggan-deep-128"], "config.json"),
                      (PRETRAINED_MODEL_ARCHIVE_MAP["biggan-deep-128"], "pytorch_model.bin")):
        cached = empty_library_cache / url_to_filename(url, etag='"abc"')
        shutil.copy(tiny_folder / name, cached)
        (empty_library_cache / (cached.name + ".json")).write_text(json.dumps({"url": url, "etag": '"abc"'}))
    generator = BigGANGenerator(model="biggan-deep-128", device="cpu", download=False)
    assert generator.provenance()["weights"]["state_dict"]["path"].startswith(str(empty_library_cache))


def test_offline_without_weights_gives_one_clear_message(empty_library_cache):
    with pytest.raises(WeightsUnavailable) as info:
        BigGANGenerator(model="biggan-deep-256", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "biggan-deep-256" in message
    assert "config.json" in message and "pytorch_model.bin" in message and "generator.weights=" in message
    with pytest.raises(WeightsUnavailable, match="downloads are disabled"):
        BigGANGenerator(model="biggan-deep-256", device="cpu", download=False)


def test_fresh_library_model_needs_the_helper_to_be_finite():
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig

    # The library leaves the final batch norm uninitialised (torch.Tensor(n): whatever memory held);
    # even with it set, a fresh model's spectral-norm estimates are random and the images are NaN.
    torch.manual_seed(1)
    fresh = BigGAN(BigGANConfig.from_dict(tiny_config(128))).eval()
    with torch.no_grad():
        fresh.generator.bn.weight.fill_(1.0)
        fresh.generator.bn.bias.zero_()
        assert not torch.isfinite(fresh.generator(torch.zeros(1, 256), 1.0)).all()
    model = random_model(tiny_config(128), seed=1)
    assert torch.isfinite(model.generator.bn.weight).all()
    with torch.no_grad():
        images = model.generator(torch.from_numpy(np.zeros((1, 256), np.float32)), 1.0)
    assert torch.isfinite(images).all()
