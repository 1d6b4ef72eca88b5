"""The optimizer base class's own fields of a recorded state: a damaged one is one OptimizerError naming the
field, and the optimizer is left exactly as it was (every registered optimizer goes through this code)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from latentopt.builtins.optimizers import GeneticAlgorithm
from latentopt.optimizer import OptimizerError


def _ga() -> GeneticAlgorithm:
    codes = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    ga = GeneticAlgorithm(codes, seed=1, n_elite=2)
    for _ in range(2):
        asked = ga.ask()
        ga.tell(asked, -np.sum(asked**2, axis=1))
    return ga


def _spoil(state: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spoiled = copy.deepcopy(state)
    node = spoiled
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spoiled


SPOILED = [
    (("generation",), KeyError, "no field 'generation'"),
    (("generation",), "abc", "malformed"),
    (("evaluations",), -5, "evaluations must be a non-negative integer"),
    (("nan_scores",), 2.5, "nan_scores must be a non-negative integer"),
    (("rng",), KeyError, "no field 'rng'"),
    (("rng", "state"), "not a number", "malformed"),
    (("rng", "bit_generator"), "MT19937", "malformed"),
    (("pending",), np.zeros((4, 3)), "pending must be numeric codes of dimension 5"),
    (("best", "code"), np.array(["a"] * 5), "best.code must be numeric codes of dimension 5"),
    (("best", "code"), np.zeros((2, 5)), "best.code must be numeric codes"),
    (("impl",), KeyError, "no field 'impl'"),
    (("impl", "codes"), KeyError, "GeneticAlgorithm has no field 'codes'"),
]


@pytest.mark.parametrize(("path", "value", "message"), SPOILED,
                         ids=[f"{'.'.join(p)}={v!r}"[:40] for p, v, _ in SPOILED])
def test_damaged_state_is_one_error_and_changes_nothing(path: tuple[str, ...], value: Any, message: str) -> None:
    ga = _ga()
    good = ga.state_dict()
    target = _ga()
    target_before = copy.deepcopy(target.state_dict())
    with pytest.raises(OptimizerError, match=message) as caught:
        target.load_state_dict(_spoil(good, path, value))
    assert "\n" not in str(caught.value)
    after = target.state_dict()
    assert after["generation"] == target_before["generation"] and after["rng"] == target_before["rng"]
    np.testing.assert_array_equal(after["impl"]["codes"], target_before["impl"]["codes"])
    np.testing.assert_array_equal(target.ask(), _ga().ask())  # still proposes what it would have


def test_good_state_still_round_trips() -> None:
    ga, fresh = _ga(), GeneticAlgorithm(np.zeros((8, 5), np.float32), seed=9, n_elite=2)
    fresh.load_state_dict(ga.state_dict())
    np.testing.assert_array_equal(fresh.ask(), ga.ask())
    assert fresh.generation == ga.generation and fresh.evaluations == ga.evaluations
