"""Objectives for population control (Bashivan, Kar & DiCarlo, Science 2019): stretch, one-hot, target pattern.

Each scores ``(n, channels)`` responses (numpy in the evolution loop, torch in white-box gradient ascent) with
operations valid for both. Per-channel normalisation uses the natural image set's statistics, given as
``mean`` and ``std`` lists (one value per channel; the control experiment fills them from its natural block).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from latentopt.builtins.objectives import SingleUnit
from latentopt.checks import ConfigError, finite_number, integer
from latentopt.objective import Array, Objective
from latentopt.plugins import hookimpl


def _numbers(values: Any, key: str, *, positive: bool = False) -> list[float] | None:
    """``values`` as a list of finite floats (None stays None); a ConfigError naming ``key`` otherwise."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{key} must be a list of numbers, one per channel, got {values!r}")
    out = [finite_number(v, key, minimum=0.0) if positive else finite_number(v, key) for v in values]
    if not out:
        raise ConfigError(f"{key}: give one number per channel")
    return out


def _check_channel(channel: int, n_channels: int, key: str) -> None:
    if channel >= n_channels:
        raise ConfigError(f"{key}={channel} but the subject has {n_channels} channel(s) (0 ... {n_channels - 1})")


class _Normalised(Objective):
    """Responses normalised per channel: ``(r − mean) / std`` over the selected channels."""

    def __init__(self, *, channels: Sequence[int] | None, mean: Sequence[float] | None,
                 std: Sequence[float] | None) -> None:
        if channels is not None and (isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__")):
            raise ConfigError(f"objective.channels must be a list of channel indices or null, got {channels!r}")
        self.channels = None if channels is None else [integer(c, "objective.channels", minimum=0) for c in channels]
        if self.channels is not None and len(set(self.channels)) != len(self.channels):
            raise ConfigError(f"objective.channels {self.channels} names a channel twice")
        self.mean = _numbers(mean, "objective.mean")
        self.std = _numbers(std, "objective.std", positive=True)
        if self.std is not None and min(self.std) <= 0:
            raise ConfigError("objective.std must be > 0 for every channel")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ConfigError(f"objective.mean has {len(self.mean)} values but objective.std {len(self.std)}")

    def _selected(self, responses: Array) -> Array:
        chosen = responses if self.channels is None else responses[:, self.channels]
        count = chosen.shape[1]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != count:
                raise ConfigError(f"objective.{name} has {len(values)} values for {count} channel(s)")
        if self.mean is not None:
            chosen = chosen - _like(self.mean, chosen)
        if self.std is not None:
            chosen = chosen / _like(self.std, chosen)
        return chosen

    def check_channels(self, n_channels: int) -> None:
        if self.channels is not None:
            _check_channel(max(self.channels), n_channels, "objective.channels")
        count = n_channels if self.channels is None else len(self.channels)
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != count:
                raise ConfigError(f"objective.{name} has {len(values)} values for {count} channel(s)")

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "channels": self.channels, "mean": self.mean, "std": self.std}


def _like(values: Sequence[float], reference: Array) -> Array:
    """``values`` as a row broadcastable against ``reference`` (numpy or torch, same dtype and device)."""
    if isinstance(reference, torch.Tensor):
        return torch.as_tensor(values, dtype=reference.dtype, device=reference.device)[None, :]
    return np.asarray(values, dtype=np.float64)[None, :]


class Stretch(SingleUnit):
    """Drive one target channel (its success is judged against its best response to the natural set).

    The score is :class:`~latentopt.builtins.objectives.SingleUnit`'s; the name says what the run is for.

    Args:
        channel: the target channel.
    """


class OneHot(_Normalised):
    """The softmax of the target against the population: ``exp(z_k / T) / Σ_j exp(z_j / T)``.

    ``z`` are the responses normalised per channel (``mean``, ``std``: the natural set's, one per selected
    channel; none given: raw responses). Bashivan et al. 2019's one-hot population objective.

    Args:
        channel: the target channel (an index among the subject's channels; it must be among ``channels``).
        channels: the population (default all).
        mean, std: per-channel normalisation (the natural set's statistics).
        temperature: ``T`` of the softmax.
    """

    def __init__(self, *, channel: int = 0, channels: Sequence[int] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, temperature: float = 1.0) -> None:
        super().__init__(channels=channels, mean=mean, std=std)
        self.channel = integer(channel, "objective.channel", minimum=0)
        if self.channels is not None and self.channel not in self.channels:
            raise ConfigError(f"objective.channel={self.channel} is not among objective.channels {self.channels}")
        self.temperature = finite_number(temperature, "objective.temperature", minimum=0.0)

    @classmethod
    def contract_instance(cls) -> OneHot:
        return cls(channel=1, channels=[0, 1, 2])

    def _target(self) -> int:
        return self.channel if self.channels is None else self.channels.index(self.channel)

    def _score(self, responses: Array) -> Array:
        _check_channel(self.channel, responses.shape[1], "objective.channel")
        z = self._selected(responses) / self.temperature
        if isinstance(z, torch.Tensor):
            return torch.softmax(z, dim=1)[:, self._target()]
        shifted = z - z.max(axis=1, keepdims=True)
        weights = np.exp(shifted)
        return weights[:, self._target()] / weights.sum(axis=1)

    def check_channels(self, n_channels: int) -> None:
        _check_channel(self.channel, n_channels, "objective.channel")
        super().check_channels(n_channels)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "channel": self.channel, "temperature": self.temperature}


class TargetPattern(_Normalised):
    """Drive the population toward a response pattern.

    ``measure: correlation``: the Pearson correlation across channels between the (normalised) responses and
    ``pattern`` (in [-1, 1]); ``measure: distance``: minus the root-mean-square difference ``−‖z − p‖ / √C``.

    Args:
        pattern: the target response per selected channel (in the normalised units when ``mean``/``std`` are given).
        channels, mean, std: as :class:`OneHot`.
        measure: ``correlation`` or ``distance``.
    """

    def __init__(self, *, pattern: Sequence[float] = (1.0, 0.0, 0.0), channels: Sequence[int] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 measure: str = "correlation") -> None:
        super().__init__(channels=channels, mean=mean, std=std)
        self.pattern = _numbers(pattern, "objective.pattern") or []
        if len(self.pattern) < 2:
            raise ConfigError("objective.pattern: give the target response of at least 2 channels")
        if measure not in ("correlation", "distance"):
            raise ConfigError(f"objective.measure must be correlation or distance, got {measure!r}")
        if measure == "correlation" and np.ptp(self.pattern) == 0:
            raise ConfigError("objective.pattern is constant: its correlation with anything is undefined")
        if self.channels is not None and len(self.channels) != len(self.pattern):
            raise ConfigError(f"objective.pattern has {len(self.pattern)} values for {len(self.channels)} channels")
        self.measure = measure

    @classmethod
    def contract_instance(cls) -> TargetPattern:
        return cls(pattern=[1.0, -1.0, 0.5])

    def _score(self, responses: Array) -> Array:
        z = self._selected(responses)
        if z.shape[1] != len(self.pattern):
            raise ConfigError(f"objective.pattern has {len(self.pattern)} values for {z.shape[1]} channel(s)")
        p = _like(self.pattern, z)
        if self.measure == "distance":
            return -(((z - p) ** 2).mean(1)) ** 0.5
        zc, pc = z - _row_mean(z), p - _row_mean(p)
        norm = ((zc**2).sum(1) * (pc**2).sum(1)) ** 0.5
        return (zc * pc).sum(1) / (norm + 1e-12)

    def check_channels(self, n_channels: int) -> None:
        super().check_channels(n_channels)
        count = n_channels if self.channels is None else len(self.channels)
        if count != len(self.pattern):
            raise ConfigError(f"objective.pattern has {len(self.pattern)} values for {count} channel(s)")

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "pattern": self.pattern, "measure": self.measure}


def _row_mean(array: Array) -> Array:
    """The mean over channels, kept as a column (numpy or torch)."""
    if isinstance(array, torch.Tensor):
        return array.mean(1, keepdim=True)
    return np.asarray(array).mean(axis=1, keepdims=True)


@hookimpl
def latentopt_register_objectives(register: Any) -> None:
    register("stretch", Stretch)
    register("one_hot", OneHot)
    register("target_pattern", TargetPattern)


