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
