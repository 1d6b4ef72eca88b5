"""Build components, threads and experiments from plain dicts, with one seeding rule.

The CLI, the benchmark suite and the rig drill all build through here. A config is a plain nested
dict (the CLI resolves Hydra's ``DictConfig`` into one): ``seed``, ``device``, ``subject``,
``generator``, ``objective``, ``optimizer`` and ``experiment`` (``experiment.name`` picks the
registered experiment). Each component node is ``{"name": <registered name>, **keyword arguments}``.

Seeding: thread ``k`` (in the order of :func:`thread_specs`) draws its initial codes from
``np.random.default_rng(thread_code_seed(seed, k))`` and seeds its optimizer with
``thread_optimizer_seed(seed, k)``; the first thread uses ``[seed, 1]`` and ``seed`` itself, as a
single-thread run always has. The subject's noise in block ``b`` is ``noise_rng(seed, b)``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, boolean, integer, non_finite_key
from latentopt.experiment import Experiment, Thread
from latentopt.plugins import Registry, default_registry

MAX_SEED = 2**32 - 1
MAX_POPULATION = 10**5
THREAD_GROUPS = ("generator", "optimizer", "objective")
_THREAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def thread_code_seed(seed: int, k: int) -> list[int]:
    """Seed of thread ``k``'s initial codes."""
    return [int(seed), 1] if k == 0 else [int(seed), 1, int(k)]


def thread_optimizer_seed(seed: int, k: int) -> int:
    """Seed of thread ``k``'s optimizer."""
    return int(seed) if k == 0 else int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def merge(base: Mapping[str, Any] | None, own: Mapping[str, Any]) -> dict[str, Any]:
    """``own`` merged over ``base`` (nested dicts merged, other values replaced); neither is changed."""
    out = copy.deepcopy(dict(base or {}))
    for key, value in own.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_run_keys(config: Mapping[str, Any]) -> None:
    """Check the keys every experiment shares (seed, progress, device, NaN/inf anywhere) before anything runs.

    Raises:
        ConfigError: one line naming the key.
    """
    integer(config.get("seed", 0), "seed", minimum=0, maximum=MAX_SEED)
    boolean(config.get("progress", True), "progress")
    device = config.get("device", "auto")
    if not isinstance(device, str):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    from latentopt.runtime import resolve_device

    resolve_device(device)  # here, before a resume takes the run folder's lock
    if not isinstance(config.get("experiment"), Mapping):
        raise ConfigError("experiment: the config needs an experiment group")
    name = config["experiment"].get("name", "evolve")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"experiment.name must name a registered experiment, got {name!r}")
    for group in ("subject", *THREAD_GROUPS, "experiment"):
        node = config.get(group)
        if isinstance(node, Mapping):
            bad = non_finite_key(dict(node), group)
            if bad:
                raise ConfigError(f"{bad} must be a finite number, not NaN or infinity")


def thread_specs(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The threads a config declares: ``[(name, {generator, optimizer, objective} nodes)]``.

    ``experiment.threads`` maps thread names to nodes with any of ``generator``, ``optimizer``,
    ``objective``. A node with a ``name`` key is used as given; one without is merged over the
    top-level group (so ``{optimizer: {sigma0: 0.2}}`` changes one setting); a missing one is the
    top-level group. Without ``experiment.threads``: one thread ``main`` from the top-level groups.
    """
    threads = (config.get("experiment") or {}).get("threads")
    if not threads:
        return [("main", {group: config.get(group) for group in THREAD_GROUPS})]
    if not isinstance(threads, Mapping):
        raise ConfigError("experiment.threads must map thread names to {generator, optimizer, objective}")
    specs = []
    for key, node in threads.items():
        name = str(key)
        if not _THREAD_NAME.match(name):
            raise ConfigError(f"experiment.threads: thread name {name!r} must be 1-32 letters, digits, '_' or '-'")
        node = node or {}
        if not isinstance(node, Mapping):
            raise ConfigError(f"experiment.threads.{name} must map {', '.join(THREAD_GROUPS)} to configs")
        unknown = set(node) - set(THREAD_GROUPS)
        if unknown:
            raise ConfigError(f"experiment.threads.{name}: unknown key(s) {sorted(map(str, unknown))}; "
                              f"use {', '.join(THREAD_GROUPS)}")
        spec = {}
        for group in THREAD_GROUPS:
            own, base = node.get(group), config.get(group)
            if own is None:
                spec[group] = copy.deepcopy(base)
            elif "name" in own or base is None:
                spec[group] = copy.deepcopy(dict(own))
            else:
                spec[group] = merge(base, own)
        specs.append((name, spec))
    return specs


class Assembly:
    """Builds the components of one run from a plain config; closes what it built if building fails.

    Args:
        config: the plain nested config (see the module docstring).
        registry: the plugin registry (default: everything installed).
    """

    def __init__(self, config: Mapping[str, Any], *, registry: Registry | None = None) -> None:
        self.config = copy.deepcopy(dict(config))
        self.registry = registry if registry is not None else default_registry()
        self.seed = int(self.config.get("seed", 0))
        self.built: list[Any] = []
        self.provenance: dict[str, dict[str, Any]] = {}
        """Per built component (``subject``, ``<thread>.generator``, ...): its registry name and distribution."""
        self._generators: dict[str, tuple[Any, str]] = {}

    def component(self, group: str, node: Any, key: str, *args: Any, **extra: Any) -> Any:
        """Build a ``group`` component (``"generator"``, ...) from its config node; ``key`` names it in errors."""
        if not isinstance(node, Mapping) or "name" not in node:
            raise ConfigError(f"{key}: the config needs a 'name' key naming a registered {group}")
        kwargs = {str(k): v for k, v in node.items() if k != "name"}
        name = str(node["name"])
        registered = self.registry.get(f"{group}s", name)
        component = self.registry.build(f"{group}s", name, *args, **extra, **kwargs)
        self.built.append(component)
        self.provenance[key] = {"name": name, "distribution": registered.distribution}
        return component

    def subject(self, node: Any = None, key: str = "subject") -> Any:
        return self.component("subject", self.config.get("subject") if node is None else node, key)

    def generator(self, node: Any, key: str = "generator") -> Any:
        """A generator; identical configs share one instance (threads of one generator)."""
        signature = repr(sorted((node or {}).items())) if isinstance(node, Mapping) else repr(node)
        if signature not in self._generators:
            self._generators[signature] = (self.component("generator", node, key), key)
        generator, first_key = self._generators[signature]
        self.provenance[key] = self.provenance[first_key]
        return generator

    def objective(self, node: Any, key: str, n_channels: int) -> Any:
        objective = self.component("objective", node, key)
        objective.check_channels(n_channels)
        return objective

    def threads(self, n_channels: int) -> list[Thread]:
        """The optimizer threads of the config (see :func:`thread_specs`), seeded by the module's rule."""
        specs = thread_specs(self.config)
        single = len(specs) == 1 and not (self.config.get("experiment") or {}).get("threads")
        threads = []
        for k, (name, spec) in enumerate(specs):
            where = "" if single else f"experiment.threads.{name}."
            generator = self.generator(spec["generator"], f"{where}generator")
            self.provenance[f"{name}.generator"] = self.provenance[f"{where}generator"]
            objective = self.objective(spec["objective"], f"{where}objective", n_channels)
            self.provenance[f"{name}.objective"] = self.provenance[f"{where}objective"]
            node = spec["optimizer"]
            if not isinstance(node, Mapping):
                raise ConfigError(f"{where}optimizer: the config needs an optimizer")
            population = integer(node.get("population_size", 40), f"{where}optimizer.population_size",
                                 minimum=1, maximum=MAX_POPULATION)
            initial = generator.initial_codes(population, rng=np.random.default_rng(thread_code_seed(self.seed, k)))
            optimizer = self.component("optimizer", {k2: v for k2, v in node.items() if k2 != "population_size"},
                                       f"{where}optimizer", initial, seed=thread_optimizer_seed(self.seed, k))
            self.provenance[f"{name}.optimizer"] = self.provenance[f"{where}optimizer"]
            threads.append(Thread(name, generator, optimizer, objective))
        return threads

    def references(self, size: tuple[int, int]) -> tuple[list[str], Any] | None:
        """The natural references ``experiment.references`` describes at ``size``, or None for none.

        See :func:`latentopt.references.reference_set`: a list of photograph names, ``{set: natural, n, seed}``
        or ``{folder: path}``.
        """
        from latentopt.references import reference_set

        ids, images = reference_set((self.config.get("experiment") or {}).get("references"), size)
        return (ids, images) if ids else None

    def close(self) -> None:
        """Close every component built so far (after a failure)."""
        for component in reversed(self.built):
            getattr(component, "close", lambda: None)()
        self.built.clear()


def build_experiment(config: Mapping[str, Any], *, registry: Registry | None = None) -> Experiment:
    """Build the experiment ``experiment.name`` of a plain config (default ``evolve``).

    Raises:
        LatentoptError: a value of the config is unusable (ConfigError), a component is unknown (PluginError),
            its weights are missing (WeightsError): one line naming the key or file. What was built before the
            error is closed.
    """
    validate_run_keys(config)
    assembly = Assembly(config, registry=registry)
    name = str(config["experiment"].get("name", "evolve"))
    try:
        registered = assembly.registry.get("experiments", name)
        experiment = registered.factory(config=assembly.config, assembly=assembly)
        experiment.name = name
        assembly.provenance["experiment"] = {"name": name, "distribution": registered.distribution}
        if hasattr(experiment, "component_provenance"):
            experiment.component_provenance = assembly.provenance
        return experiment
    except BaseException:
        assembly.close()
        raise
