"""The registry: hooks, collisions, provenance of components, and hook documentation."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pytest

from latentopt import plugins
from latentopt.plugins import HookSpecs, PluginError, build_registry, get_plugin_manager, hookimpl

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, fn in hooks.items():
        setattr(module, key, hookimpl(fn))
    return module


def test_builtins_register_through_the_hooks():
    registry = build_registry(get_plugin_manager(entry_points=False))
    assert {"fourier", "pixel"} <= set(registry.names("generators"))
    assert {"cnn_unit", "gabor_v1"} <= set(registry.names("subjects"))
    assert {"ga", "cmaes", "random"} <= set(registry.names("optimizers"))
    component = registry.get("generators", "fourier")
    assert component.plugin == "latentopt.builtins.generators"
    assert "built-in" in component.distribution


def test_name_collision_names_both_providers():
    pm = get_plugin_manager(entry_points=False)

    def latentopt_register_generators(register):
        register("fourier", object)

    pm.register(_module("rogue_plugin", latentopt_register_generators=latentopt_register_generators),
                name="rogue_plugin")
    with pytest.raises(PluginError, match=r"fourier.*latentopt\.builtins\.generators.*rogue_plugin"):
        build_registry(pm)


def test_third_party_plugin_components_and_searchpath():
    pm = get_plugin_manager(entry_points=False)

    def latentopt_register_objectives(register):
        register("negated", lambda: "built")

    def latentopt_register_config_searchpath(register):
        register("pkg://somewhere.conf")

    pm.register(_module("third", latentopt_register_objectives=latentopt_register_objectives,
                        latentopt_register_config_searchpath=latentopt_register_config_searchpath), name="third")
    registry = build_registry(pm)
    assert registry.build("objectives", "negated") == "built"
    assert registry.get("objectives", "negated").plugin == "third"
    assert ("pkg://somewhere.conf", "third") in registry.searchpaths


def test_unknown_name_and_bad_keyword_are_clear():
    registry = build_registry(get_plugin_manager(entry_points=False))
    with pytest.raises(PluginError, match=r"no generator named 'nope'.*fourier"):
        registry.get("generators", "nope")
    with pytest.raises(PluginError, match=r"generator 'pixel'.*colour"):
        registry.build("generators", "pixel", colour=3)


def test_every_hook_is_documented_and_tested():
    """Each hookspec has a docstring, a section in docs/plugins.md, and a test in this file."""
    text = DOCS.read_text()
    source = Path(__file__).read_text()
    specs = [name for name, _ in inspect.getmembers(HookSpecs, inspect.isfunction)]
    assert specs
    for name in specs:
        assert getattr(HookSpecs, name).__doc__, f"hook {name} has no docstring"
        assert re.search(rf"^#+ .*{name}", text, re.M), f"hook {name} has no section in docs/plugins.md"
        group = name.removeprefix("latentopt_register_")
        assert group in source, f"hook {name} is not exercised here"
    assert set(plugins.GROUPS) <= {s.removeprefix("latentopt_register_") for s in specs}


def test_plugin_guide_pyproject_snippet_is_a_valid_distribution():
    """The guide's pyproject.toml, pasted as it is, passes setuptools' validation and has the entry
    point, packages and config data that the example distribution in examples/ has."""
    import tomllib
    from setuptools.config.pyprojecttoml import validate

    guide = (Path(__file__).parents[2] / "docs" / "plugin_guide.md").read_text()
    blocks = re.findall(r"```toml\n(# pyproject\.toml\n.*?)```", guide, re.S)
    assert len(blocks) == 1, "docs/plugin_guide.md should hold one pyproject.toml block"
    config = tomllib.loads(blocks[0])
    assert validate(config, "pyproject.toml")
    assert config["build-system"]["build-backend"] == "setuptools.build_meta"
    assert config["project"]["entry-points"]["latentopt"] == {"mygen": "my_generator"}
    assert config["tool"]["setuptools"]["package-data"]["my_generator"] == ["conf/*/*.yaml"]
    example = tomllib.loads(
        (Path(__file__).parents[2] / "examples" / "latentopt-example-generator" / "pyproject.toml").read_text()
    )
    assert set(example) == set(config) and set(example["project"]) >= set(config["project"])
