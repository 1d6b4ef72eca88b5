"""Shared fixtures: tiny components with known optima, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A tiny offline evolution: pixel images of a Gabor-energy V1 cell (optimum known: a grating).
TINY = [
    "generator=pixel", "generator.image_size=64", "generator.resolution=8",
    "subject=gabor_v1", "optimizer=ga_ponce", "optimizer.population_size=12", "optimizer.n_elite=3",
    "experiment.references=[]", "progress=false", "device=cpu",
]


def cli_command(args: list[str], *, entry: str = "main") -> list[str]:
    """The command line of a latentopt console script (``main``, ``resume_main``, ``plugins_main``)."""
    return [sys.executable, "-c", f"from latentopt.cli import {entry}; {entry}()", *args]


def run_cli(args: list[str], *, entry: str = "main", timeout: float = 300,
            check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a latentopt console script in a subprocess and return its output."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(cli_command(args, entry=entry), capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def tiny_args() -> list[str]:
    return list(TINY)


def plugin_env(folder: Path, source: str, *, dist: str = "rogue") -> dict[str, str]:
    """The environment of a subprocess in which ``source`` is an installed plugin.

    Writes the module ``<dist>_plugin`` and ``<dist>-0.1.dist-info`` (entry point ``<dist>`` in the group
    ``latentopt``) into ``folder`` and puts ``folder`` first on ``PYTHONPATH``: importlib.metadata
    finds it like any installed distribution.
    """
    (folder / f"{dist}_plugin.py").write_text(source)
    info = folder / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[latentopt]\n{dist} = {dist}_plugin\n")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    return env
