"""Simulated subjects: real ImageNet weights, area presets, read-out before in-place ops, noise models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentopt.builtins.noise import NoiseModel, make_noise
from latentopt.builtins.subjects import AREA_LAYERS, CNNUnitSubject, GaborV1Subject, load_efficientnet_lite0
from latentopt.checks import ConfigError


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(data.chelsea() / 255.0).permute(2, 0, 1)[None].float()
    return F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)


def test_packaged_weights_classify_a_cat(chelsea):
    """The shipped ImageNet weights load strictly and, with the [-1, 1] input scaling, see a cat."""
    model = load_efficientnet_lite0()
    with torch.no_grad():
        top = model(chelsea * 2 - 1).argmax(1).item()
    assert 281 <= top <= 285  # ImageNet's domestic cat classes


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    sd = load_efficientnet_lite0().state_dict()
    sd.pop("_fc.bias")
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(ConfigError, match=r"bad.pth does not fit EfficientNet-Lite0.*_fc.bias"):
        load_efficientnet_lite0(str(bad))
    with pytest.raises(ConfigError, match=r"^subject\.weights: no file at .*missing\.pth$"):
        load_efficientnet_lite0(str(tmp_path / "missing.pth"))


def test_area_presets_and_readout_match_the_module_output(chelsea):
    subject = CNNUnitSubject(layer="V4", channels=[3, 7], device="cpu")
    try:
        assert subject.layer == AREA_LAYERS["V4"]
        captured = {}
        module = dict(subject.model.named_modules())[subject.layer]
        handle = module.register_forward_hook(lambda m, i, o: captured.setdefault("out", o.clone()))
        subject._stop = False
        with torch.no_grad():
            responses = subject.respond_torch(chelsea)
        handle.remove()
        row, col = subject._index
        assert torch.allclose(responses, captured["out"][:, [3, 7], row, col])
    finally:
        subject.close()


def test_readout_happens_before_in_place_ops():
    """A later in-place op on the layer output must not change what was recorded."""
    subject = CNNUnitSubject(layer="_blocks.0._bn2", channels=[0], device="cpu")
    try:
        images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        before = subject.respond_torch(images).clone()
        module = dict(subject.model.named_modules())["_blocks.0._bn2"]
        handle = module.register_forward_hook(lambda m, i, o: o.mul_(0.0))  # registered after ours
        try:
            after = subject.respond_torch(images)
        finally:
            handle.remove()
        assert torch.allclose(before, after)
    finally:
        subject.close()


def test_bad_layer_channel_position_are_clear():
    with pytest.raises(ValueError, match=r"subject\.layer: 'V9'"):
        CNNUnitSubject(layer="V9", device="cpu")
    with pytest.raises(ValueError, match=r"subject.channels: \[999\]"):
        CNNUnitSubject(layer="V1", channels=[999], device="cpu")
    with pytest.raises(ValueError, match=r"subject\.position"):
        CNNUnitSubject(layer="V1", position=[100, 100], device="cpu")


def test_batch_size_defaults_to_10_on_the_cpu_and_any_batching_gives_the_same_responses():
    images = torch.rand(23, 3, 64, 64)
    default = CNNUnitSubject(layer="V4", channels=[0, 3], device="cpu")
    assert default.batch_size == 10
    whole = CNNUnitSubject(layer="V4", channels=[0, 3], device="cpu", batch_size=40)
    torch.testing.assert_close(default.respond_torch(images), whole.respond_torch(images), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"subject.batch_size must be >= 1"):
        CNNUnitSubject(layer="V1", device="cpu", batch_size=0)


def test_close_removes_the_hook():
    subject = CNNUnitSubject(layer="V1", device="cpu")
    module = dict(subject.model.named_modules())[subject.layer]
    assert module._forward_hooks
    subject.close()
    subject.close()
    assert not module._forward_hooks


def test_noise_models_statistics():
    rng = np.random.default_rng(0)
    r = np.full(200_000, 4.0)
    mult = NoiseModel("multiplicative", 0.5).apply(r, rng)
    assert mult.min() >= 0
    assert abs(mult.mean() - 4.0 * np.mean(np.maximum(0, 1 + 0.5 * rng.standard_normal(200_000)))) < 0.02
    pois = NoiseModel("poisson", gain=2.0).apply(r, rng)
    assert np.allclose(pois, np.round(pois)) and abs(pois.mean() - 8.0) < 0.05 and abs(pois.var() - 8.0) < 0.2
    assert np.array_equal(NoiseModel().apply(r, rng), r)
    with pytest.raises(ValueError, match=r"noise\.kind"):
        make_noise({"kind": "gaussian"})


def test_gabor_prefers_its_grating():
    cell = GaborV1Subject(orientations_deg=[0.0], wavelength=8.0, device="cpu")
    ax = torch.arange(64, dtype=torch.float32)
    xx = ax[None, :].expand(64, 64)
    yy = ax[:, None].expand(64, 64)

    def grating(theta_deg: float, wavelength: float) -> torch.Tensor:
        t = np.radians(theta_deg)
        g = 0.5 + 0.5 * torch.cos(2 * np.pi * (xx * np.cos(t) + yy * np.sin(t)) / wavelength)
        return g.expand(1, 3, 64, 64)

    ids, rng = ["x"], np.random.default_rng(0)
    preferred = cell.respond(grating(0, 8), image_ids=ids, rng=rng)[0, 0]
    assert preferred > 5 * cell.respond(grating(90, 8), image_ids=ids, rng=rng)[0, 0]
    assert preferred > 5 * cell.respond(grating(0, 24), image_ids=ids, rng=rng)[0, 0]
    assert preferred > 100 * cell.respond(torch.full((1, 3, 64, 64), 0.5), image_ids=ids, rng=rng)[0, 0] - 1e-6
