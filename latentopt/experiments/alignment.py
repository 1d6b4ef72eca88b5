"""Paired-generator alignment sessions (Wang & Ponce, Nature Neuroscience 2026).

Two (or more) CMA-ES threads, each in its own generator's space with its own optimizer, evolve images
for the same subject channels in the same blocks (with natural references). Which generator can steer
the neuron (success: the best 2 blocks beat the first 2), how far (normalised activation), how fast
(time constant) and when within the response (per time bin) is the analysis of
:mod:`latentopt.experiments.alignment_report`, over one session or many.

Config: ``experiment.generators`` maps thread names to generator configs (the command line accepts the
generator group's option names, ``experiment.generators=[deepsim_fc6,biggan_deep_256]``, and resolves them);
``experiment.optimizer_presets`` maps thread names to optimizer settings merged over the top-level optimizer
(Wang & Ponce: σ0 3.0 in DeePSim fc6, 0.2 in BigGAN). Everything else is the evolution's
(``generations``, ``budget``, ``references``, ``reference_every``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentopt.checks import ConfigError
from latentopt.experiments.evolve import Evolution, evolution_from_config

DEFAULT_PRESETS = {"deepsim_fc6": {"sigma0": 3.0}, "biggan_deep_256": {"sigma0": 0.2},
                   "biggan_deep_128": {"sigma0": 0.2}, "biggan_deep_512": {"sigma0": 0.2}}
"""Wang & Ponce 2026's step sizes per generator space (merged over ``optimizer``)."""


class Alignment(Evolution):
    """An :class:`Evolution` whose threads are one per generator; its report adds the session's alignment."""

    name = "alignment"

    def report(self, run_dir: Path) -> dict[str, Any]:
        from latentopt.experiments.alignment_report import write_session_report

        summary = super().report(run_dir)
        summary.update(write_session_report(run_dir))
        return summary


def alignment_threads(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``experiment.threads`` of an alignment config: one thread per generator, with its optimizer preset.

    Raises:
        ConfigError: ``experiment.generators`` is not a mapping of at least two thread names to generator configs.
    """
    exp = config["experiment"]
    generators = exp.get("generators")
    if isinstance(generators, (list, tuple)) and all(isinstance(g, str) for g in generators):
        raise ConfigError("experiment.generators: generator option names are resolved by the latentopt command; "
                          "a library caller gives a mapping of thread names to generator configs")
    if not isinstance(generators, Mapping) or len(generators) < 2:
        raise ConfigError(f"experiment.generators must name at least two generators, got {generators!r}")
    presets = {**DEFAULT_PRESETS, **(exp.get("optimizer_presets") or {})}
    if exp.get("threads"):
        raise ConfigError("experiment.threads: an alignment builds its threads from experiment.generators; "
                          "leave experiment.threads empty")
    threads = {}
    for name, node in generators.items():
        if not isinstance(node, Mapping) or "name" not in node:
            raise ConfigError(f"experiment.generators.{name}: a generator config with a 'name' key")
        preset = presets.get(str(name)) or {}
        if not isinstance(preset, Mapping):
            raise ConfigError(f"experiment.optimizer_presets.{name} must map optimizer keys to values")
        threads[str(name)] = {"generator": dict(node), "optimizer": dict(preset)}
    return threads


def alignment_from_config(config: dict[str, Any], assembly: Any) -> Alignment:
    """The ``alignment`` experiment of a plain config (see the module docstring)."""
    assembly.config["experiment"] = {**config["experiment"], "threads": alignment_threads(config)}
    alignment = evolution_from_config(assembly.config, assembly, kind=Alignment)
    assert isinstance(alignment, Alignment)
    return alignment
