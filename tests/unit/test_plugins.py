"""The registry: hooks (one test_hook_<name> each), collisions, argument binding, hook documentation."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest

from latentopt import cli, plugins
from latentopt.plugins import HookSpecs, PluginError, Registry, build_registry, get_plugin_manager, hookimpl

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
BUILT_IN = "latentopt 0.1.0 (built-in)"


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, fn in hooks.items():
        setattr(module, key, hookimpl(fn))
    return module


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], pluggy.PluginManager]]:
    """``install(dist, source)``: the module ``source`` installed as distribution ``<dist> 0.1`` (a dist-info
    with an entry point in the group ``latentopt``), loaded through its entry point beside the built-ins."""
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []

    def _install(dist: str, source: str) -> pluggy.PluginManager:
        module = f"{dist}_plugin"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[latentopt]\n{dist} = {module}\n")
        modules.append(module)
        pm = get_plugin_manager(entry_points=False)
        assert pm.load_setuptools_entrypoints(plugins.PROJECT, name=dist) == 1
        return pm

    yield _install
    for module in modules:
        sys.modules.pop(module, None)


def _listing(registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """What ``latentopt-plugins`` prints for ``registry``."""
    monkeypatch.setattr(plugins, "default_registry", lambda: registry)
    cli.plugins_main([])
    return capsys.readouterr().out


def _check_component_hook(install, monkeypatch, capsys, *, group: str, name: str, builtin: str | None) -> None:
    """A third-party distribution registers ``name`` in ``group`` through the hook: it is built with its
    config's keywords, listed by ``latentopt-plugins`` under its group with its distribution, and a
    second provider of the name (the built-in ``builtin``, or another plugin) stops with both named."""
    pm = install(f"rogue_{group}", f"""
        from latentopt.plugins import hookimpl

        def make(*args, **kwargs):
            return ("made", args, kwargs)

        @hookimpl
        def latentopt_register_{group}(register):
            register({name!r}, make)
    """)
    registry = build_registry(pm)
    component = registry.get(group, name)
    assert (component.plugin, component.distribution) == (f"rogue_{group}", f"rogue_{group} 0.1")
    assert registry.build(group, name, 1, size=3) == ("made", (1,), {"size": 3})
    out = _listing(registry, monkeypatch, capsys)
    section = out.split(f"{group}:\n", 1)[1].split(":\n", 1)[0]
    assert re.search(rf"^  {name} +rogue_{group} 0\.1 +\(rogue_{group}\)$", section, re.M), out

    if builtin is None:  # no built-in provides this group yet: a second plugin collides
        def latentopt_hook(register):
            register(name, object)

        pm.register(_module("copycat", **{f"latentopt_register_{group}": latentopt_hook}), name="copycat")
        first, second = f"rogue_{group} (rogue_{group} 0.1)", "copycat (registered at run time)"
    else:
        pm = install(f"clash_{group}", f"""
            from latentopt.plugins import hookimpl

            @hookimpl
            def latentopt_register_{group}(register):
                register({builtin!r}, object)
        """)
        first, second = f"latentopt.builtins.{group} ({BUILT_IN})", f"clash_{group} (clash_{group} 0.1)"
        name = builtin
    with pytest.raises(PluginError) as info:
        build_registry(pm)
    assert str(info.value) == f"{group[:-1]} name {name!r} is provided twice: by {first} and by {second}"


# ---------------------------------------------------------------------------- one test per hook
def test_hook_latentopt_register_generators(install, monkeypatch, capsys):
    _check_component_hook(install, monkeypatch, capsys, group="generators", name="mygen", builtin="pixel")


def test_hook_latentopt_register_subjects(install, monkeypatch, capsys):
    _check_component_hook(install, monkeypatch, capsys, group="subjects", name="mycell", builtin="gabor_v1")


def test_hook_latentopt_register_objectives(install, monkeypatch, capsys):
    _check_component_hook(install, monkeypatch, capsys, group="objectives", name="negated", builtin="single_unit")


def test_hook_latentopt_register_optimizers(install, monkeypatch, capsys):
    _check_component_hook(install, monkeypatch, capsys, group="optimizers", name="myopt", builtin="ga")


def test_hook_latentopt_register_experiments(install, monkeypatch, capsys):
    _check_component_hook(install, monkeypatch, capsys, group="experiments", name="sweep", builtin=None)


def test_hook_latentopt_register_config_searchpath(install, monkeypatch, capsys):
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl

    from hydra_plugins.latentopt_searchpath.latentopt_searchpath import LatentoptSearchPathPlugin

    pm = install("rogue_conf", """
        from latentopt.plugins import hookimpl

        @hookimpl
        def latentopt_register_config_searchpath(register):
            register("pkg://rogue_conf_plugin.conf")
    """)
    registry = build_registry(pm)
    assert ("pkg://rogue_conf_plugin.conf", "rogue_conf") in registry.searchpaths
    out = _listing(registry, monkeypatch, capsys)
    assert re.search(r"^  pkg://rogue_conf_plugin\.conf +\(rogue_conf\)$", out.split("config search paths:")[1], re.M)
    search_path = ConfigSearchPathImpl()
    LatentoptSearchPathPlugin().manipulate_search_path(search_path)  # reads the patched default_registry
    assert [(e.provider, e.path) for e in search_path.get_path()][-1] == ("rogue_conf", "pkg://rogue_conf_plugin.conf")


def test_hook_latentopt_register_report_sections(install, tmp_path):
    """A third party's sections join the run report page of the experiment it names, after the built-ins' and
    in registration order; several providers of one experiment are allowed (sections add up, nothing collides)."""
    pm = install("rogue_report", """
        from latentopt.plugins import hookimpl
        from latentopt.html_report import Section, table

        def sections(run_dir):
            return [Section("Rogue <analysis>", ["read from " + run_dir.name, table(["k"], [["<v>"]])])]

        @hookimpl
        def latentopt_register_report_sections(register):
            register("evolve", sections)
            register("line_scan", sections)
    """)
    registry = build_registry(pm)
    providers = [plugin for _, plugin in registry.report_sections["evolve"]]
    assert providers == ["latentopt.builtins.experiments", "rogue_report"]
    assert [plugin for _, plugin in registry.report_sections["line_scan"]] == ["rogue_report"]
    (section,) = registry.report_sections["line_scan"][0][0](tmp_path)
    rendered = section.render("rogue")
    assert "<h2>Rogue &lt;analysis&gt;</h2>" in rendered and f"<p>read from {tmp_path.name}</p>" in rendered
    assert "<td>&lt;v&gt;</td>" in rendered

    pm.register(_module("broken", latentopt_register_report_sections=lambda register: register("", print)),
                name="broken")
    with pytest.raises(PluginError, match="plugin broken registered report sections with an invalid experiment"):
        build_registry(pm)


def test_builtins_register_through_the_hooks():
    registry = build_registry(get_plugin_manager(entry_points=False))
    assert {"fourier", "pixel"} <= set(registry.names("generators"))
    assert {"cnn_unit", "gabor_v1"} <= set(registry.names("subjects"))
    assert {"ga", "cmaes", "random"} <= set(registry.names("optimizers"))
    component = registry.get("generators", "fourier")
    assert component.plugin == "latentopt.builtins.generators"
    assert component.distribution == BUILT_IN


def test_search_path_plugin_adds_only_the_default_optimizers_configs_on_a_collision(monkeypatch):
    """Hydra calls the search-path plugin during its own start-up: a collision there is not a traceback
    (the CLI reports it in one line before Hydra starts). Only the first-party folder that the primary
    config's defaults need (the default optimizer, sep_cma) is added."""
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl

    from hydra_plugins.latentopt_searchpath.latentopt_searchpath import LatentoptSearchPathPlugin

    def colliding() -> Registry:
        raise PluginError("generator name 'pixel' is provided twice: by a and by b")

    monkeypatch.setattr(plugins, "default_registry", colliding)
    search_path = ConfigSearchPathImpl()
    search_path.append("main", "pkg://latentopt.conf")
    LatentoptSearchPathPlugin().manipulate_search_path(search_path)
    assert [(e.provider, e.path) for e in search_path.get_path()] == [
        ("main", "pkg://latentopt.conf"), ("latentopt_cmafamily", "pkg://latentopt_cmafamily.conf")]


# ---------------------------------------------------------------------------- names and arguments
def test_unknown_name_is_clear():
    registry = build_registry(get_plugin_manager(entry_points=False))
    with pytest.raises(PluginError, match=r"no generator named 'nope'.*fourier"):
        registry.get("generators", "nope")
    with pytest.raises(PluginError, match=r"no experiment named 'evolv' is installed"):
        registry.get("experiments", "evolv")


def _registry_with(**factories: Callable[..., object]) -> Registry:
    pm = get_plugin_manager(entry_points=False)

    def latentopt_register_objectives(register):
        for name, factory in factories.items():
            register(name, factory)

    pm.register(_module("third", latentopt_register_objectives=latentopt_register_objectives), name="third")
    return build_registry(pm)


def test_build_binds_the_arguments_before_calling_the_factory():
    registry = build_registry(get_plugin_manager(entry_points=False))
    with pytest.raises(PluginError) as info:
        registry.build("generators", "pixel", colour=3)
    assert str(info.value) == ("generator 'pixel': unexpected keyword 'colour' "
                               "(accepted: image_size, resolution, init_scale, device, batch_size)")

    def needs_size(*, size: int, scale: float = 1.0) -> str:
        raise AssertionError("not called: the binding failed first")

    def positional(codes: object, *, seed: int = 0) -> str:
        raise AssertionError("not called: the binding failed first")

    registry = _registry_with(needs_size=needs_size, positional=positional)
    with pytest.raises(PluginError, match=r"^objective 'needs_size': missing required 'size'$"):
        registry.build("objectives", "needs_size", scale=2.0)
    with pytest.raises(PluginError, match=r"^objective 'positional': unexpected keyword 'sed' \(accepted: seed\)$"):
        registry.build("objectives", "positional", [0.0], sed=1)
    with pytest.raises(PluginError, match=r"^objective 'positional': 'codes' is given twice"):
        registry.build("objectives", "positional", [0.0], codes=1)
    with pytest.raises(PluginError, match=r"^objective 'positional': takes 1 positional argument\(s\), got 2$"):
        registry.build("objectives", "positional", [0.0], [1.0])


def test_a_type_error_inside_the_factory_is_a_bug_and_propagates():
    """Once the arguments bind, a TypeError is the factory's own (even one that mentions 'required')."""
    def broken(*, size: int = 3) -> str:
        raise TypeError("g() missing 1 required positional argument: 'x'")

    registry = _registry_with(broken=broken, anything=lambda **kwargs: kwargs)
    with pytest.raises(TypeError) as info:
        registry.build("objectives", "broken", size=4)
    assert not isinstance(info.value, PluginError)
    assert str(info.value) == "g() missing 1 required positional argument: 'x'"
    assert registry.build("objectives", "anything", a=1, zeta="z") == {"a": 1, "zeta": "z"}  # **kwargs binds anything


# ---------------------------------------------------------------------------- documentation of the hooks
HOOKS = sorted(name for name, _ in inspect.getmembers(HookSpecs, inspect.isfunction))


def _signature(hook: str) -> str:
    """``latentopt_register_generators(register)``: the hook as a plugin implements it."""
    params = [p for p in inspect.signature(getattr(HookSpecs, hook)).parameters if p != "self"]
    return f"{hook}({', '.join(params)})"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_tested(hook):
    """datasette's meta-tests: each hookspec has a docstring, a test named ``test_hook_<hook>`` here, and
    its signature as a section heading of docs/plugins.md."""
    assert getattr(HookSpecs, hook).__doc__, f"hook {hook} has no docstring"
    assert callable(globals().get(f"test_hook_{hook}")), f"hook {hook} has no test_hook_{hook} in this file"
    headings = re.findall(r"^#+ `?(latentopt_\w+\(.*?\))`?\s*$", DOCS.read_text(), re.M)
    assert _signature(hook) in headings, f"docs/plugins.md has no section headed {_signature(hook)}"


def test_only_real_hooks_have_tests_and_doc_sections():
    tests = {n.removeprefix("test_hook_") for n in globals() if n.startswith("test_hook_")}
    headings = set(re.findall(r"^#+ `?(latentopt_\w+)\(", DOCS.read_text(), re.M))
    assert tests == set(HOOKS) and headings == set(HOOKS)
    assert {f"latentopt_register_{g}" for g in plugins.GROUPS} | {"latentopt_register_config_searchpath",
                                                                 "latentopt_register_report_sections"} == set(HOOKS)


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
