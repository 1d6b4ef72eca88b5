"""DeePSim generators pass the contract every latentopt generator must pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentopt.testing import check_generator
from latentopt_deepsim import DeePSimGenerator
from latentopt_deepsim.testing import write_random_weights


def test_fc6_contract(fc6_file):
    generator = DeePSimGenerator(weights=fc6_file, device="cpu", batch_size=2)
    try:
        check_generator(generator)
        codes = generator.initial_codes(1000, rng=np.random.default_rng(0))
        assert abs(float(np.linalg.norm(codes, axis=1).mean()) - 64.0) < 1.0  # sqrt(4096): N(0, 1) codes
    finally:
        generator.close()
    with pytest.raises(RuntimeError, match="after close"):
        generator.generate(np.zeros((1, 4096), np.float32))


@pytest.mark.parametrize("variant", ["pool5", "norm1"])
def test_other_variants_contract(tmp_path, variant):
    path = write_random_weights(tmp_path / f"upconvGAN_{variant}.pt", variant)
    check_generator(DeePSimGenerator(variant=variant, weights=path, device="cpu"))


def test_gradient_reaches_the_code(fc6_file):
    generator = DeePSimGenerator(weights=fc6_file, device="cpu")
    codes = torch.zeros(1, 4096, requires_grad=True)
    generator.generate(codes)[:, 0].mean().backward()
    assert codes.grad is not None and codes.grad.abs().sum() > 0

