"""latentopt-rig: real neurons through a recording rig's stimulus computer, and a rig simulator.

A first-party plugin shaped like a third-party one: it registers the subject ``rig`` and adds
its configs (``subject=rig_xdream``, ``subject=rig_native``) to Hydra's search path. The
simulator is the console script ``latentopt-rigsim``. See ``docs/rig.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentopt.plugins import hookimpl


@hookimpl
def latentopt_register_subjects(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from latentopt_rig.subject import RigSubject

    register("rig", RigSubject)


@hookimpl
def latentopt_register_config_searchpath(register: Callable[[str], None]) -> None:
    register("pkg://latentopt_rig.conf")
