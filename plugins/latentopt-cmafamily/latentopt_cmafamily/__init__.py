"""latentopt-cmafamily: the CMA-ES family of Wang & Ponce, a nevergrad bridge and gradient ascent.

A first-party plugin shaped exactly like a third-party one: it registers its optimizers and its
Hydra config folder through latentopt's pluggy hooks (entry point group ``latentopt``).

Optimizers: ``cholesky_cma`` (latentopt's default optimizer and the suite's reference CMA), ``sphere_cma``,
``sep_cma`` (our diagonal CMA-ES), ``hessian_cma``,
``nevergrad``, and ``gradient_ascent`` (the white-box reference for simulated neurons; also callable
directly as :func:`gradient_ascent`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentopt.plugins import hookimpl
from latentopt_cmafamily.cholesky import CholeskyCMA
from latentopt_cmafamily.gradient import GradientAscentOptimizer, GradientAscentResult, gradient_ascent
from latentopt_cmafamily.hessian import HessianCMA, load_metric
from latentopt_cmafamily.ng_bridge import NevergradOptimizer
from latentopt_cmafamily.sep import SepCMA
from latentopt_cmafamily.sphere import SphereCMA

OPTIMIZERS: dict[str, type] = {
    "sep_cma": SepCMA,
    "cholesky_cma": CholeskyCMA,
    "sphere_cma": SphereCMA,
    "hessian_cma": HessianCMA,
    "nevergrad": NevergradOptimizer,
    "gradient_ascent": GradientAscentOptimizer,
}
DEFAULT_CMA = "sep_cma"
"""The default run's optimizer and the suite's reference CMA (issue 14: the side-by-side winner)."""

__all__ = [
    "DEFAULT_CMA",
    "OPTIMIZERS",
    "CholeskyCMA",
    "GradientAscentOptimizer",
    "GradientAscentResult",
    "HessianCMA",
    "NevergradOptimizer",
    "SepCMA",
    "SphereCMA",
    "gradient_ascent",
    "load_metric",
]


@hookimpl
def latentopt_register_optimizers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    for name, factory in OPTIMIZERS.items():
        register(name, factory)


@hookimpl
def latentopt_register_config_searchpath(register: Callable[[str], None]) -> None:
    register("pkg://latentopt_cmafamily.conf")
