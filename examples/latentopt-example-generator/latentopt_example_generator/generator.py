"""Images made of coloured Gaussian blobs: a small, differentiable, weight-free generator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from latentopt.checks import integer
from latentopt.generator import Generator
from latentopt.runtime import resolve_device


class BlobsGenerator(Generator):
    """Each code holds ``n_blobs`` blobs of 6 numbers: x, y (tanh -> [-1, 1] of the image), size
    (softplus, fraction of the image), and r, g, b (tanh -> added to the grey background).

    Args:
        n_blobs: blobs per image; the code has ``6 * n_blobs`` dimensions.
        image_size: side of the square images in pixels.
        batch_size: images per forward pass.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Images are ``(n, 3, image_size, image_size)`` float32 RGB in [0, 1].
    """

    differentiable = True

    def __init__(self, *, n_blobs: int = 8, image_size: int = 128, batch_size: int = 40, device: str = "auto") -> None:
        # A bad value is a ConfigError naming its key: the command line prints it as one line.
        self.n_blobs = integer(n_blobs, "generator.n_blobs", minimum=1, maximum=1024)
        self.latent_dim = 6 * self.n_blobs
        side = integer(image_size, "generator.image_size", minimum=8, maximum=4096)
        self.image_size = (side, side)
        self.batch_size = integer(batch_size, "generator.batch_size", minimum=1)
        self.device = resolve_device(device)
        axis = torch.linspace(-1.0, 1.0, image_size, device=self.device)
        self._y, self._x = torch.meshgrid(axis, axis, indexing="ij")

    @classmethod
    def contract_instance(cls) -> BlobsGenerator:
        """A small offline instance for latentopt's contract tests."""
        return cls(n_blobs=3, image_size=32, device="cpu")

    def initial_codes(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``(n, 6 * n_blobs)`` float32 ~ N(0, 1): blobs anywhere, of middling size and colour."""
        return rng.standard_normal((n, self.latent_dim)).astype(np.float32)

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        blobs = codes.view(-1, self.n_blobs, 6)
        cx, cy = torch.tanh(blobs[..., 0, None, None]), torch.tanh(blobs[..., 1, None, None])
        size = 0.05 + torch.nn.functional.softplus(blobs[..., 2, None, None]) * 0.2
        colour = 0.5 * torch.tanh(blobs[..., 3:])  # (m, blobs, 3)
        weight = torch.exp(-((self._x - cx) ** 2 + (self._y - cy) ** 2) / (2 * size**2))  # (m, blobs, H, W)
        images = 0.5 + torch.einsum("mbhw,mbc->mchw", weight, colour)
        return images.clamp(0.0, 1.0)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "n_blobs": self.n_blobs, "image_size": list(self.image_size)}
