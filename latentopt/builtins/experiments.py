"""Built-in experiments: ``evolve`` (closed-loop evolution), ``manifold`` (tuning maps on spheres),
``axis_tuning`` (tuning curves along the generator's Hessian eigenvectors), ``alignment`` (paired-generator
sessions), ``natural`` (a natural-set session) and ``control`` (population control through a digital twin),
and the sections each adds to the run report page (:mod:`latentopt.html_report`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentopt.plugins import hookimpl


@hookimpl
def latentopt_register_experiments(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from latentopt.experiments.alignment import alignment_from_config
    from latentopt.experiments.axis_tuning import axis_tuning_from_config
    from latentopt.experiments.control import control_from_config, natural_from_config
    from latentopt.experiments.evolve import evolution_from_config
    from latentopt.experiments.manifold import manifold_from_config

    register("evolve", evolution_from_config)
    register("manifold", manifold_from_config)
    register("axis_tuning", axis_tuning_from_config)
    register("alignment", alignment_from_config)
    register("natural", natural_from_config)
    register("control", control_from_config)


@hookimpl
def latentopt_register_report_sections(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from latentopt.html_report import sections
    from latentopt.html_report.threads import evolution_sections

    register("evolve", evolution_sections)
    register("alignment", evolution_sections)
    register("alignment", sections.alignment_sections)
    register("manifold", sections.manifold_sections)
    register("axis_tuning", sections.axis_tuning_sections)
    register("natural", sections.natural_sections)
    register("control", sections.control_sections)
