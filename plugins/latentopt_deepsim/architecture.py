"""DeePSim generator networks (Dosovitskiy & Brox 2016), laid out like the public "upconvGAN" files.

Each variant inverts one layer of CaffeNet: its code is that layer's activation, flattened. The
module names below are the state-dict keys of ``upconvGAN_<variant>.pt`` (Hugging Face
``binxu/DeePSim_DosovitskiyBrox2016``), so a file loads only into the network it was made for.

Provenance of the architectures:

* ``fc6`` (and ``fc7``, identical in shape): three 4096 linear layers ``defc7``, ``defc6``,
  ``defc5``, a reshape to 256x4x4, then transposed convolutions ``deconv5`` ... ``deconv0``;
  LeakyReLU(0.3) after every layer but the last; 3x256x256 out; 56,097,891 parameters
  (Dosovitskiy & Brox 2016; Ponce et al. 2019 evolved in the fc6 space).
* ``fc8``: as fc6 with a 1000-d input (CaffeNet's class logits).
* ``pool5``: three convolutions ``Rconv6-8`` on the 256x6x6 pool5 map, then the fc6 decoder.
* ``conv3``, ``conv4`` (384x13x13), ``norm2`` (256x13x13), ``norm1`` (96x27x27): a narrower
  decoder ending in a 3x3 convolution and ``255 * tanh``; norm1 and norm2 give 240x240 images.

fc6/fc7/fc8/pool5 follow the layer table that several public loaders of these files share; conv3,
conv4, norm1 and norm2 follow the layer table of the converter's own loader (PonceLab/Animadversio
``GAN_utils.upconvGAN``), which loads these files strictly. Key names and shapes are checked on
every load; strides, paddings and activations are not stored in a state dict and come from that table.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

LEAKY_SLOPE = 0.3  # Dosovitskiy & Brox 2016: LeakyReLU with negative slope 0.3


@dataclass(frozen=True)
class Layer:
    """One layer of the table: ``kind`` is linear, conv (Conv2d) or deconv (ConvTranspose2d)."""

    name: str
    kind: str
    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    activation: bool = True  # LeakyReLU(0.3) after the layer

    def module(self) -> nn.Module:
        if self.kind == "linear":
            return nn.Linear(self.c_in, self.c_out)
        conv = nn.Conv2d if self.kind == "conv" else nn.ConvTranspose2d
        return conv(self.c_in, self.c_out, self.kernel, stride=self.stride, padding=self.padding)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """State-dict shapes of this layer's weight and bias."""
        if self.kind == "linear":
            weight: tuple[int, ...] = (self.c_out, self.c_in)
        elif self.kind == "conv":
            weight = (self.c_out, self.c_in, self.kernel, self.kernel)
        else:  # ConvTranspose2d stores (in, out, k, k)
            weight = (self.c_in, self.c_out, self.kernel, self.kernel)
        return {f"{self.name}.weight": weight, f"{self.name}.bias": (self.c_out,)}


@dataclass(frozen=True)
class Variant:
    """A DeePSim network: the code's layout, its layers, and the image it returns."""

    name: str
    latent_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    image_size: tuple[int, int]
    tanh_output: bool = False  # conv3/conv4/norm1/norm2 end in 255 * tanh
    reshape_after: str | None = None  # fc variants: reshape to 256x4x4 after this layer

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state-dict key of this variant and its shape."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            shapes.update(layer.shapes())
        return shapes

    def parameter_count(self) -> int:
        return sum(math.prod(shape) for shape in self.state_shapes().values())


def _fc_decoder(c_in: int) -> tuple[Layer, ...]:
    return (
        Layer("defc7", "linear", c_in, 4096),
        Layer("defc6", "linear", 4096, 4096),
        Layer("defc5", "linear", 4096, 4096),
        *_deconv_stack(256),
    )


def _deconv_stack(c_in: int) -> tuple[Layer, ...]:
    """The fc6 decoder from ``deconv5`` on: 4x4 -> 256x256."""
    return (
        Layer("deconv5", "deconv", c_in, 256, 4, 2, 1),
        Layer("conv5_1", "deconv", 256, 512, 3, 1, 1),
        Layer("deconv4", "deconv", 512, 256, 4, 2, 1),
        Layer("conv4_1", "deconv", 256, 256, 3, 1, 1),
        Layer("deconv3", "deconv", 256, 128, 4, 2, 1),
        Layer("conv3_1", "deconv", 128, 128, 3, 1, 1),
        Layer("deconv2", "deconv", 128, 64, 4, 2, 1),
        Layer("deconv1", "deconv", 64, 32, 4, 2, 1),
        Layer("deconv0", "deconv", 32, 3, 4, 2, 1, activation=False),
    )


def _conv_decoder() -> tuple[Layer, ...]:
    """conv3/conv4 decoder: 512x8x8 -> 3x256x256."""
    return (
        Layer("deconv5", "deconv", 512, 256, 4, 2, 1),
        Layer("conv5_1", "deconv", 256, 256, 3, 1, 1),
        Layer("deconv4", "deconv", 256, 128, 4, 2, 1),
        Layer("conv4_1", "deconv", 128, 128, 3, 1, 1),
        Layer("deconv3", "deconv", 128, 128, 4, 2, 1),
        Layer("conv3_1", "deconv", 128, 128, 3, 1, 1),
        Layer("deconv2", "deconv", 128, 64, 4, 2, 1),
        Layer("conv2_1", "conv", 64, 32, 3, 1, 1),
        Layer("deconv1", "deconv", 32, 16, 4, 2, 1),
        Layer("conv1_1", "conv", 16, 3, 3, 1, 1, activation=False),
    )


def _norm_decoder() -> tuple[Layer, ...]:
    """norm1/norm2 decoder: 128x15x15 -> 3x240x240 (no activation after deconv1, as converted)."""
    return (
        Layer("deconv4", "deconv", 128, 128, 4, 2, 1),
        Layer("conv4_1", "conv", 128, 128, 3, 1, 1),
        Layer("deconv3", "deconv", 128, 64, 4, 2, 1),
        Layer("conv3_1", "conv", 64, 64, 3, 1, 1),
        Layer("deconv2", "deconv", 64, 32, 4, 2, 1),
        Layer("conv2_1", "conv", 32, 32, 3, 1, 1),
        Layer("deconv1", "deconv", 32, 16, 4, 2, 1, activation=False),
        Layer("conv1_1", "conv", 16, 3, 3, 1, 1, activation=False),
    )


_CONV34_HEAD = (
    Layer("Rconv6", "conv", 384, 384, 3, 1, 0),
    Layer("Rconv7", "conv", 384, 512, 3, 1, 0),
    Layer("Rconv8", "conv", 512, 512, 2, 1, 0),
)

VARIANTS: dict[str, Variant] = {
    "fc6": Variant("fc6", (4096,), _fc_decoder(4096), (256, 256), reshape_after="defc5"),
    "fc7": Variant("fc7", (4096,), _fc_decoder(4096), (256, 256), reshape_after="defc5"),
    "fc8": Variant("fc8", (1000,), _fc_decoder(1000), (256, 256), reshape_after="defc5"),
    "pool5": Variant(
        "pool5",
        (256, 6, 6),
        (
            Layer("Rconv6", "conv", 256, 512, 3, 1, 1),
            Layer("Rconv7", "conv", 512, 512, 3, 1, 1),
            Layer("Rconv8", "conv", 512, 512, 3, 1, 0),
            *_deconv_stack(512),
        ),
        (256, 256),
    ),
    "conv4": Variant("conv4", (384, 13, 13), (*_CONV34_HEAD, *_conv_decoder()), (256, 256), tanh_output=True),
    "conv3": Variant("conv3", (384, 13, 13), (*_CONV34_HEAD, *_conv_decoder()), (256, 256), tanh_output=True),
    "norm2": Variant(
        "norm2",
        (256, 13, 13),
        (
            Layer("Rconv6", "conv", 256, 256, 3, 1, 2),
            Layer("Rconv7", "conv", 256, 128, 3, 1, 1),
            Layer("Rconv8", "conv", 128, 128, 3, 1, 1),
            *_norm_decoder(),
        ),
        (240, 240),
        tanh_output=True,
    ),
    "norm1": Variant(
        "norm1",
        (96, 27, 27),
        (
            Layer("Rconv6", "conv", 96, 128, 3, 2, 2),
            Layer("Rconv7", "conv", 128, 128, 3, 1, 1),
            Layer("Rconv8", "conv", 128, 128, 3, 1, 1),
            *_norm_decoder(),
        ),
        (240, 240),
        tanh_output=True,
    ),
}


def get_variant(name: str) -> Variant:
    """The variant called ``name``; a clear error lists the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown DeePSim variant {name!r}; known: {', '.join(VARIANTS)}") from None


class DeePSimNetwork(nn.Module):
    """A DeePSim decoder: flat codes ``(n, d)`` -> raw images ``(n, 3, H, W)``, BGR, mean-subtracted,
    roughly 0-255 (the Caffe convention; see :func:`raw_to_rgb`)."""

    def __init__(self, variant: Variant) -> None:
        super().__init__()
        self.variant = variant
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        for layer in variant.layers:
            modules[layer.name] = layer.module()
            if layer.activation:
                modules[f"relu_{layer.name}"] = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.G = nn.Sequential(modules)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = codes.reshape(codes.shape[0], *self.variant.latent_shape)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        for name, module in self.G.named_children():
            x = module(x)
            if name == f"relu_{self.variant.reshape_after}":
                x = x.reshape(x.shape[0], 256, 4, 4).contiguous(memory_format=torch.channels_last)
        if self.variant.tanh_output:
            x = torch.tanh(x) * 255.0
        return x


# Caffe's BGR channel means of ImageNet, added back to the network's mean-subtracted output.
BGR_MEAN = (104.0, 117.0, 123.0)


def raw_to_rgb(raw: torch.Tensor) -> torch.Tensor:
    """Caffe raw output -> images.

    Args:
        raw: ``(n, 3, H, W)`` float32, BGR, mean-subtracted, nominally 0-255.

    Returns:
        ``(n, 3, H, W)`` float32 RGB in [0, 1]: channels flipped, the BGR mean (104, 117, 123)
        added, clamped to [0, 255], divided by 255.
    """
    rgb_mean = torch.tensor(BGR_MEAN[::-1], dtype=raw.dtype, device=raw.device).view(1, 3, 1, 1)
    # flip() copies; the rest works in place on that copy (0.29 vs 0.43 ms per 256 px image here).
    return raw.flip(1).add_(rgb_mean).clamp_(0.0, 255.0).div_(255.0)
