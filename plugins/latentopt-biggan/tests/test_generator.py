"""BigGAN-deep generator: code layout, initial codes, sub-spaces, the contract, and the factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentopt.generator import FixedSubspace
from latentopt.testing import check_generator
from latentopt_biggan import BigGANGenerator, biggan
from latentopt_biggan.network import BigGANInference


@pytest.fixture(scope="module")
def full(tiny_folder_module):
    return BigGANGenerator(model="biggan-deep-128", weights=tiny_folder_module, device="cpu", tail_batch_size=2)


@pytest.fixture(scope="module")
def tiny_folder_module(tmp_path_factory):
    from latentopt_biggan.testing import tiny_config, write_random_model

    return write_random_model(tmp_path_factory.mktemp("b128"), tiny_config(128), seed=0)


def test_full_space_contract(full):
    assert full.latent_dim == 256 and full.image_size == (128, 128)
    check_generator(full)


def test_initial_codes_are_truncated_noise_and_a_class_embedding(full, tiny_folder_module):
    codes = full.initial_codes(200, rng=np.random.default_rng(0))
    noise, classes = codes[:, :128], codes[:, 128:]
    assert np.abs(noise).max() <= 0.7 * 2.0 + 1e-6 and 0.5 < noise.std() < 0.7
    columns = full.embeddings.T  # (1000, 128)
    assert all(np.any(np.all(columns == row, axis=1)) for row in classes[:20])
    assert len({tuple(row) for row in classes}) > 100  # random classes
    fixed = BigGANGenerator(model="biggan-deep-128", weights=tiny_folder_module, device="cpu", initial_class=207)
    assert np.array_equal(fixed.initial_codes(3, rng=np.random.default_rng(1))[:, 128:],
                          np.tile(full.embeddings[:, 207], (3, 1)))


def test_zero_class_start(tiny_folder_module):
    generator = BigGANGenerator(model="biggan-deep-128", weights=tiny_folder_module, device="cpu", initial_class="zero")
    assert not generator.initial_codes(4, rng=np.random.default_rng(0))[:, 128:].any()


def test_class_space_holds_the_noise(tiny_folder_module):
    space = biggan(space="class", model="biggan-deep-128", weights=tiny_folder_module, device="cpu", fixed_seed=3)
    assert isinstance(space, FixedSubspace) and space.latent_dim == 128
    check_generator(space)
    codes = space.initial_codes(2, rng=np.random.default_rng(0))
    full_codes = np.concatenate([np.tile(space.fixed[:128], (2, 1)), codes], axis=1)
    assert torch.allclose(space.generate(codes), space.base.generate(full_codes), atol=1e-6)
    again = biggan(space="class", model="biggan-deep-128", weights=tiny_folder_module, device="cpu", fixed_seed=3)
    assert isinstance(again, FixedSubspace)
    assert np.array_equal(again.fixed, space.fixed)  # the held half is reproducible from its seed
    assert space.provenance()["space"] == "class" and space.provenance()["free_dims"] == 128


def test_noise_space_holds_the_class(tiny_folder_module):
    space = biggan(space="noise", class_index=1, model="biggan-deep-128", weights=tiny_folder_module, device="cpu")
    assert isinstance(space, FixedSubspace) and isinstance(space.base, BigGANGenerator) and space.latent_dim == 128
    assert np.array_equal(space.fixed[128:], space.base.class_embedding(1))
    assert space.provenance()["fixed_class"] == 1
    codes = space.initial_codes(2, rng=np.random.default_rng(0))
    assert np.abs(codes).max() <= 1.4 + 1e-6


def test_bad_arguments_are_clear(tiny_folder_module):
    kwargs = {"model": "biggan-deep-128", "weights": tiny_folder_module, "device": "cpu"}
    with pytest.raises(ValueError, match="space must be one of full, class, noise"):
        biggan(space="both", **kwargs)
    with pytest.raises(ValueError, match=r"truncation must be in \(0, 1\]"):
        BigGANGenerator(truncation=1.5, **kwargs)
    with pytest.raises(ValueError, match="class_index must be an ImageNet class index"):
        biggan(space="noise", class_index=1000, **kwargs)
    with pytest.raises(ValueError, match="initial_class"):
        BigGANGenerator(initial_class="dog", **kwargs)
    with pytest.raises(ValueError, match="unknown BigGAN model"):
        BigGANGenerator(model="biggan-deep-64")


@pytest.mark.parametrize("tail", [1, 3, 40])
def test_chunking_of_the_high_resolution_layers_does_not_change_images(tiny_folder_module, full, tail):
    generator = BigGANGenerator(model="biggan-deep-128", weights=tiny_folder_module, device="cpu", tail_batch_size=tail)
    codes = full.initial_codes(5, rng=np.random.default_rng(2))
    assert torch.allclose(generator.generate(codes), full.generate(codes), atol=1e-5)
    assert isinstance(generator.network, BigGANInference) and generator.network.split == 7


def test_gradient_reaches_the_code(full):
    codes = torch.from_numpy(full.initial_codes(1, rng=np.random.default_rng(0))).requires_grad_(True)
    full.generate(codes).mean().backward()
    assert codes.grad is not None and codes.grad[:, :128].abs().sum() > 0 and codes.grad[:, 128:].abs().sum() > 0
