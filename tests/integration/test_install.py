"""Packaging: the core distribution ships the core only and runs the default evolution alone; each first-party
plugin is its own distribution (plugins/latentopt-<name>) with its metadata, configs and console scripts.

The core's installs (``pip install .`` of its wheel, and ``pip install -e .``) are made into a fresh venv that
borrows the running interpreter's dependencies (torch, hydra, ...) through a ``.pth`` file, so nothing is
downloaded. What it borrows is a view of those site-packages without latentopt, its plugins and the
dependencies only plugins declare (nevergrad, h5py, pytorch-pretrained-biggan): that venv is what
``pip install latentopt`` alone gives. The console scripts of that venv are used from a folder outside the
repository.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

GROUPS = ("generator", "subject", "objective", "optimizer", "experiment")
CORE_INPUTS = ("pyproject.toml", "README.md", "latentopt", "conf", "hydra_plugins")
SOURCE_ROOTS = {"latentopt": "latentopt", "hydra_plugins": "hydra_plugins", "conf": "latentopt/conf"}
PLUGINS = {  # distribution folder -> (package, entry point name, console scripts)
    "latentopt-biggan": ("latentopt_biggan", "biggan", {}),
    "latentopt-cmafamily": ("latentopt_cmafamily", "cmafamily", {}),
    "latentopt-deepsim": ("latentopt_deepsim", "deepsim", {"latentopt-deepsim-weights": "latentopt_deepsim.cli:entry"}),
    "latentopt-rig": ("latentopt_rig", "rig", {"latentopt-rigsim": "latentopt_rig.simcli:main"}),
}
PLUGIN_ONLY_DEPENDENCIES = ("nevergrad", "h5py", "pytorch-pretrained-biggan")
CORE_SCRIPTS = {"latentopt", "latentopt-resume", "latentopt-plugins", "latentopt-analyze", "latentopt-twin",
                "latentopt-geometry", "latentopt-report", "latentopt-export", "latentopt-live"}
DEFAULT_OPTIMIZER = "optional default_optimizer"
"""The primary config's entry that latentopt-cmafamily's ``conf/default_optimizer/sep_cma.yaml`` answers."""


def _pyproject(folder: Path) -> dict:
    """``folder/pyproject.toml`` (tomllib: Python >= 3.11)."""
    return pytest.importorskip("tomllib").loads((folder / "pyproject.toml").read_text())


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _hidden(entry: str) -> bool:
    """Whether a site-packages entry belongs to latentopt, a plugin, or a dependency only plugins declare."""
    name = entry.lower().replace("-", "_")
    return name.startswith(("latentopt", "__editable__")) or any(
        name.startswith(dep.replace("-", "_")) for dep in PLUGIN_ONLY_DEPENDENCIES)


def _core_alone_view(site: Path, folder: Path) -> Path:
    """``folder`` with a link to every entry of ``site`` but the :func:`_hidden` ones."""
    folder.mkdir(parents=True)
    for entry in site.iterdir():
        if not _hidden(entry.name) and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    return folder


def _make_venv(folder: Path) -> Path:
    """A venv without pip whose ``sys.path`` ends with this interpreter's (minus the source tree, latentopt and its
    plugins, :func:`_core_alone_view`); its ``bin/``.

    Its own site-packages comes first, so what is installed there shadows everything borrowed.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    borrowed = []
    for k, entry in enumerate(p for p in sys.path if p and Path(p).is_dir()):
        path = Path(entry)
        if "site-packages" in path.parts:  # e.g. the .venv that scripts/setup.sh makes in the checkout
            borrowed.append(str(_core_alone_view(path, folder.parent / f"borrowed_{k}")))
        elif not path.resolve().is_relative_to(ROOT):  # the source tree is left out
            borrowed.append(entry)
    Path(purelib, "borrowed_dependencies.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
    return folder / "bin"


def _pip(python: Path, *args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run([str(python), "-m", "pip", *args, "-q", "--no-deps", "--no-build-isolation"],
                          capture_output=True, text=True, env=_env(), cwd=cwd)
    assert proc.returncode == 0, proc.stderr


def _clean_copy(source: Path, folder: Path, names: tuple[str, ...]) -> Path:
    """What a wheel is built from, copied without build leftovers (a stale ``build/`` would hide a file
    missing from the package list)."""
    folder.mkdir(parents=True)
    for name in names:
        if (source / name).is_dir():
            shutil.copytree(source / name, folder / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        else:
            shutil.copy2(source / name, folder / name)
    return folder


def _wheel(source: Path, out: Path) -> Path:
    _pip(Path(sys.executable), "wheel", "-w", str(out), str(source))
    (wheel,) = out.glob("*.whl")
    return wheel


def _env() -> dict[str, str]:
    """The environment without PYTHONPATH (a source tree on it would shadow the install under test)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}


def _run(command: list[str], cwd: Path, timeout: float = 300) -> str:
    proc = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def _where(bin_dir: Path, work: Path) -> tuple[Path, Path]:
    """``(latentopt package folder, latentopt.conf resource folder)`` as the venv imports them."""
    out = _run([str(bin_dir / "python"), "-c", "import importlib.resources as r, latentopt; "
                "print(latentopt.__file__); print(r.files('latentopt.conf'))"], work)
    package, conf = out.splitlines()
    return Path(package).parent, Path(conf)


def _help_groups(text: str) -> dict[str, set[str]]:
    """``{group: options}`` from the ``== Configuration groups ==`` section of ``latentopt --help``."""
    section = text.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    groups = {}
    for line in section.splitlines():
        name, sep, options = line.partition(": ")
        if sep and name.strip():
            groups[name.strip()] = {o.strip() for o in options.split(",")}
    return groups


def _check_config_from(bin_dir: Path, work: Path, *, plugins: bool) -> None:
    """``latentopt --help`` lists every option of the tree's ``conf/<group>/`` and, with ``plugins``, of every
    first-party plugin's and the example's (without them, nothing else); ``--cfg job`` composes
    ``conf/config.yaml``'s defaults exactly as the tree's files hold them: the default optimizer is cmafamily's
    sep_cma with the plugins, the core's own without."""
    roots = [ROOT / "conf"]
    if plugins:
        roots += sorted([*ROOT.glob("plugins/*/*/conf"), *ROOT.glob("examples/*/*/conf")])
    listed = _help_groups(_run([str(bin_dir / "latentopt"), "--help"], work))
    for group in GROUPS:
        options = {p.stem for root in roots for p in (root / group).glob("*.yaml")}
        assert options, group
        if plugins:
            assert options <= listed.get(group, set()), (group, options, listed.get(group))
        else:
            assert options == listed.get(group, set()), (group, options, listed.get(group))
    job = yaml.safe_load(_run([str(bin_dir / "python"), "-m", "latentopt.cli", "--cfg", "job"], work))
    primary = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    defaults = {k: v for item in primary["defaults"] if isinstance(item, dict) for k, v in item.items()}
    assert set(defaults) == {*GROUPS, DEFAULT_OPTIMIZER}
    choices = {group: defaults[group] for group in GROUPS}
    if plugins:
        assert listed["default_optimizer"] == {defaults[DEFAULT_OPTIMIZER]}
        choices["optimizer"] = defaults[DEFAULT_OPTIMIZER]
    else:
        assert "default_optimizer" not in listed
    for group, option in choices.items():
        found = [f for root in roots if (f := root / group / f"{option}.yaml").is_file()]
        assert len(found) == 1, (group, option, found)
        assert job[group] == yaml.safe_load(found[0].read_text()), group
    assert job["seed"] == primary["seed"]


def _tree_sources() -> list[Path]:
    return [p for top in ("latentopt", "hydra_plugins", "conf") for p in (ROOT / top).rglob("*")
            if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts]


@pytest.mark.slow
def test_core_wheel_alone_ships_no_plugin_and_runs_the_default_evolution(tmp_path):
    wheel = _wheel(_clean_copy(ROOT, tmp_path / "source", CORE_INPUTS), tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(archive.read(f"{info}/METADATA"))
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"latentopt", "hydra_plugins", info}, sorted(names)[:20]
    missing = [str(p.relative_to(ROOT)) for p in _tree_sources()
               if SOURCE_ROOTS[p.relative_to(ROOT).parts[0]] + "/" + "/".join(p.relative_to(ROOT).parts[1:])
               not in names]
    assert not missing, f"not in the wheel: {sorted(missing)}"
    requires = {_requirement_name(r) for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r}
    assert not requires & set(PLUGIN_ONLY_DEPENDENCIES), requires
    assert "[latentopt]" not in entry_points, entry_points
    scripts = {line.split("=")[0].strip() for line in entry_points.split("[console_scripts]")[1].split("[")[0]
               .splitlines() if "=" in line}
    assert scripts == CORE_SCRIPTS, scripts

    bin_dir = _make_venv(tmp_path / "venv")
    _pip(bin_dir / "python", "install", str(wheel))
    work = tmp_path / "elsewhere"
    work.mkdir()
    package, conf = _where(bin_dir, work)
    assert package.is_relative_to(tmp_path / "venv") and conf == package / "conf", (package, conf)
    _run([str(bin_dir / "python"), "-c", "import importlib.util as u; "
          "assert not [m for m in ('latentopt_cmafamily', 'nevergrad', 'h5py', 'pytorch_pretrained_biggan') "
          "if u.find_spec(m)]"], work)
    listing = _run([str(bin_dir / "latentopt-plugins")], work)
    assert "built-in" in listing and "sphere_cma" not in listing and "latentopt_rig" not in listing, listing
    _check_config_from(bin_dir, work, plugins=False)
    # the default evolution (every group as conf/config.yaml chooses it), offline, two generations
    _run([str(bin_dir / "latentopt"), "experiment.generations=2", "progress=false", "device=cpu",
          f"hydra.run.dir={work / 'run'}"], work, timeout=600)
    assert (work / "run" / "generations" / "gen_00001.npz").exists()
    optimizer = yaml.safe_load((work / "run" / "config.yaml").read_text())["optimizer"]
    assert (optimizer["name"], optimizer["diagonal"]) == ("cmaes", True)  # the core's cmaes_diag


@pytest.mark.slow
def test_editable_install_reads_the_tree_conf_from_another_folder(tmp_path):
    bin_dir = _make_venv(tmp_path / "venv")
    _pip(bin_dir / "python", "install", "-e", str(ROOT))
    work = tmp_path / "elsewhere"
    work.mkdir()
    package, conf = _where(bin_dir, work)
    assert (package, conf) == (ROOT / "latentopt", ROOT / "conf")
    _check_config_from(bin_dir, work, plugins=False)


def test_the_set_up_composes_every_plugins_configs_and_the_default_sep_cma(tmp_path):
    """In the set-up's own venv (the core with all four plugins): sep_cma is the default optimizer."""
    _check_config_from(Path(sys.executable).parent, tmp_path, plugins=True)


@pytest.mark.parametrize("folder", sorted(PLUGINS))
def test_each_plugin_is_its_own_distribution(folder):
    """What scripts/setup.sh installed from plugins/<folder> is the tree's pyproject.toml: name, version,
    entry point, console scripts, dependencies (on latentopt, and no torch but any recent one)."""
    package, entry_name, scripts = PLUGINS[folder]
    project = _pyproject(ROOT / "plugins" / folder)["project"]
    assert (ROOT / "plugins" / folder / "README.md").is_file() and project["readme"] == "README.md"
    dist = metadata.distribution(folder)
    assert dist.metadata["Name"] == project["name"] == folder and dist.version == project["version"] == "0.1.0"
    points = {(e.group, e.name): e.value for e in dist.entry_points}
    assert {k[1]: v for k, v in points.items() if k[0] == "latentopt"} == {entry_name: package}
    assert {k[1]: v for k, v in points.items() if k[0] == "console_scripts"} == scripts == project.get("scripts", {})
    requires = [r for r in dist.requires or [] if "extra ==" not in r]
    assert "latentopt" in {_requirement_name(r) for r in requires}
    torch = [r.replace(" ", "") for r in requires if _requirement_name(r) == "torch"]
    assert all(re.fullmatch(r"torch(>=[0-9.]+)?", r) for r in torch), torch  # never a pin that replaces the set-up's
    module = __import__(package)
    assert Path(module.__file__).parent == ROOT / "plugins" / folder / package
    assert not (ROOT / "plugins" / folder / package / "tests").exists()  # the tests live beside the package


def test_the_core_declares_no_plugin_and_no_dependency_only_plugins_need():
    project = _pyproject(ROOT)
    requires = {_requirement_name(r) for r in project["project"]["dependencies"]}
    assert not requires & set(PLUGIN_ONLY_DEPENDENCIES), requires
    assert "latentopt" not in project["project"].get("entry-points", {})
    assert set(project["project"]["scripts"]) == CORE_SCRIPTS
    packages = set(project["tool"]["setuptools"]["packages"])
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for top in ("latentopt", "hydra_plugins")
               for p in (ROOT / top).rglob("__init__.py")} | {"latentopt.conf", "hydra_plugins"}
    assert packages == in_tree, (packages ^ in_tree)


@pytest.mark.slow
@pytest.mark.parametrize("folder", sorted(PLUGINS))
def test_plugin_wheel_ships_its_package_and_configs_not_its_tests(folder, tmp_path):
    source = ROOT / "plugins" / folder
    package = PLUGINS[folder][0]
    wheel = _wheel(_clean_copy(source, tmp_path / "source", ("pyproject.toml", "README.md", package)),
                   tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {n.split("/")[0] for n in names} - {n.split("/")[0] for n in names if ".dist-info/" in n} == {package}
    files = [str(p.relative_to(source)) for p in (source / package).rglob("*")
             if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts]
    assert any(f.endswith(".yaml") for f in files)
    assert not [f for f in files if f not in names], sorted(set(files) - names)
