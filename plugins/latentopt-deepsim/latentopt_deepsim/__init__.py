"""DeePSim generators (Dosovitskiy & Brox 2016) for latentopt: ``generator=deepsim_fc6`` and friends.

Weights: ``latentopt-deepsim-weights fetch fc6`` (or on first use), ``latentopt-deepsim-weights import fc6 FILE``,
or ``generator.weights=FILE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentopt.plugins import hookimpl
from latentopt_deepsim.generator import DeePSimGenerator

__all__ = ["DeePSimGenerator"]


@hookimpl
def latentopt_register_generators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("deepsim", DeePSimGenerator)


@hookimpl
def latentopt_register_config_searchpath(register: Callable[[str], None]) -> None:
    register("pkg://latentopt_deepsim.conf")
