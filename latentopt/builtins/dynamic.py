"""A simulated neuron with temporal dynamics: an early and a late response component, read from two
layers of EfficientNet-Lite0, each with its own latency and time course, as spike counts in time bins.

Made to validate time-resolved analyses in silico (Wang & Ponce 2026: 10-ms bins from 0 to 200 ms,
response window 50-200 ms, baseline 0-45 ms), where a deeper layer's features should drive a site later.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from latentopt.builtins.subjects import (
    AREA_LAYERS,
    INPUT_SIZE,
    _channel_list,
    _StopForward,
    load_efficientnet_lite0,
    preprocess_images,
    readout_position,
)
from latentopt.checks import ConfigError, boolean, finite_number, integer
from latentopt.plugins import hookimpl
from latentopt.references import DEFAULT_REFERENCES, load_references
from latentopt.responses import check_window
from latentopt.runtime import resolve_device
from latentopt.subject import Subject

LATE_LAYERS = {"_blocks.4": "_blocks.6", "_blocks.6": "_blocks.12", "_blocks.12": "_blocks.14"}
"""Default late layer per early layer: the next area preset up (V1 -> V4, V4 -> PIT); for PIT the last
block of the same stage (``_blocks.14``, 192 channels like ``_blocks.12``, so every PIT channel has a
late partner; ``_conv_head`` would be a 1280-channel 1 x 1 expansion of ``_blocks.15``, not a block)."""

MAX_TIME_BINS = 10_000


def alpha_kernel(t_ms: np.ndarray, latency_ms: float, tau_ms: float) -> np.ndarray:
    """The alpha kernel ``k(t) = s / tau * exp(1 - s / tau)`` with ``s = t - latency`` (0 for ``s < 0``).

    It starts at the latency, peaks at 1 at ``latency + tau`` and integrates to ``e * tau`` ms.

    Args:
        t_ms: times in ms from image onset, any shape.
        latency_ms: onset of the kernel in ms.
        tau_ms: time to peak in ms (> 0).

    Returns:
        ``k(t)``, the shape of ``t_ms``, float64 in [0, 1].
    """
    s = np.maximum(np.asarray(t_ms, dtype=np.float64) - latency_ms, 0.0) / tau_ms
    return s * np.exp(1.0 - s)


def alpha_kernel_bins(edges_ms: np.ndarray, latency_ms: float, tau_ms: float) -> np.ndarray:
    """The integral of :func:`alpha_kernel` over each time bin, in ms (exact).

    ``K(t) = e * tau * (1 - (1 + s / tau) * exp(-s / tau))`` integrates the kernel from its onset to
    ``t``; bin ``i`` gets ``K(edges[i + 1]) - K(edges[i])``.

    Args:
        edges_ms: ``(time_bins + 1,)`` increasing bin edges in ms.
        latency_ms: onset of the kernel in ms.
        tau_ms: time to peak in ms (> 0).

    Returns:
        ``(time_bins,)`` float64, ms.
    """
    x = np.maximum(np.asarray(edges_ms, dtype=np.float64) - latency_ms, 0.0) / tau_ms
    cumulative = math.e * tau_ms * (1.0 - (1.0 + x) * np.exp(-x))
    return np.diff(cumulative)


def bin_edges(bin_ms: Any, span_ms: Any) -> np.ndarray:
    """``(time_bins + 1,)`` bin edges in ms: ``span[0], span[0] + bin_ms, ..., span[1]``.

    Raises:
        ConfigError: naming ``subject.bin_ms`` or ``subject.span_ms`` when the span is not a whole
            number (at most 10,000) of bins.
    """
    width = finite_number(bin_ms, "subject.bin_ms", minimum=0.0)
    start, end = check_window(span_ms, "subject.span_ms")
    count = round((end - start) / width)
    if count < 1 or abs(count * width - (end - start)) > 1e-9 * max(1.0, abs(end - start)):
        raise ConfigError(f"subject.span_ms: [{start:g}, {end:g}] is not a whole number of "
                          f"subject.bin_ms={width:g} ms bins")
    if count > MAX_TIME_BINS:
        raise ConfigError(f"subject.bin_ms: {count} bins of {width:g} ms over [{start:g}, {end:g}] ms; "
                          f"at most {MAX_TIME_BINS}")
    return start + width * np.arange(count + 1, dtype=np.float64)


def _per_component(early: Any, late: Any, key: str, *, inclusive: bool) -> dict[str, float]:
    """``{"early": early, "late": late}`` as finite floats >= 0 (> 0 unless ``inclusive``).

    Raises:
        ConfigError: naming ``subject.<key with early/late filled in>``.
    """
    return {which: finite_number(value, f"subject.{key.format(which)}", minimum=0.0, inclusive=inclusive)
            for which, value in (("early", early), ("late", late))}


class DynamicCNNSubject(Subject):
    """An in-silico neuron with an early and a late response component: spike counts in time bins.

    Each channel ``c`` sums two components: an early one driven by channel ``c`` of ``layer`` and a
    late one driven by channel ``c`` of the deeper ``late_layer``, both read at the same place of the
    image (see ``position``). Its rate, in Hz, at time ``t`` ms after image onset::

        rate(t) = baseline_hz + gain_early_hz * relu(a_early / scale_early) * k(t; latency_early_ms, tau_early_ms)
                              + gain_late_hz  * relu(a_late  / scale_late)  * k(t; latency_late_ms,  tau_late_ms)

    ``k`` is the alpha kernel :func:`alpha_kernel` (0 before the latency, peak 1 at latency + tau).
    The expected count of a bin is the rate's exact integral over it (:func:`alpha_kernel_bins`)
    divided by 1000; responses are Poisson counts of that expectation drawn from the ``rng`` given
    to :meth:`respond` (``poisson=False``: the expected counts themselves).

    Normalisation: ``scale_early`` (``scale_late``) divides every channel of the layer. By default it
    is measured once at construction: the mean of ``relu(a)`` over the 4 default reference photographs
    (``astronaut``, ``chelsea``, ``coffee``, ``rocket``, 224 x 224) and over all channels of the layer
    at the read-out position. A natural image then gives peak rates of tens of Hz: over the 17 other
    photographs bundled with scikit-image and every channel, the median peak (10-ms bin) rate is 53,
    41 and 16 Hz for V1, V4 and PIT, the 90th percentile 158, 130 and 93 Hz (defaults otherwise).
    Evolved images can drive a unit far more (there is no saturation). Both scales are recorded in
    :meth:`provenance`.

    Args:
        layer: early layer: an area preset ``V1``, ``V4``, ``PIT`` (``IT``) or a module name.
        late_layer: late layer, a preset or module name later in the forward pass; None: the next
            preset up (V1 -> V4 ``_blocks.6``, V4 -> PIT ``_blocks.12``, PIT -> ``_blocks.14``, see
            :data:`LATE_LAYERS`); required for another early layer.
        channels: one channel index or a list of them, valid in both layers.
        position: ``"centre"`` or ``[row, col]`` of the early layer's map (0-based, as ``cnn_unit``);
            the late layer reads the same place of its own map: ``floor((row + 0.5) * H_late / H_early)``
            (the centre for ``"centre"``).
        latency_early_ms: onset of the early component, ms >= 0 (default 50).
        tau_early_ms: early time to peak, ms > 0 (default 15).
        latency_late_ms: onset of the late component, ms >= 0 (default 100).
        tau_late_ms: late time to peak, ms > 0 (default 30).
        gain_early_hz: peak rate of the early component per unit of normalised activation (default 40).
        gain_late_hz: same for the late component (default 40).
        baseline_hz: spontaneous rate (default 5).
        scale_early: activation scale of the early layer (> 0); None: measured (see above).
        scale_late: same for the late layer.
        bin_ms: bin width in ms (default 10).
        span_ms: ``[start, end]`` ms of the bins (default ``[0, 200]``); a whole number of bins.
        poisson: True: Poisson counts; False: expected counts (deterministic, for tests).
        weights: state-dict file (default: the packaged ImageNet weights).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass; None = 10 on the CPU, 40 on CUDA.

    Attributes:
        time_bins_ms: ``(time_bins + 1,)`` bin edges in ms.
        area: the early layer's area preset (``"V4"``) or None for a module name, as ``cnn_unit``.
        layer, late_layer: the module names read.
    """

    differentiable = False  # the white-box path scores respond_torch without time bins; not offered

    def __init__(
        self,
        *,
        layer: str = "V4",
        late_layer: str | None = None,
        channels: int | Sequence[int] = 0,
        position: str | Sequence[int] = "centre",
        latency_early_ms: float = 50.0,
        tau_early_ms: float = 15.0,
        latency_late_ms: float = 100.0,
        tau_late_ms: float = 30.0,
        gain_early_hz: float = 40.0,
        gain_late_hz: float = 40.0,
        baseline_hz: float = 5.0,
        scale_early: float | None = None,
        scale_late: float | None = None,
        bin_ms: float = 10.0,
        span_ms: Sequence[float] = (0.0, 200.0),
        poisson: bool = True,
        weights: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
    ) -> None:
        self.latency_ms = _per_component(latency_early_ms, latency_late_ms, "latency_{}_ms", inclusive=True)
        self.tau_ms = _per_component(tau_early_ms, tau_late_ms, "tau_{}_ms", inclusive=False)
        self.gain_hz = _per_component(gain_early_hz, gain_late_hz, "gain_{}_hz", inclusive=True)
        self.baseline_hz = finite_number(baseline_hz, "subject.baseline_hz", minimum=0.0, inclusive=True)
        given = {"early": scale_early, "late": scale_late}
        for which, value in given.items():
            if value is not None:
                finite_number(value, f"subject.scale_{which}", minimum=0.0)
        self._edges = bin_edges(bin_ms, span_ms)
        self.time_bins_ms = self._edges
        self.poisson = boolean(poisson, "subject.poisson")
        self.channels = _channel_list(channels)
        if not self.channels:
            raise ConfigError("subject.channels: give at least one channel")
        self.device = resolve_device(device)
        if batch_size is not None:
            integer(batch_size, "subject.batch_size", minimum=1)
        self.batch_size = int(batch_size) if batch_size is not None else (10 if self.device.type == "cpu" else 40)
        self.area = layer if layer in AREA_LAYERS else None
        self.model = load_efficientnet_lite0(weights).to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        for p in self.model.parameters():
            p.requires_grad_(False)
        modules = dict(self.model.named_modules())
        self.layer, self.late_layer = self._layer_names(layer, late_layer, modules)
        self._handles: list[Any] = []
        self._attach_hooks(modules)
        self._index = self._read_out_places(position)
        measured = self._measured_scales([w for w, v in given.items() if v is None])
        self.scale = {w: float(v) if v is not None else measured[w] for w, v in given.items()}
        self._kernel_bins = {w: alpha_kernel_bins(self._edges, self.latency_ms[w], self.tau_ms[w])
                             for w in ("early", "late")}
        self.channel_names = [f"{self.layer}+{self.late_layer}:{c}" for c in self.channels]

    @classmethod
    def contract_instance(cls) -> DynamicCNNSubject:
        return cls(layer="V1", channels=[0, 5], device="cpu")

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _layer_names(layer: Any, late_layer: Any, modules: dict[str, torch.nn.Module]) -> tuple[str, str]:
        """The module names of the early and late layers (presets resolved, defaults filled in)."""
        names: list[str] = []
        for key, given in (("subject.layer", layer), ("subject.late_layer", late_layer)):
            name = AREA_LAYERS.get(given, given) if isinstance(given, str) else given
            if key == "subject.late_layer" and given is None:
                if names[0] not in LATE_LAYERS:
                    raise ConfigError(f"subject.late_layer: give the late layer for subject.layer={layer!r} "
                                      f"(defaults exist for {', '.join(AREA_LAYERS)})")
                name = LATE_LAYERS[names[0]]
            if not isinstance(name, str) or name not in modules or name == "":
                raise ConfigError(f"{key}: {given!r} is neither an area ({', '.join(AREA_LAYERS)}) nor a module "
                                  f"of EfficientNet-Lite0 (e.g. _blocks.0 ... _blocks.15, _conv_head, _fc)")
            names.append(name)
        return names[0], names[1]

    def _attach_hooks(self, modules: dict[str, torch.nn.Module]) -> None:
        """Hooks on both layers; a probe checks that both run, early first, and records their shapes."""
        if self.layer == self.late_layer:
            raise ConfigError(f"subject.late_layer: {self.late_layer} is the early layer too; give a deeper one")
        self._mode = "probe"
        self._captured: dict[str, torch.Tensor] = {}
        self._handles = [modules[self.layer].register_forward_hook(self._hook("early")),
                         modules[self.late_layer].register_forward_hook(self._hook("late"))]
        with torch.inference_mode():
            self._forward(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=self.device), check=False)
        self._mode = "channels"
        if "late" not in self._captured:
            raise ConfigError(f"subject.late_layer: {self.late_layer} is never run by the forward pass")
        if "early" not in self._captured:
            raise ConfigError(f"subject.late_layer: {self.late_layer} runs before subject.layer {self.layer} "
                              "(or the early layer never runs); give a deeper late layer")
        self._shapes = {w: tuple(t.shape[1:]) for w, t in self._captured.items()}
        for which, name in (("early", self.layer), ("late", self.late_layer)):
            bad = [c for c in self.channels if not 0 <= c < self._shapes[which][0]]
            if bad:
                raise ConfigError(f"subject.channels: {bad} out of range for {name} "
                                  f"({self._shapes[which][0]} channels)")

    def _read_out_places(self, position: Any) -> dict[str, tuple[int, int] | None]:
        """Where each layer is read: the early layer at ``position``, the late one at the same place."""
        early = readout_position(position, self._shapes["early"], self.layer)
        late_shape = self._shapes["late"]
        if len(late_shape) == 1:
            return {"early": early, "late": None}
        if early is None:
            return {"early": None, "late": (late_shape[1] // 2, late_shape[2] // 2)}
        rows, cols = self._shapes["early"][1], self._shapes["early"][2]
        late = (int((early[0] + 0.5) * late_shape[1] / rows), int((early[1] + 0.5) * late_shape[2] / cols))
        return {"early": early, "late": late}

    def _measured_scales(self, needed: list[str]) -> dict[str, float]:
        """Per layer in ``needed``: the mean ``relu(a)`` over the default reference photographs and over
        every channel of the layer at its read-out place (one forward pass of the 4 photographs)."""
        if not needed:
            return {}
        _, photographs = load_references(DEFAULT_REFERENCES, (INPUT_SIZE, INPUT_SIZE))
        self._mode = "all_channels"
        try:
            with torch.inference_mode():
                captured = self._forward(preprocess_images(photographs, self.device))
        finally:
            self._mode = "channels"
        scales = {}
        for which in needed:
            scales[which] = float(torch.relu(captured[which].double()).mean())
            if not scales[which] > 0.0:
                name = self.layer if which == "early" else self.late_layer
                raise ConfigError(f"subject.scale_{which}: the reference photographs give {name} no positive "
                                  f"activation at {list(self._index[which] or [])}; set subject.scale_{which}")
        return scales

    # ------------------------------------------------------------------ forward pass
    def _hook(self, which: str) -> Callable[[torch.nn.Module, Any, torch.Tensor], None]:
        def read_out(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if self._mode == "probe":
                self._captured[which] = output.detach()
            else:
                picked = output if self._mode == "all_channels" else output[:, self.channels]
                index = self._index[which]
                self._captured[which] = picked if index is None else picked[:, :, index[0], index[1]]
            if which == "late":
                raise _StopForward  # nothing after the late layer is needed

        return read_out

    def _forward(self, images: torch.Tensor, *, check: bool = True) -> dict[str, torch.Tensor]:
        self._captured = {}
        try:
            self.model(images)
        except _StopForward:
            pass
        if check and set(self._captured) != {"early", "late"}:
            raise RuntimeError(f"the forward pass did not reach both {self.layer} and {self.late_layer}")
        return self._captured

    def unit_activations(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw activations of the early and late units (before normalisation), one forward pass per batch.

        Args:
            images: ``(n, 3, H, W)`` float32 RGB in [0, 1] (resized to 224 x 224).

        Returns:
            ``(a_early, a_late)``, each ``(n, channels)`` float64.
        """
        early, late = [], []
        with torch.inference_mode():
            for part in torch.split(images, self.batch_size):
                captured = self._forward(preprocess_images(part, self.device))
                early.append(captured["early"].double().cpu())
                late.append(captured["late"].double().cpu())
        return torch.cat(early).numpy(), torch.cat(late).numpy()

    def counts_from_activations(self, a_early: np.ndarray, a_late: np.ndarray) -> np.ndarray:
        """Expected spike counts per bin from raw unit activations (the model formula).

        Args:
            a_early: ``(n, channels)`` raw early activations.
            a_late: ``(n, channels)`` raw late activations.

        Returns:
            ``(n, channels, time_bins)`` float64 expected counts.
        """
        widths = np.diff(self._edges)
        counts = np.broadcast_to(self.baseline_hz * widths, (*np.shape(a_early), widths.size)).copy()
        for which, activation in (("early", a_early), ("late", a_late)):
            drive_hz = self.gain_hz[which] * np.maximum(np.asarray(activation, np.float64) / self.scale[which], 0.0)
            counts += drive_hz[..., None] * self._kernel_bins[which]
        return counts / 1000.0

    def expected_counts(self, images: torch.Tensor) -> np.ndarray:
        """Noise-free responses: ``(n, channels, time_bins)`` float64 expected spike counts per bin."""
        return self.counts_from_activations(*self.unit_activations(images))

    def respond(self, images: torch.Tensor, *, image_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        expected = self.expected_counts(images)
        if not self.poisson:
            return expected
        return rng.poisson(expected).astype(np.float64)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "network": "efficientnet-lite0 (ImageNet)", "area": self.area,
                "layer": self.layer, "late_layer": self.late_layer, "channels": self.channels,
                "position": list(self._index["early"] or []), "late_position": list(self._index["late"] or []),
                "latency_ms": dict(self.latency_ms), "tau_ms": dict(self.tau_ms), "gain_hz": dict(self.gain_hz),
                "baseline_hz": self.baseline_hz, "scale": dict(self.scale),
                "time_bins_ms": [float(e) for e in self._edges], "poisson": self.poisson}

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@hookimpl
def latentopt_register_subjects(register: Any) -> None:
    register("insilico_dynamic", DynamicCNNSubject)
