"""Offline generators and the generic fixed-subspace mechanism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentopt.builtins.generators import FourierGenerator, PixelGenerator
from latentopt.generator import FixedSubspace
from latentopt.testing import check_generator


def test_fourier_latent_size_follows_max_frequency():
    gen = FourierGenerator(image_size=64, max_frequency=4, device="cpu")
    assert gen.latent_dim == 6 * (2 * 4 + 1) * (4 + 1)


def test_fourier_codes_are_low_frequency():
    gen = FourierGenerator(image_size=64, max_frequency=3, device="cpu")
    image = gen.generate(gen.initial_codes(1, rng=np.random.default_rng(0)))[0, 0]
    spectrum = torch.fft.rfft2(torch.logit(image.clamp(1e-4, 1 - 1e-4))).abs()
    assert spectrum[10:-10, 10:].max() < 1e-2 * spectrum.max()  # colour mixing aside, no high frequencies


def test_bad_sizes_are_clear():
    with pytest.raises(ValueError, match="max_frequency"):
        FourierGenerator(image_size=32, max_frequency=40, device="cpu")
    with pytest.raises(ValueError, match="resolution"):
        PixelGenerator(image_size=32, resolution=64, device="cpu")


def test_generate_rejects_wrong_shapes_and_nan():
    gen = PixelGenerator(image_size=16, resolution=4, device="cpu")
    with pytest.raises(ValueError, match=r"codes must have shape \(n, 48\)"):
        gen.generate(np.zeros((2, 47), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        gen.generate(np.full((1, 48), np.nan, np.float32))


def test_fixed_subspace_holds_the_rest():
    base = PixelGenerator(image_size=16, resolution=4, device="cpu")
    fixed = np.random.default_rng(0).normal(size=48).astype(np.float32)
    sub = FixedSubspace(base, free=np.arange(12), fixed=fixed)
    check_generator(sub)
    codes = np.ones((2, 12), np.float32)
    full = fixed.copy()
    full[:12] = 1
    assert torch.allclose(sub.generate(codes), base.generate(np.stack([full, full])))
    with pytest.raises(ValueError, match="free indices"):
        FixedSubspace(base, free=[48], fixed=fixed)
