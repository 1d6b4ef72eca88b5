"""The nevergrad bridge: resolution is recorded, hidden errors are raised, replay resumes exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cmafamily_helpers import initial_codes, npz_round_trip

from latentopt.optimizer import OptimizerError
from latentopt_cmafamily.ng_bridge import NevergradOptimizer


def generation(optimizer: NevergradOptimizer, target: float = 1.0) -> np.ndarray:
    codes = optimizer.ask()
    optimizer.tell(codes, -((codes - target) ** 2).sum(1))
    return codes


def test_records_version_and_resolved_sub_optimizer() -> None:
    optimizer = NevergradOptimizer(initial_codes(40, 30), ng_name="NGOpt", budget=3000)
    settings = optimizer.provenance()
    assert settings["nevergrad"] and settings["resolved"].startswith("NGOpt -> ")
    assert NevergradOptimizer(initial_codes(), ng_name="DiagonalCMA").resolved().startswith("DiagonalCMA")


def test_pycma_population_is_recorded_before_the_first_ask() -> None:
    # run provenance is written before generation 0: the record must already say what pycma will use
    optimizer = NevergradOptimizer(initial_codes(40, 4096), ng_name="CMA", budget=3000)
    before = optimizer.provenance()["resolved"]
    assert "popsize 70" in before and "'diagonal': True" in before
    with pytest.raises(OptimizerError):  # this resolution fails at d = 4096 (see the test below)
        for _ in range(10):
            generation(optimizer)
    assert optimizer.resolved() == before


def test_unknown_name_suggests_the_right_case() -> None:
    with pytest.raises(ValueError, match="did you mean DiagonalCMA"):
        NevergradOptimizer(initial_codes(), ng_name="diagonalcma")


def test_meta_optimizer_without_budget_is_a_clear_error() -> None:
    with pytest.raises(OptimizerError, match="could not choose a sub-optimizer"):
        NevergradOptimizer(initial_codes(), ng_name="NGOpt")


def test_cma_population_mismatch_is_surfaced_with_the_resolved_optimizer() -> None:
    """nevergrad 1.0's "CMA" at d=4096, budget 3000, 40 workers resolves to an elitist diagonal pycma
    of population 70 with TPA: pycma's tell fails ("once per iteration", hidden by nevergrad) and then
    its ask ("Mean shift samples are expected but missing"). Either must stop the run."""
    optimizer = NevergradOptimizer(initial_codes(40, 4096), ng_name="CMA", budget=3000)
    with pytest.raises(OptimizerError, match=r"(?s)popsize 70.*(once per iteration|Mean shift).*DiagonalCMA"):
        for _ in range(10):
            generation(optimizer)


def test_errors_nevergrad_swallows_in_pycma_tell_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import cma

    def broken_tell(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("pycma could not update")

    monkeypatch.setattr(cma.CMAEvolutionStrategy, "tell", broken_tell)
    optimizer = NevergradOptimizer(initial_codes(), ng_name="DiagonalCMA")
    with pytest.raises(OptimizerError, match=r"hid an error.*pycma could not update"):
        generation(optimizer)


def test_drop_policy_tells_only_scored_candidates(tmp_path: Path) -> None:
    optimizer = NevergradOptimizer(initial_codes(), ng_name="OnePlusOne", nan_policy="drop", seed=2)
    codes = optimizer.ask()
    scores = -((codes - 1.0) ** 2).sum(1)
    scores[[1, 4]] = np.nan
    optimizer.tell(codes, scores)
    assert optimizer._ng.num_tell == 10
    resumed = NevergradOptimizer(initial_codes(), ng_name="OnePlusOne", nan_policy="drop", seed=2)
    resumed.load_state_dict(npz_round_trip(optimizer.state_dict(), tmp_path / "s.npz"))
    assert resumed._ng.num_tell == 10 and np.array_equal(resumed.ask(), optimizer.ask())


def test_told_codes_must_be_the_asked_ones() -> None:
    optimizer = NevergradOptimizer(initial_codes(), ng_name="DiagonalCMA")
    codes = optimizer.ask()
    with pytest.raises(OptimizerError, match="not one of the codes asked"):
        optimizer.tell(codes + 1, np.zeros(12))


def test_replay_that_diverges_raises(tmp_path: Path) -> None:
    optimizer = NevergradOptimizer(initial_codes(), ng_name="DiagonalCMA", seed=1)
    generation(optimizer)
    state = npz_round_trip(optimizer.state_dict(), tmp_path / "s.npz")
    state["impl"]["seed"] = 2  # as if nevergrad drew differently from the same seed
    with pytest.raises(OptimizerError, match="diverged at generation 0"):
        NevergradOptimizer(initial_codes(), ng_name="DiagonalCMA", seed=1).load_state_dict(state)
