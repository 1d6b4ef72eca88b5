"""An example latentopt plugin: a generator of coloured Gaussian blobs (``generator=example_blobs``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentopt.plugins import hookimpl
from latentopt_example_generator.generator import BlobsGenerator

__all__ = ["BlobsGenerator"]


@hookimpl
def latentopt_register_generators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("example_blobs", BlobsGenerator)


@hookimpl
def latentopt_register_config_searchpath(register: Callable[[str], None]) -> None:
    register("pkg://latentopt_example_generator.conf")
