"""BigGAN-deep generators for latentopt (``generator=biggan_deep_256`` and friends).

Needs ``pytorch-pretrained-biggan`` (and scipy). Sub-spaces: ``generator.space=class|noise``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentopt.plugins import hookimpl
from latentopt_biggan.generator import BigGANGenerator, biggan

__all__ = ["BigGANGenerator", "biggan"]


@hookimpl
def latentopt_register_generators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("biggan", biggan)


@hookimpl
def latentopt_register_config_searchpath(register: Callable[[str], None]) -> None:
    register("pkg://latentopt_biggan.conf")
