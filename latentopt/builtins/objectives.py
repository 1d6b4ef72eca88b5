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
        unit: index of the channel among the subject's channels.
    """

    def __init__(self, *, unit: int = 0) -> None:
        self.unit = integer(unit, "objective.unit", minimum=0)

    @classmethod
    def contract_instance(cls) -> SingleUnit:
        return cls(unit=1)

    def _score(self, responses: Array) -> Array:
        if self.unit >= responses.shape[1]:
            raise ConfigError(f"objective.unit={self.unit} but the subject has {responses.shape[1]} channel(s)")
        return responses[:, self.unit]

    def check_channels(self, n_channels: int) -> None:
        if self.unit >= n_channels:
            raise ConfigError(f"objective.unit={self.unit} but the subject has {n_channels} channel(s) "
                              f"(0 ... {n_channels - 1})")

    def describe(self) -> dict[str, Any]:
        return {"objective": "single_unit", "unit": self.unit}


class MeanUnits(Objective):
    """The mean response of several channels (all when ``units`` is None).

    Args:
        units: channel indices, or None for every channel.
    """

    def __init__(self, *, units: Sequence[int] | None = None) -> None:
        if units is not None and (isinstance(units, (str, bytes)) or not hasattr(units, "__iter__")):
            raise ConfigError(f"objective.units must be a list of channel indices or null, got {units!r}")
        self.units = None if units is None else [integer(u, "objective.units", minimum=0) for u in units]
        if self.units is not None and not self.units:
            raise ConfigError("objective.units: give at least one unit, or null for all")

    @classmethod
    def contract_instance(cls) -> MeanUnits:
        return cls(units=[0, 2])

    def _score(self, responses: Array) -> Array:
        if self.units is None:
            return responses.mean(1)
        if max(self.units) >= responses.shape[1]:
            raise ConfigError(f"objective.units={self.units} but the subject has {responses.shape[1]} channel(s)")
        return responses[:, self.units].mean(1)

    def check_channels(self, n_channels: int) -> None:
        if self.units is not None and max(self.units) >= n_channels:
            raise ConfigError(f"objective.units={self.units} but the subject has {n_channels} channel(s) "
                              f"(0 ... {n_channels - 1})")

    def describe(self) -> dict[str, Any]:
        return {"objective": "mean_units", "units": self.units}


@hookimpl
def latentopt_register_objectives(register: Any) -> None:
    register("single_unit", SingleUnit)
    register("mean_units", MeanUnits)
