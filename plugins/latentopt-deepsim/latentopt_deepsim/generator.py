"""The DeePSim generator (Dosovitskiy & Brox 2016): CaffeNet-layer codes to 256x256 images."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from latentopt.checks import finite_number, integer
from latentopt.generator import Generator
from latentopt.runtime import resolve_device
from latentopt.weights import file_record
from latentopt_deepsim import weights as deepsim_weights
from latentopt_deepsim.architecture import DeePSimNetwork, get_variant


class DeePSimGenerator(Generator):
    """DeePSim: a code (one CaffeNet layer's activation, flattened) -> a 256x256 RGB image.

    The fc6 space (4096-d) is the one of Ponce et al. 2019 and of Wang & Ponce's CMA-ES work.
    Codes start near N(0, 1) (norm about 64 in fc6); evolved fc6 codes reach norms around 300,
    which is why spherical optimizers use radius 300 (Wang & Ponce, GECCO 2022).

    Args:
        variant: ``fc6`` (default), ``fc7``, ``fc8``, ``pool5``, ``conv3``, ``conv4``, ``norm1`` or
            ``norm2`` (see :mod:`latentopt_deepsim.architecture`).
        weights: a local ``upconvGAN_<variant>.pt``; None takes the cache (downloading on first use).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass; 40 (a whole generation) is fastest on 2 CPU cores.
        download: allow a download when the cache has no file.
        init_scale: standard deviation of the initial codes.

    Images are ``(n, 3, H, W)`` float32 RGB in [0, 1]: the network's BGR, mean-subtracted 0-255
    output flipped to RGB, the BGR mean (104, 117, 123) added, clamped and divided by 255.
    """

    differentiable = True

    def __init__(
        self,
        *,
        variant: str = "fc6",
        weights: str | os.PathLike[str] | None = None,
        device: str = "auto",
        batch_size: int = 40,
        download: bool = True,
        init_scale: float = 1.0,
    ) -> None:
        self.variant = get_variant(variant)
        self.batch_size = integer(batch_size, "generator.batch_size", minimum=1)
        self.device = resolve_device(device)
        self.latent_dim = self.variant.latent_dim
        self.image_size = self.variant.image_size
        self.init_scale = finite_number(init_scale, "generator.init_scale", minimum=0.0)
        self.weights_path = deepsim_weights.resolve(self.variant.name, weights, allow_download=download)
        state = deepsim_weights.load_state_dict(self.weights_path, self.variant)
        self._weights_record = file_record(self.weights_path)
        network = DeePSimNetwork(self.variant)
        network.G.load_state_dict(state, strict=True)
        del state
        network.requires_grad_(False).eval()
        self.network: DeePSimNetwork | None = network.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]

    @classmethod
    def contract_instance(cls) -> DeePSimGenerator:
        """fc6 with random weights written to a temporary file and loaded by the real loader."""
        from latentopt_deepsim.testing import write_random_weights

        folder = Path(tempfile.mkdtemp(prefix="latentopt-deepsim-"))
        path = write_random_weights(folder / "upconvGAN_fc6.pt", "fc6", seed=0)
        generator = cls(variant="fc6", weights=path, device="cpu")
        path.unlink()  # loaded; the file is not needed any more
        folder.rmdir()
        return generator

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        if self.network is None:
            raise RuntimeError("DeePSimGenerator: generate() after close()")
        return self.network.images(codes)

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "variant": self.variant.name,
            "latent_dim": self.latent_dim,
            "image_size": list(self.image_size),
            "parameters": self.variant.parameter_count(),
            "weights": self._weights_record,
            "published_at": deepsim_weights.url_for(self.variant.name),
        }

    def close(self) -> None:
        self.network = None
