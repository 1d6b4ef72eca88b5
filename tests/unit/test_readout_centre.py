"""What the in-silico monkey reads, checked from outside against an independent forward pass.

The subject's documented convention: ``position: centre`` is row ``H // 2``, column ``W // 2`` of the
layer's ``H x W`` feature map (0-based), so for an even size it is the lower/right of the two middle
positions: (14, 14) of V1's 28 x 28 map, (7, 7) of V4's 14 x 14, (3, 3) of PIT's 7 x 7 at 224 px input.
The expected indices below are written out, not computed the way the subject computes them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentopt.builtins.subjects import CNNUnitSubject, load_efficientnet_lite0

# area -> (layer name from the README, feature-map size at 224 px, centre (row, col))
AREAS = {"V1": ("_blocks.4", 28, (14, 14)), "V4": ("_blocks.6", 14, (7, 7)), "PIT": ("_blocks.12", 7, (3, 3))}


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """A natural image, 224 x 224 RGB in [0, 1] (the network's input size: no resizing)."""
    from skimage import data

    img = torch.from_numpy(data.chelsea() / 255.0).permute(2, 0, 1)[None].float()
    return F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True).clamp(0, 1)


@pytest.fixture(scope="module")
def feature_maps(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Full ``(C, H, W)`` output of the layers of a separately loaded EfficientNet-Lite0."""
    model = load_efficientnet_lite0()
    modules = dict(model.named_modules())
    names = ["_blocks.4", "_blocks.5", "_blocks.6", "_blocks.7", "_blocks.11", "_blocks.12", "_blocks.13"]
    maps: dict[str, torch.Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o[0].detach().clone()))
               for n in names]
    with torch.no_grad():
        model(image * 2.0 - 1.0)  # the documented input scaling: RGB [0, 1] -> [-1, 1]
    for handle in handles:
        handle.remove()
    return maps


def _respond(subject: CNNUnitSubject, image: torch.Tensor) -> np.ndarray:
    try:
        return subject.respond(image, image_ids=["chelsea"], rng=np.random.default_rng(0))[0]
    finally:
        subject.close()


@pytest.mark.parametrize("area", list(AREAS))
def test_centre_is_row_h_half_col_w_half_of_the_named_layer(area, image, feature_maps):
    layer, size, (row, col) = AREAS[area]
    fmap = feature_maps[layer]
    assert tuple(fmap.shape[1:]) == (size, size)
    channels = [0, 5, 17]
    got = _respond(CNNUnitSubject(layer=area, channels=channels, device="cpu"), image)
    expected = fmap[channels, row, col].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # the neighbours differ, so reading one pixel off (either way, either axis) would be seen
    for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1)):
        neighbour = fmap[channels, row + dr, col + dc].double().numpy()
        assert not np.allclose(got, neighbour, rtol=1e-4, atol=1e-5), (dr, dc)


def test_centre_spelt_center_and_the_module_name_read_the_same(image, feature_maps):
    got = _respond(CNNUnitSubject(layer="_blocks.6", channels=[3], position="center", device="cpu"), image)
    np.testing.assert_allclose(got, feature_maps["_blocks.6"][[3], 7, 7].double().numpy(), rtol=1e-4, atol=1e-5)


def test_position_row_col_reads_that_exact_location(image, feature_maps):
    fmap = feature_maps["_blocks.6"]
    channels = [1, 4]
    got = _respond(CNNUnitSubject(layer="V4", channels=channels, position=[2, 11], device="cpu"), image)
    np.testing.assert_allclose(got, fmap[channels, 2, 11].double().numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, fmap[channels, 11, 2].double().numpy(), rtol=1e-4, atol=1e-5)  # not [col, row]
    corner = _respond(CNNUnitSubject(layer="V4", channels=channels, position=[13, 0], device="cpu"), image)
    np.testing.assert_allclose(corner, fmap[channels, 13, 0].double().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("area", "others"), [("V1", ["_blocks.5"]), ("V4", ["_blocks.5", "_blocks.7"]),
                                              ("PIT", ["_blocks.11", "_blocks.13"])])
def test_read_out_comes_from_the_areas_layer_not_a_neighbour(area, others, image, feature_maps):
    """Adjacent blocks have the same shape (same stage): only the values tell which layer was read."""
    layer, _, (row, col) = AREAS[area]
    channels = list(range(8))
    got = _respond(CNNUnitSubject(layer=area, channels=channels, device="cpu"), image)
    np.testing.assert_allclose(got, feature_maps[layer][channels, row, col].double().numpy(), rtol=1e-4, atol=1e-5)
    for other in others:
        fmap = feature_maps[other]
        r, c = fmap.shape[1] // 2, fmap.shape[2] // 2
        assert not np.allclose(got, fmap[channels, r, c].double().numpy(), rtol=1e-2, atol=1e-3), other
