"""The DeePSim networks have the published layout: key names, shapes, sizes and parameter counts."""

from __future__ import annotations

import pytest
import torch

from latentopt_deepsim.architecture import VARIANTS, DeePSimNetwork, get_variant


def test_fc6_has_the_published_parameter_count_and_layer_names():
    spec = get_variant("fc6")
    network = DeePSimNetwork(spec)
    assert sum(p.numel() for p in network.parameters()) == 56_097_891
    assert spec.parameter_count() == 56_097_891
    names = [name for name, _ in network.G.named_children() if not name.startswith("relu_")]
    assert names == ["defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3",
                     "conv3_1", "deconv2", "deconv1", "deconv0"]
    slopes = {m.negative_slope for m in network.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.3}
    assert not isinstance(list(network.G.children())[-1], torch.nn.LeakyReLU)  # no activation after deconv0


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_maps_its_code_to_an_image_of_its_size(name):
    spec = VARIANTS[name]
    network = DeePSimNetwork(spec).eval()
    assert {k: tuple(v.shape) for k, v in network.G.state_dict().items()} == spec.state_shapes()
    with torch.no_grad():
        raw = network(torch.randn(1, spec.latent_dim))
    assert tuple(raw.shape) == (1, 3, *spec.image_size)


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(ValueError, match="fc6, fc7, fc8, pool5"):
        get_variant("fc9")


def _spread_network(name: str) -> DeePSimNetwork:
    """Random weights scaled so the raw output spans well beyond 0-255 and both clamps bite."""
    torch.manual_seed(0)
    network = DeePSimNetwork(VARIANTS[name]).eval()
    gain, bias = (1.0, 0.5) if network.variant.tanh_output else (3.0, 20.0)  # tanh ones saturate early
    with torch.no_grad():
        for layer in network.variant.layers:
            module = getattr(network.G, layer.name)
            module.weight.mul_(gain)
            module.bias.normal_(0.0, bias)
    return network


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fast_images_equal_the_modules_then_raw_to_rgb(name, monkeypatch):
    """images() (fused oneDNN layers, the last transposed convolution folded with the colour
    conversion) gives what the plain modules and raw_to_rgb give, with and without gradients."""
    from latentopt_deepsim import architecture

    network = _spread_network(name)
    codes = torch.randn(3, network.variant.latent_dim) * 2.0
    with torch.inference_mode():
        fast = network.images(codes)
        monkeypatch.setattr(architecture, "_FUSED_OPS", False)
        plain = architecture.raw_to_rgb(network(codes))
        monkeypatch.undo()
    clipped = ((plain == 0) | (plain == 1)).float().mean().item()
    assert 0.05 < clipped < 0.95  # the test covers both clamps and the linear range
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)

    leaf = codes.clone().requires_grad_(True)
    network.images(leaf).square().sum().backward()
    reference = codes.clone().requires_grad_(True)
    architecture.raw_to_rgb(network(reference)).square().sum().backward()
    assert leaf.grad is not None and reference.grad is not None
    assert leaf.grad.abs().sum() > 0
    scale = reference.grad.abs().max().item()
    torch.testing.assert_close(leaf.grad, reference.grad, rtol=1e-3, atol=1e-4 * scale)


def test_the_fused_operators_are_used_on_this_cpu():
    """The speed figures assume the fused path; it must not silently fall back here."""
    from latentopt_deepsim import architecture

    assert architecture._FUSED_OPS
