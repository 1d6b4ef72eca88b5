"""The plugin registers through latentopt's hooks, like any third-party plugin, with its configs."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from pathlib import Path

import numpy as np
import pluggy
import pytest
from cmafamily_helpers import hessian_basis, initial_codes
from omegaconf import OmegaConf

import latentopt_cmafamily
from latentopt.plugins import PROJECT, HookSpecs, build_registry


@pytest.fixture
def registry():
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    pm.register(latentopt_cmafamily, name="latentopt_cmafamily")
    return build_registry(pm)


def test_entry_point_is_declared() -> None:
    points = importlib.metadata.entry_points(group="latentopt")
    assert any(p.name == "cmafamily" and p.value == "latentopt_cmafamily" for p in points)


def test_optimizers_and_searchpath_are_registered(registry) -> None:
    assert set(registry.names("optimizers")) == set(latentopt_cmafamily.OPTIMIZERS)
    assert ("pkg://latentopt_cmafamily.conf", "latentopt_cmafamily") in registry.searchpaths


def test_every_optimizer_builds_from_its_config_as_the_cli_does(registry, tmp_path: Path) -> None:
    basis, spectrum = hessian_basis(20, 8)
    np.savez(tmp_path / "metric.npz", eigvecs=basis, eigvals=spectrum)
    folder = importlib.resources.files("latentopt_cmafamily.conf") / "optimizer"
    for name in registry.names("optimizers"):
        cfg = OmegaConf.load(str(folder / f"{name}.yaml"))
        if name == "hessian_cma":
            cfg.metric = str(tmp_path / "metric.npz")
        kwargs = {str(k): v for k, v in OmegaConf.to_container(cfg, resolve=True).items()}  # type: ignore[union-attr]
        assert kwargs.pop("name") == name
        population = kwargs.pop("population_size")  # the CLI draws this many initial codes
        optimizer = registry.build("optimizers", name, initial_codes(population), seed=0, **kwargs)
        assert optimizer.ask().shape == (population, 20)
        assert optimizer.provenance()["class"] == type(optimizer).__name__
