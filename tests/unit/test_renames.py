"""Renamed config keys: a new config with an old key gets a one-line hint; a recorded config is migrated."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

import latentopt.plugins
from latentopt.optimizer import Optimizer
from latentopt.plugins import Component, default_registry
from latentopt.renames import migrate_renamed_keys, renamed_key_hint


def test_hint_names_the_new_key_only_for_a_renamed_key_of_that_group():
    assert renamed_key_hint("optimizers", "SepCMA.__init__() got an unexpected keyword argument 'sigma'") == \
        "optimizer.sigma was renamed optimizer.sigma0"
    assert renamed_key_hint("optimizers", "PycmaES.__init__() got an unexpected keyword argument 'centre'") == \
        "optimizer.centre was renamed optimizer.init_mean (mean is now codes)"
    assert renamed_key_hint("objectives", "SingleUnit.__init__() got an unexpected keyword argument 'unit'") == \
        "objective.unit was renamed objective.channel"
    assert renamed_key_hint("objectives", "got an unexpected keyword argument 'sigma'") is None
    assert renamed_key_hint("optimizers", "got an unexpected keyword argument 'typo'") is None
    assert renamed_key_hint("optimizers", "missing 1 required keyword-only argument: 'metric'") is None


def test_registry_build_error_carries_the_hint():
    with pytest.raises(latentopt.plugins.PluginError, match=r"^optimizer 'sep_cma': optimizer\.sigma was renamed "
                                                            r"optimizer\.sigma0$"):
        default_registry().build("optimizers", "sep_cma", np.zeros((4, 3), np.float32), sigma=1.0)


def _recorded() -> Any:
    return OmegaConf.create({
        "seed": 0,
        "optimizer": {"name": "cmaes", "population_size": 12, "sigma0": 0.5, "centre": "mean"},
        "objective": {"name": "single_unit", "unit": 2},
        "experiment": {"generations": 3, "threads": {
            "a": None,
            "b": {"optimizer": {"centre": "zero"}},  # merged over the top-level cmaes
            "c": {"optimizer": {"name": "sep_cma", "sigma": 0.2, "init_mean": "codes"},
                  "objective": {"name": "mean_units", "units": [0, 1]}},
        }},
    })


def test_recorded_config_is_migrated_to_the_new_keys_and_values():
    recorded = _recorded()
    migrated = migrate_renamed_keys(recorded)
    assert OmegaConf.to_container(migrated.optimizer) == {"name": "cmaes", "population_size": 12, "sigma0": 0.5,
                                                          "init_mean": "codes"}
    assert OmegaConf.to_container(migrated.objective) == {"name": "single_unit", "channel": 2}
    threads = migrated.experiment.threads
    assert OmegaConf.to_container(threads.b.optimizer) == {"init_mean": "zero"}
    assert OmegaConf.to_container(threads.c.optimizer) == {"name": "sep_cma", "init_mean": "codes", "sigma0": 0.2}
    assert OmegaConf.to_container(threads.c.objective) == {"name": "mean_units", "channels": [0, 1]}
    assert threads.a is None
    assert recorded == _recorded(), "the recorded config must not change"
    assert migrate_renamed_keys(migrated) == migrated, "a config with the new keys is left as it is"


class _OwnSigma(Optimizer):
    """A third-party optimizer whose own setting is still called ``sigma``."""

    def __init__(self, initial_codes: np.ndarray, *, seed: int = 0, sigma: float = 1.0) -> None:
        super().__init__(initial_codes, seed=seed)

    def _ask(self) -> np.ndarray: ...
    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None: ...
    def _state_dict(self) -> dict[str, Any]: ...
    def _load_state_dict(self, state: dict[str, Any]) -> None: ...


def test_a_component_that_takes_the_old_key_keeps_it(monkeypatch):
    registry = default_registry()
    registry.components["optimizers"]["own_sigma"] = Component("optimizers", "own_sigma", _OwnSigma, "test", "test")
    monkeypatch.setattr(latentopt.plugins, "default_registry", lambda: registry)
    cfg = OmegaConf.create({"optimizer": {"name": "own_sigma", "sigma": 0.3},
                            "objective": {"name": "nosuch", "unit": 1}})
    assert migrate_renamed_keys(cfg) == cfg  # and an unknown component is left to the build to report
