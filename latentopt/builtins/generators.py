"""Generators that need no weights: a Fourier-parameterised image and a low-resolution pixel image."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from latentopt.checks import finite_number, image_side, integer
from latentopt.generator import Generator
from latentopt.plugins import hookimpl
from latentopt.runtime import resolve_device

# Square root of the RGB colour covariance of natural images (ImageNet), as used by feature
# visualisation work (Olah et al. 2017, "Feature Visualization"): latent channels are decorrelated
# colours, mapped to RGB by this matrix.
_COLOUR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
_COLOUR_SQRT /= np.max(np.linalg.norm(_COLOUR_SQRT, axis=0))


class FourierGenerator(Generator):
    """Images from the low-frequency Fourier coefficients of three decorrelated colour channels.

    The code holds the real and imaginary parts of every coefficient with ``|f_y| <= max_frequency``
    and ``0 <= f_x <= max_frequency`` (cycles per image), for each colour channel:
    ``d = 3 * 2 * (2 k + 1) * (k + 1)``. Coefficients are scaled by ``1 / f ** decay`` (natural
    images' spectrum), colours mixed by the natural-image colour matrix and squashed by a sigmoid.

    Args:
        image_size: side of the square images in pixels.
        max_frequency: highest spatial frequency ``k`` (cycles per image) in the code.
        decay: exponent of the ``1 / f`` spectrum scaling.
        init_scale: standard deviation of initial codes (0.5: mid-contrast textures).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: largest batch per forward pass.
    """

    differentiable = True

    def __init__(
        self,
        *,
        image_size: int = 224,
        max_frequency: int = 10,
        decay: float = 1.0,
        init_scale: float = 0.5,
        device: str = "auto",
        batch_size: int = 40,
    ) -> None:
        image_side(image_size)
        integer(max_frequency, "generator.max_frequency", minimum=1, maximum=image_size // 2 - 1)
        finite_number(decay, "generator.decay", minimum=0.0, inclusive=True)
        self.image_size = (image_size, image_size)
        self.max_frequency = max_frequency
        self.init_scale = finite_number(init_scale, "generator.init_scale", minimum=0.0)
        self.batch_size = integer(batch_size, "generator.batch_size", minimum=1)
        self.device = resolve_device(device)
        fy = np.fft.fftfreq(image_size) * image_size
        fx = np.fft.rfftfreq(image_size) * image_size
        rows = np.flatnonzero(np.abs(fy) <= max_frequency)
        cols = np.flatnonzero(fx <= max_frequency)
        self._rows = torch.from_numpy(rows).to(self.device)
        self._cols = torch.from_numpy(cols).to(self.device)
        freq = np.sqrt(fy[rows][:, None] ** 2 + fx[cols][None, :] ** 2)
        scale = 1.0 / np.maximum(freq, 1.0) ** decay
        self._n_coef = scale.size
        self.latent_dim = 3 * 2 * self._n_coef
        # Normalise so that unit-variance codes give unit-variance pixels before the colour mix.
        # irfft2 with norm="ortho": each coefficient pair contributes 2|c|^2 / (H W) per pixel.
        pixel_var = 2.0 * 2.0 * float(np.sum(scale**2)) / image_size**2
        self._scale = torch.from_numpy((scale / np.sqrt(pixel_var)).astype(np.float32)).to(self.device)
        self._colour = torch.from_numpy(_COLOUR_SQRT).to(self.device)

    @classmethod
    def contract_instance(cls) -> FourierGenerator:
        return cls(image_size=64, max_frequency=6, device="cpu")

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        m = codes.shape[0]
        k_rows, k_cols = self._rows.numel(), self._cols.numel()
        parts = codes.view(m, 3, 2, k_rows, k_cols) * self._scale
        size = self.image_size[0]
        spectrum = torch.zeros(m, 3, size, size // 2 + 1, dtype=torch.complex64, device=codes.device)
        block = torch.complex(parts[:, :, 0], parts[:, :, 1])
        spectrum[:, :, self._rows[:, None], self._cols[None, :]] = block
        decorrelated = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho")
        rgb = torch.einsum("ij,mjhw->mihw", self._colour, decorrelated)
        return torch.sigmoid(rgb).contiguous(memory_format=torch.channels_last)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "max_frequency": self.max_frequency, "latent_dim": self.latent_dim}


class PixelGenerator(Generator):
    """Images from a low-resolution RGB grid, upsampled bilinearly and squashed by a sigmoid.

    Args:
        image_size: side of the square output images.
        resolution: side of the latent grid; ``d = 3 * resolution ** 2``.
        init_scale: standard deviation of initial codes.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: largest batch per forward pass.
    """

    differentiable = True

    def __init__(
        self,
        *,
        image_size: int = 224,
        resolution: int = 32,
        init_scale: float = 0.5,
        device: str = "auto",
        batch_size: int = 40,
    ) -> None:
        image_side(image_size)
        integer(resolution, "generator.resolution", minimum=1, maximum=image_size)
        self.image_size = (image_size, image_size)
        self.resolution = resolution
        self.latent_dim = 3 * resolution * resolution
        self.init_scale = finite_number(init_scale, "generator.init_scale", minimum=0.0)
        self.batch_size = integer(batch_size, "generator.batch_size", minimum=1)
        self.device = resolve_device(device)

    @classmethod
    def contract_instance(cls) -> PixelGenerator:
        return cls(image_size=64, resolution=8, device="cpu")

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        grid = codes.view(-1, 3, self.resolution, self.resolution)
        images = torch.nn.functional.interpolate(
            grid, size=self.image_size, mode="bilinear", align_corners=False
        )
        return torch.sigmoid(images).contiguous(memory_format=torch.channels_last)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "resolution": self.resolution}


@hookimpl
def latentopt_register_generators(register: Any) -> None:
    register("fourier", FourierGenerator)
    register("pixel", PixelGenerator)
