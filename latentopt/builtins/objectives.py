"""Objectives for single neurons and small populations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from latentopt.checks import ConfigError, integer
from latentopt.objective import Array, Objective
from latentopt.plugins import hookimpl


class SingleUnit(Objective):
    """The response of one channel.

    Args:
        channel: index of the channel among the subject's channels.
    """

    def __init__(self, *, channel: int = 0) -> None:
        self.channel = integer(channel, "objective.channel", minimum=0)

    @classmethod
    def contract_instance(cls) -> SingleUnit:
        return cls(channel=1)

    def _score(self, responses: Array) -> Array:
        if self.channel >= responses.shape[1]:
            raise ConfigError(f"objective.channel={self.channel} but the subject has {responses.shape[1]} channel(s)")
        return responses[:, self.channel]

    def check_channels(self, n_channels: int) -> None:
        if self.channel >= n_channels:
            raise ConfigError(f"objective.channel={self.channel} but the subject has {n_channels} channel(s) "
                              f"(0 ... {n_channels - 1})")

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "channel": self.channel}


class MeanUnits(Objective):
    """The mean response of several channels (all when ``channels`` is None).

    Args:
        channels: channel indices, or None for every channel.
    """

    def __init__(self, *, channels: Sequence[int] | None = None) -> None:
        if channels is not None and (isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__")):
            raise ConfigError(f"objective.channels must be a list of channel indices or null, got {channels!r}")
        self.channels = None if channels is None else [integer(c, "objective.channels", minimum=0) for c in channels]
        if self.channels is not None and not self.channels:
            raise ConfigError("objective.channels: give at least one channel, or null for all")

    @classmethod
    def contract_instance(cls) -> MeanUnits:
        return cls(channels=[0, 2])

    def _score(self, responses: Array) -> Array:
        if self.channels is None:
            return responses.mean(1)
        if max(self.channels) >= responses.shape[1]:
            raise ConfigError(f"objective.channels={self.channels} but the subject has {responses.shape[1]} channel(s)")
        return responses[:, self.channels].mean(1)

    def check_channels(self, n_channels: int) -> None:
        if self.channels is not None and max(self.channels) >= n_channels:
            raise ConfigError(f"objective.channels={self.channels} but the subject has {n_channels} channel(s) "
                              f"(0 ... {n_channels - 1})")

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "channels": self.channels}


@hookimpl
def latentopt_register_objectives(register: Any) -> None:
    register("single_unit", SingleUnit)
    register("mean_units", MeanUnits)
