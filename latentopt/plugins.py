"""The plugin registry, on pluggy.

Every component, built-in or third-party, arrives through the same hooks. A plugin module (or a
distribution's entry point in the group ``latentopt``) implements any of:

* ``latentopt_register_generators(register)``
* ``latentopt_register_subjects(register)``
* ``latentopt_register_objectives(register)``
* ``latentopt_register_optimizers(register)``
* ``latentopt_register_experiments(register)``
* ``latentopt_register_config_searchpath(register)``
* ``latentopt_register_report_sections(register)``

Component hooks call ``register(name, factory)``; ``factory(**kwargs)`` builds the component from the
keyword arguments of its Hydra config (an experiment's ``factory(config, assembly)`` gets the plain
config dict and the assembled components). The search-path hook calls ``register("pkg://package.conf")``
for a folder holding ``<group>/<name>.yaml`` files. The report hook calls ``register(experiment, sections)``:
``sections(run_dir)`` returns the sections of the run report page (:mod:`latentopt.html_report`) for a run
of that experiment; several providers may add sections to one experiment. Two providers of one component
name are an error naming both.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from latentopt.errors import LatentoptError

PROJECT = "latentopt"
GROUPS = ("generators", "subjects", "objectives", "optimizers", "experiments")

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# Built-ins travel the same road as third-party plugins (datasette's DEFAULT_PLUGINS).
DEFAULT_PLUGINS = (
    "latentopt.builtins.generators",
    "latentopt.builtins.subjects",
    "latentopt.builtins.dynamic",
    "latentopt.builtins.objectives",
    "latentopt.builtins.population",
    "latentopt.builtins.twin",
    "latentopt.builtins.optimizers",
    "latentopt.builtins.experiments",
)


class PluginError(LatentoptError, RuntimeError):
    """A plugin could not be registered or a component name is unknown."""


class HookSpecs:
    """The hooks a latentopt plugin may implement."""

    @hookspec
    def latentopt_register_generators(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        """Register generators: ``register(name, factory)``; factory returns a ``Generator``."""

    @hookspec
    def latentopt_register_subjects(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        """Register subjects: ``register(name, factory)``; factory returns a ``Subject``."""

    @hookspec
    def latentopt_register_objectives(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        """Register objectives: ``register(name, factory)``; factory returns an ``Objective``."""

    @hookspec
    def latentopt_register_optimizers(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        """Register optimizers: ``register(name, factory)``; ``factory(initial_codes, seed=..., **kw)``
        returns an ``Optimizer``."""

    @hookspec
    def latentopt_register_experiments(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        """Register experiments: ``register(name, factory)``; ``factory(config, assembly)`` returns an
        ``Experiment`` (``config``: the run's plain config; ``assembly``: a ``latentopt.assembly.Assembly``)."""

    @hookspec
    def latentopt_register_config_searchpath(self, register: Callable[[str], None]) -> None:
        """Register a Hydra config search path such as ``pkg://my_plugin.conf``."""

    @hookspec
    def latentopt_register_report_sections(self, register: Callable[[str, Callable[[Path], list[Any]]], None]) -> None:
        """Register sections of the run report page: ``register(experiment, sections)``; ``sections(run_dir)``
        returns a list of ``latentopt.html_report.Section`` for a run of the experiment named ``experiment``
        (read from the run folder only; several providers of one experiment add their sections in turn)."""


@dataclass(frozen=True)
class Component:
    """A registered component: its name, factory and who provided it."""

    group: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str


@dataclass
class Registry:
    """Everything the installed plugins provide."""

    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {g: {} for g in GROUPS})
    searchpaths: list[tuple[str, str]] = field(default_factory=list)
    report_sections: dict[str, list[tuple[Callable[[Path], list[Any]], str]]] = field(default_factory=dict)
    """Per experiment name: ``(sections, plugin)`` of every provider, in registration order."""

    def get(self, group: str, name: str) -> Component:
        if group not in self.components:
            raise PluginError(f"unknown component group {group!r}; groups are {', '.join(GROUPS)}")
        try:
            return self.components[group][name]
        except KeyError:
            known = ", ".join(sorted(self.components[group])) or "none"
            raise PluginError(f"no {group[:-1]} named {name!r} is installed (known: {known})") from None

    def build(self, group: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Build a component: ``factory(*args, **kwargs)`` of the component ``name`` of ``group``.

        The arguments are bound to the factory's signature first, so a keyword the factory does not
        take (a typo in the config) or a missing required one is a :class:`PluginError` naming the
        component and the keyword; a ``TypeError`` raised inside the factory is a bug and propagates.

        Raises:
            PluginError: unknown group or name, or arguments that do not fit the factory's signature.
        """
        component = self.get(group, name)
        problem = argument_problem(component.factory, args, kwargs)
        if problem is not None:
            from latentopt.renames import renamed_key_hint

            raise PluginError(f"{group[:-1]} {name!r}: {renamed_key_hint(group, problem) or problem}")
        return component.factory(*args, **kwargs)

    def names(self, group: str) -> list[str]:
        return sorted(self.components[group])


def argument_problem(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why ``factory(*args, **kwargs)`` does not fit the factory's signature, or None when it does.

    A factory without an inspectable signature (some C callables) is given the benefit of the doubt;
    one taking ``**kwargs`` accepts any keyword.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        return _explain_bind(signature, args, kwargs) or str(err)
    return None


def _explain_bind(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """One line naming the first keyword that does not fit (unexpected, given twice, missing)."""
    kind = inspect.Parameter
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)]
    if len(args) > len(positional) and not any(p.kind is kind.VAR_POSITIONAL for p in params):
        return f"takes {len(positional)} positional argument(s), got {len(args)}"
    by_position = {p.name for p in positional[: len(args)]}
    keywords = [p.name for p in params if p.kind in (kind.POSITIONAL_OR_KEYWORD, kind.KEYWORD_ONLY)]
    accepted = ", ".join(k for k in keywords if k not in by_position) or "none"
    any_keyword = any(p.kind is kind.VAR_KEYWORD for p in params)
    for key in kwargs:
        if key in by_position:
            return f"{key!r} is given twice (by position and as a keyword)"
        if key not in keywords and not any_keyword:
            return f"unexpected keyword {key!r} (accepted: {accepted})"
    for p in params:
        required = p.default is p.empty and p.kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD)
        if required and p.name not in by_position and p.name not in kwargs:
            return f"missing required {p.name!r}"
    return None


def get_plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the built-ins and (unless disabled) installed entry points."""
    import importlib

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if entry_points:
        pm.load_setuptools_entrypoints(PROJECT)
    return pm


def _distribution_of(pm: pluggy.PluginManager) -> dict[str, str]:
    names: dict[str, str] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        plugin_name = pm.get_name(plugin)
        if plugin_name is not None:
            names[plugin_name] = f"{dist.metadata['name']} {dist.version}"
    return names


def build_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Call every plugin's hooks and collect their components; collisions are errors."""
    from latentopt import __version__

    pm = pm or get_plugin_manager()
    dists = _distribution_of(pm)
    registry = Registry()

    def distribution(plugin: str) -> str:
        if plugin in dists:
            return dists[plugin]
        return f"latentopt {__version__} (built-in)" if plugin in DEFAULT_PLUGINS else "registered at run time"

    def register_component(group: str, plugin: str, name: str, factory: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin} registered a {group[:-1]} with an invalid name {name!r}")
        existing = registry.components[group].get(name)
        if existing is not None:
            raise PluginError(
                f"{group[:-1]} name {name!r} is provided twice: by {existing.plugin} "
                f"({existing.distribution}) and by {plugin} ({distribution(plugin)})"
            )
        registry.components[group][name] = Component(group, name, factory, plugin, distribution(plugin))

    for group in GROUPS:
        hook = getattr(pm.hook, f"latentopt_register_{group}")
        for impl in hook.get_hookimpls():  # registration order: built-ins first
            impl.function(register=functools.partial(register_component, group, impl.plugin_name))
    for impl in pm.hook.latentopt_register_config_searchpath.get_hookimpls():
        impl.function(register=lambda path, _p=impl.plugin_name: registry.searchpaths.append((path, _p)))
    for impl in pm.hook.latentopt_register_report_sections.get_hookimpls():
        impl.function(register=functools.partial(_register_sections, registry, impl.plugin_name))
    return registry


def _register_sections(registry: Registry, plugin: str, experiment: str, sections: Callable[[Path], list[Any]]) -> None:
    if not isinstance(experiment, str) or not experiment or not callable(sections):
        raise PluginError(f"plugin {plugin} registered report sections with an invalid experiment name "
                          f"{experiment!r} or a sections function that is not callable")
    registry.report_sections.setdefault(experiment, []).append((sections, plugin))


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of everything installed (cached for the process)."""
    return build_registry()
