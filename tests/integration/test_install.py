"""Installs carry the primary config (the tree's ``conf/``, installed as ``latentopt.conf``) and the Hydra plugin.

Each install mode (``pip install .`` and ``pip install -e .``) is made into a fresh venv that borrows the
running interpreter's dependencies (torch, hydra, ...) through a ``.pth`` file, so nothing is downloaded;
the console scripts of that venv are then used from a folder outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY

GROUPS = ("generator", "subject", "objective", "optimizer", "experiment")
BUILD_INPUTS = ("pyproject.toml", "README.md", "latentopt", "conf", "hydra_plugins", "plugins")
SOURCE_ROOTS = {"latentopt": "latentopt", "hydra_plugins": "hydra_plugins", "conf": "latentopt/conf"}


def _make_venv(folder: Path) -> Path:
    """A venv without pip whose ``sys.path`` ends with this interpreter's (minus the source tree); its ``bin/``.

    Its own site-packages comes first, so what is installed there shadows everything borrowed.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the source tree is left out; a venv inside the checkout (scripts/setup.sh makes .venv there) is borrowed
    borrowed = [p for p in sys.path if p and Path(p).is_dir()
                and ("site-packages" in Path(p).parts or not Path(p).resolve().is_relative_to(ROOT))]
    Path(purelib, "borrowed_dependencies.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
    return folder / "bin"


def _install(bin_dir: Path, source: Path, *, editable: bool) -> None:
    mode = ["-e"] if editable else []
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", *mode, str(source)], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr


def _clean_copy(folder: Path) -> Path:
    """What the wheel is built from, copied without build leftovers (a stale ``build/`` would hide a file
    missing from the package list)."""
    folder.mkdir()
    for name in BUILD_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, folder / name)
    return folder


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
        if sep and name.strip() in GROUPS:
            groups[name.strip()] = {o.strip() for o in options.split(",")}
    return groups


def _check_config_from(bin_dir: Path, work: Path) -> None:
    """``latentopt --help`` lists every option of the tree's ``conf/<group>/``; ``--cfg job`` composes
    ``conf/config.yaml``'s defaults exactly as the tree's files (the core's or a plugin's) hold them."""
    listed = _help_groups(_run([str(bin_dir / "latentopt"), "--help"], work))
    for group in GROUPS:
        options = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
        assert options, group
        assert options <= listed.get(group, set()), (group, options, listed.get(group))
    job = yaml.safe_load(_run([str(bin_dir / "python"), "-m", "latentopt.cli", "--cfg", "job"], work))
    primary = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    defaults = {k: v for item in primary["defaults"] if isinstance(item, dict) for k, v in item.items()}
    assert set(defaults) == set(GROUPS)
    for group, option in defaults.items():
        # the core's conf, or a first-party plugin's (the default optimizer, sphere_cma, is the CMA plugin's)
        files = [ROOT / "conf" / group / f"{option}.yaml", *ROOT.glob(f"plugins/*/conf/{group}/{option}.yaml")]
        found = [f for f in files if f.is_file()]
        assert len(found) == 1, (group, option, found)
        assert job[group] == yaml.safe_load(found[0].read_text()), group
    assert job["seed"] == primary["seed"]


def _installed_path(source: Path, site: Path) -> Path:
    """Where a source file of the tree lands in an installed site-packages."""
    top, *rest = source.relative_to(ROOT).parts
    if top == "plugins":
        return site.joinpath(*rest)
    return site.joinpath(SOURCE_ROOTS[top], *rest)


@pytest.mark.slow
def test_non_editable_install_runs_from_another_folder(tmp_path):
    bin_dir = _make_venv(tmp_path / "venv")
    _install(bin_dir, _clean_copy(tmp_path / "source"), editable=False)
    work = tmp_path / "elsewhere"
    work.mkdir()
    package, conf = _where(bin_dir, work)
    assert package.is_relative_to(tmp_path / "venv") and conf == package / "conf", (package, conf)
    sources = [p for top in ("latentopt", "hydra_plugins", "conf", "plugins") for p in (ROOT / top).rglob("*")
               if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts]
    missing = [str(p.relative_to(ROOT)) for p in sources if not _installed_path(p, package.parent).is_file()]
    assert len(sources) > 50, len(sources)
    assert not missing, f"not installed: {sorted(missing)}"
    _check_config_from(bin_dir, work)
    _run([str(bin_dir / "latentopt"), *TINY, "experiment.generations=2", f"hydra.run.dir={work / 'run'}"], work)
    assert (work / "run" / "generations" / "gen_00001.npz").exists()


@pytest.mark.slow
def test_editable_install_reads_the_tree_conf_from_another_folder(tmp_path):
    bin_dir = _make_venv(tmp_path / "venv")
    _install(bin_dir, ROOT, editable=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    package, conf = _where(bin_dir, work)
    assert (package, conf) == (ROOT / "latentopt", ROOT / "conf")
    _check_config_from(bin_dir, work)
