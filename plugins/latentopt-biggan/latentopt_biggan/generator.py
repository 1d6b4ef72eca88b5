"""BigGAN-deep (Brock et al. 2019) through ``pytorch-pretrained-biggan``: 256-d codes to images.

A code is ``[noise (128) ; class embedding (128)]``; the embedding of ImageNet class ``c`` is column
``c`` of the model's ``embeddings.weight`` (a Linear(1000 -> 128)). Images are
``model.generator(code, truncation)`` mapped from [-1, 1] to [0, 1].
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.checks import ConfigError, finite_number, integer
from latentopt.generator import FixedSubspace, Generator
from latentopt.runtime import resolve_device
from latentopt.weights import file_record
from latentopt_biggan import loading
from latentopt_biggan.network import BigGANInference

NOISE_DIM = 128
CLASS_DIM = 128
SPACES = ("full", "class", "noise")
# Images per pass through the high-resolution layers: bounds memory (benchmarks/generator_speed.py).
TAIL_BATCH_SIZES = {128: 40, 256: 20, 512: 5}


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], *, bound: float = 2.0) -> np.ndarray:
    """Standard normal samples redrawn until inside ``[-bound, bound]`` (BigGAN's truncation trick
    samples noise from N(0, 1) truncated at 2, as ``truncated_noise_sample`` does)."""
    samples = rng.standard_normal(shape)
    outside = np.abs(samples) > bound
    while outside.any():
        samples[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(samples) > bound
    return samples


class BigGANGenerator(Generator):
    """The full 256-d BigGAN-deep space. Use :data:`biggan` (registered as ``biggan``) for sub-spaces.

    Args:
        model: ``biggan-deep-128``, ``biggan-deep-256`` or ``biggan-deep-512``.
        truncation: in (0, 1]; batch-norm statistics are exact on the library's 0.02 grid and
            interpolated between grid points. 0.7 in Wang & Ponce's experiments.
        weights: a folder with ``config.json`` and ``pytorch_model.bin``; None: the library's cache.
        download: allow the library to download into its cache when nothing is there.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass through the low-resolution layers (a whole generation
            is fastest: their weights outweigh their activations).
        tail_batch_size: images per pass through the layers at 64x64 and above (memory grows with
            it). None: 40 at 128x128, 20 at 256x256 (measured: a generation of 40 peaks at 3.2 GB
            resident, 11 % faster than chunks of 10 at 2.5 GB), 5 at 512x512.
        noise_scale: initial noise = ``noise_scale`` x N(0, 1) truncated at 2 (0.7: Wang & Ponce).
        initial_class: class half of initial codes: ``"random"`` (a random ImageNet class per code),
            ``"zero"`` (Wang & Ponce's start) or a class index in [0, 1000).

    Images are ``(n, 3, R, R)`` float32 RGB in [0, 1].
    """

    differentiable = True

    def __init__(
        self,
        *,
        model: str = "biggan-deep-256",
        truncation: float = 0.7,
        weights: str | os.PathLike[str] | None = None,
        download: bool = True,
        device: str = "auto",
        batch_size: int = 40,
        tail_batch_size: int | None = None,
        noise_scale: float = 0.7,
        initial_class: str | int = "random",
    ) -> None:
        resolution = loading.check_model_name(model)
        if not 0.0 < finite_number(truncation, "generator.truncation") <= 1.0:
            raise ConfigError(f"generator.truncation must be in (0, 1], got {truncation}")
        finite_number(noise_scale, "generator.noise_scale", minimum=0.0, inclusive=True)
        if tail_batch_size is None:
            tail_batch_size = TAIL_BATCH_SIZES[resolution]
        integer(batch_size, "generator.batch_size", minimum=1)
        integer(tail_batch_size, "generator.tail_batch_size", minimum=1)
        self.initial_class = _check_class(initial_class, "initial_class", allow=("random", "zero"))
        self.model_name = model
        self.truncation = float(truncation)
        self.noise_scale = float(noise_scale)
        self.latent_dim = NOISE_DIM + CLASS_DIM
        self.image_size = (resolution, resolution)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        config_path, state_path = loading.resolve(model, weights, allow_download=download)
        self._weights_record = {"config": file_record(config_path), "state_dict": file_record(state_path)}
        network = loading.load_model(config_path, state_path, model)
        # (128, 1000): column c is class c's embedding
        self.embeddings = network.embeddings.weight.detach().clone().numpy().astype(np.float32)
        self.network: BigGANInference | None = BigGANInference(
            network, self.truncation, tail_batch_size=tail_batch_size
        ).to(self.device)

    @classmethod
    def contract_instance(cls) -> BigGANGenerator:
        """A small random BigGAN-deep-128 written to a temporary folder and loaded by the real loader."""
        from latentopt_biggan.testing import TINY_CONFIG, write_random_model

        folder = Path(tempfile.mkdtemp(prefix="latentopt-biggan-"))
        try:
            write_random_model(folder, TINY_CONFIG, seed=0)
            return cls(model="biggan-deep-128", weights=folder, device="cpu", download=False)
        finally:
            shutil.rmtree(folder)

    def class_embedding(self, class_index: int) -> np.ndarray:
        """``(128,)`` float32 embedding of ImageNet class ``class_index``."""
        return self.embeddings[:, _check_class(class_index, "class_index")].copy()

    def initial_codes(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``(n, 256)`` float32: ``[noise_scale x truncated N(0,1) ; class embedding]``."""
        noise = self.noise_scale * truncated_normal(rng, (n, NOISE_DIM))
        if self.initial_class == "zero":
            classes = np.zeros((n, CLASS_DIM))
        elif self.initial_class == "random":
            classes = self.embeddings[:, rng.integers(0, loading.N_CLASSES, n)].T
        else:
            classes = np.tile(self.class_embedding(int(self.initial_class)), (n, 1))
        return np.concatenate([noise, classes], axis=1).astype(np.float32)

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        if self.network is None:
            raise RuntimeError("BigGANGenerator: generate() after close()")
        # Codes far outside BigGAN's range (from ~30 x the initial codes' norm) overflow float32 in the
        # conditional batch norms, and inf - inf leaves NaN pixels: those are mid-grey, so that an image is
        # always finite in [0, 1] (latentopt.testing.check_generator tries 10 and 100 x that norm).
        images = torch.nan_to_num(self.network(codes), nan=0.0)
        return ((images + 1.0) / 2.0).clamp(0.0, 1.0).contiguous()

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "model": self.model_name,
            "truncation": self.truncation,
            "image_size": list(self.image_size),
            "noise_scale": self.noise_scale,
            "initial_class": self.initial_class,
            "weights": self._weights_record,
        }

    def close(self) -> None:
        self.network = None


def _check_class(value: str | int, key: str, *, allow: tuple[str, ...] = ()) -> str | int:
    if isinstance(value, str) and value in allow:
        return value
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= int(value) < loading.N_CLASSES:
        extra = f" or one of {', '.join(allow)}" if allow else ""
        raise ConfigError(f"{key} must be an ImageNet class index in [0, {loading.N_CLASSES}){extra}, got {value!r}")
    return int(value)


class BigGANSubspace(FixedSubspace):
    """Half of the BigGAN code searched, the other half held (class-only or noise-only space)."""

    def __init__(self, base: BigGANGenerator, *, space: str, fixed: np.ndarray, fixed_class: int | None,
                 seed: int) -> None:
        free = np.arange(NOISE_DIM, NOISE_DIM + CLASS_DIM) if space == "class" else np.arange(NOISE_DIM)
        super().__init__(base, free=free, fixed=fixed)
        self.space = space
        self._details = {"space": space, "fixed_seed": seed, "fixed_class": fixed_class}

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), **self._details}


class BigGANFactory:
    """The ``biggan`` component: ``biggan(space=..., ...)`` returns a Generator.

    Args:
        space: ``full`` (256-d), ``class`` (the 128 class dimensions; noise fixed) or ``noise``
            (the 128 noise dimensions; class fixed). Wang & Ponce searched these with CMA step
            sizes 0.2, 0.06 and 0.3.
        class_index: the class held fixed in the noise space (None: drawn from ``fixed_seed``).
        fixed_seed: seed of the held half (the noise in the class space, the class if not given).
        **kwargs: :class:`BigGANGenerator` arguments.
    """

    def __call__(self, *, space: str = "full", class_index: int | None = None, fixed_seed: int = 0,
                 **kwargs: Any) -> Generator:
        if space not in SPACES:
            raise ConfigError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        if class_index is not None:
            _check_class(class_index, "class_index")
        base = BigGANGenerator(**kwargs)
        if space == "full":
            if class_index is not None:
                base.close()
                raise ConfigError("class_index fixes the class of the noise space; in the full space use "
                                 "initial_class to start from a class")
            return base
        rng = np.random.default_rng(fixed_seed)
        chosen = int(rng.integers(0, loading.N_CLASSES)) if class_index is None else int(class_index)
        noise = base.noise_scale * truncated_normal(rng, (NOISE_DIM,))
        fixed = np.concatenate([noise, base.class_embedding(chosen)]).astype(np.float32)
        return BigGANSubspace(base, space=space, fixed=fixed, fixed_class=None if space == "class" else chosen,
                              seed=fixed_seed)

    def contract_instance(self) -> Generator:
        """The full space of a small random model (sub-spaces are checked in the plugin's tests)."""
        return BigGANGenerator.contract_instance()


biggan = BigGANFactory()
