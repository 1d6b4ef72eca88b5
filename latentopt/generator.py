"""The Generator interface: latent codes in, images out.

A generator maps codes ``(n, d)`` float32 to images ``(n, 3, H, W)`` float32 RGB in [0, 1].
Subclasses implement :meth:`Generator._generate` on a torch batch; the public
:meth:`Generator.generate` validates, chunks the batch and checks the output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


class Generator(ABC):
    """Base class of every generator.

    Attributes:
        latent_dim: dimension ``d`` of a code.
        image_size: ``(H, W)`` of the images it returns.
        init_scale: standard deviation of the default initial codes.
        differentiable: True when :meth:`generate` keeps the autograd graph of torch inputs.
        batch_size: largest batch sent to :meth:`_generate` at once (memory and speed on CPU).
        device: torch device the network runs on.
        code_bounds: ``(low, high)`` that every coordinate of a valid code lies in, for a generator
            whose code space is a box; None (the default) when any finite code is valid. The contract
            checks (:func:`latentopt.testing.check_generator`) try its corners.
    """

    latent_dim: int
    image_size: tuple[int, int]
    init_scale: float = 1.0
    differentiable: bool = False
    batch_size: int = 40
    device: torch.device = torch.device("cpu")
    code_bounds: tuple[float, float] | None = None

    def initial_codes(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` starting codes, ``(n, d)`` float32. Default: N(0, init_scale^2)."""
        return (self.init_scale * rng.standard_normal((n, self.latent_dim))).astype(np.float32)

    @abstractmethod
    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(m, d)`` float32 on ``self.device`` -> images ``(m, 3, H, W)`` in [0, 1]."""

    def generate(self, codes: ArrayLike) -> torch.Tensor:
        """Turn codes into images.

        Args:
            codes: ``(n, d)`` float32, numpy or torch. A torch tensor that requires grad keeps
                its graph when the generator is differentiable.

        Returns:
            ``(n, 3, H, W)`` float32 RGB in [0, 1] on ``self.device``.
        """
        tensor = codes if isinstance(codes, torch.Tensor) else torch.from_numpy(np.asarray(codes))
        if tensor.ndim != 2 or tensor.shape[1] != self.latent_dim:
            raise ValueError(
                f"{type(self).__name__}: codes must have shape (n, {self.latent_dim}), "
                f"got {tuple(tensor.shape)}"
            )
        tensor = tensor.to(self.device, torch.float32)
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{type(self).__name__}: codes contain NaN or inf")
        track = tensor.requires_grad and self.differentiable
        with torch.set_grad_enabled(track), torch.inference_mode(not track):
            chunks = [self._generate(part) for part in torch.split(tensor, self.batch_size)]
        images = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
        expected = (tensor.shape[0], 3, *self.image_size)
        if tuple(images.shape) != expected:
            raise RuntimeError(
                f"{type(self).__name__} returned images of shape {tuple(images.shape)}, "
                f"expected {expected}"
            )
        return images

    def provenance(self) -> dict[str, Any]:
        """What a run records about this generator: ``{"class": <class name>, <settings, weights file, hash>...}``.

        JSON-serialisable; subclasses extend ``super().provenance()`` so ``"class"`` comes first.
        """
        return {"class": type(self).__name__}

    def close(self) -> None:
        """Release resources (files, hooks). Safe to call twice."""


class FixedSubspace(Generator):
    """Search only part of another generator's code; hold the rest fixed.

    The wrapped code is ``full[free] = codes``, ``full[~free] = fixed[~free]``. BigGAN's class-only
    and noise-only spaces are this wrapper around the full 256-d BigGAN code.

    Args:
        base: the generator whose code is partly fixed.
        free: indices of the coordinates that are searched.
        fixed: ``(D,)`` full code supplying the held coordinates.
    """

    def __init__(self, base: Generator, *, free: np.ndarray | list[int], fixed: np.ndarray) -> None:
        free_idx = np.asarray(free, dtype=np.int64)
        fixed_code = np.asarray(fixed, dtype=np.float32).reshape(-1)
        if fixed_code.shape[0] != base.latent_dim:
            raise ValueError(
                f"FixedSubspace: fixed code has {fixed_code.shape[0]} values, "
                f"the generator's code has {base.latent_dim}"
            )
        if free_idx.size == 0 or free_idx.min() < 0 or free_idx.max() >= base.latent_dim:
            raise ValueError(f"FixedSubspace: free indices must lie in [0, {base.latent_dim})")
        self.base = base
        self.free = free_idx
        self.fixed = fixed_code
        self.latent_dim = int(free_idx.size)
        self.image_size = base.image_size
        self.differentiable = base.differentiable
        self.batch_size = base.batch_size
        self.device = base.device
        self.code_bounds = base.code_bounds

    def initial_codes(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return self.base.initial_codes(n, rng=rng)[:, self.free]

    def expand(self, codes: torch.Tensor) -> torch.Tensor:
        """``(m, len(free))`` -> full codes ``(m, D)``."""
        full = torch.from_numpy(self.fixed).to(codes.device).expand(codes.shape[0], -1).clone()
        full[:, torch.from_numpy(self.free).to(codes.device)] = codes
        return full

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        return self.base._generate(self.expand(codes))

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "free_dims": int(self.free.size), "base": self.base.provenance()}

    def close(self) -> None:
        self.base.close()
