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
import torch.nn.functional as F
from torch import nn

from latentopt.checks import ConfigError

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
        raise ConfigError(f"unknown DeePSim variant {name!r}; known: {', '.join(VARIANTS)}") from None


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
        """Raw output: BGR, mean-subtracted, roughly 0-255."""
        x = self._trunk(codes, stop=None)
        if self.variant.tanh_output:
            x = torch.tanh(x) * 255.0
        return x

    def images(self, codes: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1]: the same as ``raw_to_rgb(self(codes))``, faster where it can be.

        When the last layer is a linear 4x4, stride-2, padding-1 transposed convolution (fc6, fc7,
        fc8, pool5), it runs as one 2x2 convolution giving each output channel's four pixel phases,
        with the BGR->RGB flip, the mean and the /255 folded into its weights and bias; the phases
        are then interleaved into the image. Same arithmetic as the transposed convolution (equal
        to float32 rounding), 0.9 ms less per image here than that layer plus :func:`raw_to_rgb`.
        """
        last = self.variant.layers[-1]
        if self.variant.tanh_output or not _phase_foldable(last):
            return raw_to_rgb(self(codes))
        x = self._trunk(codes, stop=last.name)
        deconv = getattr(self.G, last.name)
        return _phase_conv_rgb(x, deconv.weight, deconv.bias)

    def _trunk(self, codes: torch.Tensor, stop: str | None) -> torch.Tensor:
        """The layers in order, up to (not including) the one called ``stop``."""
        x = codes.reshape(codes.shape[0], *self.variant.latent_shape)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        fuse = _fusable(x)
        for layer in self.variant.layers:
            if layer.name == stop:
                break
            module = getattr(self.G, layer.name)
            if fuse and layer.activation:
                x = _fused_leaky(layer, module, x)
            else:
                x = module(x)
                if layer.activation:
                    x = F.leaky_relu_(x, LEAKY_SLOPE)
            if layer.name == self.variant.reshape_after:
                x = x.reshape(x.shape[0], 256, 4, 4).contiguous(memory_format=torch.channels_last)
        return x


# oneDNN's fused "layer + LeakyReLU" operators (the ones torch.compile's CPU backend emits): one
# pass over each output instead of two, 0.3 ms less per fc6 image here. Used for float32 CPU
# inference only; training, CUDA and builds without them take the modules, which give the same
# numbers (tested).
_MKLDNN = getattr(torch.ops, "mkldnn", None)
_FUSED_OPS = (
    torch.backends.mkldnn.is_available()
    and _MKLDNN is not None
    and all(
        hasattr(_MKLDNN, op)
        for op in ("_linear_pointwise", "_convolution_pointwise", "_convolution_transpose_pointwise")
    )
)


def _fusable(x: torch.Tensor) -> bool:
    return _FUSED_OPS and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()


def _fused_leaky(layer: Layer, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    assert _MKLDNN is not None
    scalars = [LEAKY_SLOPE]
    if layer.kind == "linear":
        return _MKLDNN._linear_pointwise(x, module.weight, module.bias, "leaky_relu", scalars, "")
    padding, stride, dilation = [layer.padding] * 2, [layer.stride] * 2, [1, 1]
    if layer.kind == "conv":
        return _MKLDNN._convolution_pointwise(
            x, module.weight, module.bias, padding, stride, dilation, 1, "leaky_relu", scalars, ""
        )
    return _MKLDNN._convolution_transpose_pointwise(
        x, module.weight, module.bias, padding, [0, 0], stride, dilation, 1, "leaky_relu", scalars, ""
    )


def _phase_foldable(layer: Layer) -> bool:
    return (
        layer.kind == "deconv"
        and (layer.kernel, layer.stride, layer.padding) == (4, 2, 1)
        and layer.c_out == 3
        and not layer.activation
    )


# Kernel tap of a 4x4, stride-2, padding-1 transposed convolution used by output phase a (row
# 2p + a) for input row p - 1 + a + t: k = 3 - a - 2t.
_PHASE_TAPS = torch.tensor([[3, 1], [2, 0]])


def _phase_conv_rgb(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d(c, 3, 4, stride 2, padding 1) on ``x``, then :func:`raw_to_rgb`, as one 2x2
    convolution. Output pixel (2p + a, 2r + b) of channel c reads input rows p - 1 + a .. p + a
    and columns r - 1 + b .. r + b, which is position (p + a, r + b) of a 2x2 convolution over
    the input padded by one; that convolution has 12 outputs, (c, a, b)."""
    n, c_in, h, w = x.shape
    taps = _PHASE_TAPS.to(weight.device)
    # weight (c_in, 3, 4, 4) -> (c_in, 3, a, t, b, u) -> (3, a, b, c_in, t, u)
    phases = weight[:, :, taps][..., taps].permute(1, 2, 4, 0, 3, 5)
    rgb_mean = torch.tensor(BGR_MEAN[::-1], dtype=weight.dtype, device=weight.device)
    kernel = (phases.flip(0) / 255.0).reshape(12, c_in, 2, 2).contiguous(memory_format=torch.channels_last)
    shift = ((bias.flip(0) + rgb_mean) / 255.0).repeat_interleave(4)
    y = F.conv2d(x, kernel, shift, padding=1)  # (n, 12, h + 1, w + 1)
    y = y.permute(0, 2, 3, 1).reshape(n, h + 1, w + 1, 3, 2, 2)  # (n, q, s, c, a, b); a view if channels_last
    if torch.is_grad_enabled() and y.requires_grad:
        rows = [torch.stack([y[:, a : a + h, b : b + w, :, a, b] for b in range(2)], -1) for a in range(2)]
        out = torch.stack(rows, 2).permute(0, 4, 1, 2, 3, 5).reshape(n, 3, 2 * h, 2 * w)
        return out.clamp(0.0, 1.0)
    out = torch.empty((n, 3, h, 2, w, 2), dtype=y.dtype, device=y.device)
    for a in range(2):
        for b in range(2):
            out[:, :, :, a, :, b] = y[:, a : a + h, b : b + w, :, a, b].permute(0, 3, 1, 2)
    return out.view(n, 3, 2 * h, 2 * w).clamp_(0.0, 1.0)


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
