"""BigGAN-deep prepared for inference: exact truncation statistics, fused batch norm, split batches.

The library's ``model.generator(code, truncation)`` is the reference; :class:`BigGANInference`
computes the same images (checked in the tests on the truncation grid, where the library is exact)
with three differences that matter on a small CPU:

* batch-norm statistics are those of the requested truncation: exact rows on the 0.02 grid, a
  linear blend between them (the library blends neighbouring rows the wrong way round, and by
  float rounding takes the neighbouring row for 0.14, 0.28, 0.56, 0.58 and 0.94);
* each batch norm is one fused multiply-add, spectral norm is baked into the weights, and the last
  convolution computes only the 3 channels that are kept (the library computes 128 and drops 125);
* the low-resolution layers (weights larger than activations) run on the whole batch, and the
  layers at 64x64 and above (activations larger than weights) in chunks, which bounds memory.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def truncation_statistics(means: torch.Tensor, variances: torch.Tensor,
                          truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-norm statistics at ``truncation`` from the per-truncation table (rows on a 0.02 grid).

    On the grid (0.02, 0.04, ..., 1.0, to 1e-6) the row is taken exactly. Between grid points the
    two neighbours are interpolated linearly. (The library's own forward weights the neighbours the
    wrong way round and, by float rounding, takes 0.56's row for 0.58 and misses 4 other grid points.)
    """
    steps = means.shape[0] - 1
    position = truncation * steps
    nearest = round(position)
    if abs(position - nearest) < 1e-6:
        return means[nearest], variances[nearest]
    low = math.floor(position)
    frac = position - low
    return ((1 - frac) * means[low] + frac * means[low + 1], (1 - frac) * variances[low] + frac * variances[low + 1])


class FrozenBatchNorm(nn.Module):
    """BigGAN's (class-)conditional batch norm with its statistics fixed at one truncation.

    ``out = x * s + b`` with ``s = gain / sqrt(var + eps)`` and ``b = offset - mean * s`` per image
    and channel: one fused multiply-add on the activation instead of the library's five passes.
    """

    mean: torch.Tensor
    inv_std: torch.Tensor
    fixed_scale: torch.Tensor
    fixed_shift: torch.Tensor

    def __init__(self, source: Any, truncation: float) -> None:
        super().__init__()
        mean, var = truncation_statistics(source.running_means, source.running_vars, truncation)
        inv_std = torch.rsqrt(var + source.eps)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("inv_std", inv_std)
        self.conditional = bool(source.conditional)
        self.gain: nn.Module | None = source.scale if self.conditional else None
        self.offset: nn.Module | None = source.offset if self.conditional else None
        if not self.conditional:
            scale = source.weight.detach() * inv_std
            self.register_buffer("fixed_scale", scale.view(1, -1, 1, 1).clone())
            self.register_buffer("fixed_shift", (source.bias.detach() - mean * scale).view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor, truncation: float, condition_vector: torch.Tensor | None = None) -> torch.Tensor:
        if self.gain is None or self.offset is None or condition_vector is None:
            return torch.addcmul(self.fixed_shift, x, self.fixed_scale)
        scale = (1.0 + self.gain(condition_vector)) * self.inv_std
        shift = self.offset(condition_vector) - self.mean * scale
        return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])


def prepare_generator(network: Any, truncation: float) -> Any:
    """Make a loaded ``BigGAN`` fast and exact at one truncation; returns its ``generator``.

    * spectral norm is baked into plain weights (eval-mode ``W / sigma``, as the hooks compute);
    * every batch norm takes its statistics at ``truncation`` (:class:`FrozenBatchNorm`);
    * ``conv_to_rgb`` keeps only the 3 output channels the library keeps (``z[:, :3]``), which
      saves most of the last layer's work (128 -> 3 channels at full resolution);
    * ReLUs run in place; weights are channels_last and need no gradient.
    """
    from pytorch_pretrained_biggan.model import BigGANBatchNorm

    for module in list(network.modules()):
        if hasattr(module, "weight_orig"):
            nn.utils.remove_spectral_norm(module)
    generator: Any = network.generator

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, BigGANBatchNorm):
                setattr(parent, name, FrozenBatchNorm(child, truncation))
            elif isinstance(child, nn.ReLU):
                setattr(parent, name, nn.ReLU(inplace=True))
            else:
                swap(child)

    swap(generator)
    old: Any = generator.conv_to_rgb
    rgb = nn.Conv2d(old.in_channels, 3, old.kernel_size, padding=old.padding, bias=True)
    with torch.no_grad():
        rgb.weight.copy_(old.weight[:3])
        rgb.bias.copy_(old.bias[:3])  # type: ignore[union-attr]
    generator.conv_to_rgb = rgb
    generator.requires_grad_(False).eval()
    return generator.to(memory_format=torch.channels_last)


class BigGANInference(nn.Module):
    """Codes ``(n, 256)`` float32 -> images ``(n, 3, R, R)`` in [-1, 1] at one truncation.

    Args:
        network: a loaded library ``BigGAN`` (it is modified in place).
        truncation: in (0, 1].
        tail_batch_size: images per pass through the layers at 64x64 and above.
        tail_resolution: feature-map size from which layers run in chunks.
    """

    def __init__(self, network: Any, truncation: float, *, tail_batch_size: int = 10,
                 tail_resolution: int = 64) -> None:
        super().__init__()
        self.truncation = float(truncation)
        self.tail_batch_size = int(tail_batch_size)
        self.channel_width = int(network.config.channel_width)
        self.generator = prepare_generator(network, self.truncation)
        resolution, split = 4, len(self.generator.layers)
        for index, layer in enumerate(self.generator.layers):
            if getattr(layer, "up_sample", False):
                resolution *= 2
            if resolution >= tail_resolution:
                split = index
                break
        self.split = split  # layers[:split] run on the whole batch

    def _run(self, layers: Any, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            z = layer(z, codes, self.truncation) if hasattr(layer, "up_sample") else layer(z)
        return z

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        g = self.generator
        # the library's layout: TF's (n, 4, 4, C) reshaped, then channels first
        z = g.gen_z(codes).view(-1, 4, 4, 16 * self.channel_width).permute(0, 3, 1, 2)
        z = self._run(g.layers[: self.split], z.contiguous(memory_format=torch.channels_last), codes)
        images = []
        for z_part, code_part in zip(z.split(self.tail_batch_size), codes.split(self.tail_batch_size), strict=True):
            x = self._run(g.layers[self.split :], z_part, code_part)
            x = g.conv_to_rgb(g.relu(g.bn(x, self.truncation)))
            images.append(torch.tanh(x[:, :3]))
        return torch.cat(images) if len(images) > 1 else images[0]
