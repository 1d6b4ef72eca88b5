"""The NaN policies' exact semantics: what the update receives under ``worst``, ``drop`` and ``carry``,
an all-NaN generation leaving the optimizer as it was, and best-code tracking never picking a NaN."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from latentopt.builtins.optimizers import GeneticAlgorithm, PycmaES
from latentopt.optimizer import Optimizer, rng_state


class Recording(Optimizer):
    """Proposes a fixed population and records what its update is handed."""

    supported_nan_policies = ("worst", "drop", "carry")

    def __init__(self, initial_codes: np.ndarray, **kwargs: Any) -> None:
        super().__init__(initial_codes, **kwargs)
        self.codes = np.asarray(initial_codes, np.float32).copy()
        self.told: list[tuple[np.ndarray, np.ndarray]] = []

    def _ask(self) -> np.ndarray:
        return self.codes

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        self.told.append((codes.copy(), scores.copy()))

    def _state_dict(self) -> dict[str, Any]:
        return {"codes": self.codes}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        self.codes = np.asarray(state["codes"], np.float32)


CODES = np.arange(15, dtype=np.float32).reshape(5, 3)
SCORES = np.array([3.0, np.nan, -1.5, 5.0, np.nan])  # finite minimum -1.5, maximum 5


def _told_once(policy: str) -> tuple[np.ndarray, np.ndarray]:
    opt = Recording(CODES, nan_policy=policy)
    opt.tell(opt.ask(), SCORES)
    assert len(opt.told) == 1
    return opt.told[0]


def test_worst_replaces_nan_by_the_generations_finite_minimum():
    codes, scores = _told_once("worst")
    np.testing.assert_array_equal(codes, CODES)  # every code is told, in order
    np.testing.assert_array_equal(scores, [3.0, -1.5, -1.5, 5.0, -1.5])


def test_drop_leaves_the_nan_rows_out_of_the_update():
    codes, scores = _told_once("drop")
    np.testing.assert_array_equal(codes, CODES[[0, 2, 3]])
    np.testing.assert_array_equal(scores, [3.0, -1.5, 5.0])


def test_carry_hands_the_nan_scores_to_the_optimizer_itself():
    codes, scores = _told_once("carry")
    np.testing.assert_array_equal(codes, CODES)
    np.testing.assert_array_equal(np.isnan(scores), np.isnan(SCORES))
    np.testing.assert_array_equal(scores[~np.isnan(scores)], SCORES[~np.isnan(SCORES)])


def test_policies_count_nan_scores_and_evaluations():
    for policy in ("worst", "drop", "carry"):
        opt = Recording(CODES, nan_policy=policy)
        opt.tell(opt.ask(), SCORES)
        assert (opt.evaluations, opt.nan_scores, opt.generation) == (5, 2, 1), policy


def _ga(policy: str, n: int = 12, n_elite: int = 3, seed: int = 0) -> tuple[GeneticAlgorithm, np.ndarray]:
    codes = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    return GeneticAlgorithm(codes, seed=seed, n_elite=n_elite, nan_policy=policy), codes


def test_ga_worst_never_keeps_a_nan_scored_code_as_elite():
    """The NaN rows come first and would tie with the best if NaN were scored as the best."""
    ga, _ = _ga("worst")
    asked = ga.ask()
    scores = np.arange(12, dtype=float)
    scores[[0, 1]] = np.nan
    ga.tell(asked, scores)
    nxt = ga.ask()
    np.testing.assert_array_equal(nxt[:3], asked[[11, 10, 9]])
    for row in nxt:
        assert not any(np.array_equal(row, asked[k]) for k in (0, 1)), "a NaN-scored code survived unchanged"


def test_ga_drop_never_keeps_a_nan_scored_code_and_keeps_its_size():
    ga, _ = _ga("drop")
    asked = ga.ask()
    scores = np.arange(12, dtype=float)
    scores[[0, 11]] = np.nan
    ga.tell(asked, scores)
    nxt = ga.ask()
    assert nxt.shape == asked.shape
    np.testing.assert_array_equal(nxt[:3], asked[[10, 9, 8]])


def test_ga_carry_puts_nan_scored_codes_unchanged_after_the_elites():
    ga, _ = _ga("carry")
    asked = ga.ask()
    scores = np.arange(12, dtype=float)
    scores[[2, 11, 5]] = np.nan
    ga.tell(asked, scores)
    nxt = ga.ask()
    assert nxt.shape == asked.shape
    np.testing.assert_array_equal(nxt[:3], asked[[10, 9, 8]])  # elites: best finite scores
    np.testing.assert_array_equal(nxt[3:6], asked[[2, 5, 11]])  # carried, unchanged, in asked order


def _impl_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_impl_equal(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(a == b)


@pytest.mark.parametrize("policy", ["worst", "drop", "carry"])
def test_all_nan_generation_leaves_the_ga_as_it_was(policy):
    ga, _ = _ga(policy)
    first = ga.ask()
    ga.tell(first, np.arange(12, dtype=float))
    asked = ga.ask()
    before = ga.state_dict()
    ga.tell(asked, np.full(12, np.nan))
    after = ga.state_dict()
    for key in ("generation", "rng", "best", "impl"):
        assert _impl_equal(before[key], after[key]), key
    assert (after["evaluations"], after["nan_scores"]) == (before["evaluations"] + 12, 12)
    np.testing.assert_array_equal(ga.ask(), asked)  # the same generation is proposed again


@pytest.mark.parametrize("policy", ["worst", "drop"])
def test_all_nan_generation_leaves_cma_as_it_was(policy):
    opt = PycmaES(np.zeros((8, 5), np.float32), seed=0, sigma0=0.7, diagonal=True, nan_policy=policy)
    codes = opt.ask()
    opt.tell(codes, -np.square(codes).sum(1).astype(float))
    asked = opt.ask()
    mean, sigma, count, rng = opt.es.mean.copy(), opt.sigma, opt.es.countiter, rng_state(opt.rng)
    opt.tell(asked, np.full(8, np.nan))
    assert opt.generation == 1 and opt.es.countiter == count and opt.sigma == sigma
    np.testing.assert_array_equal(opt.es.mean, mean)
    assert rng_state(opt.rng) == rng
    assert np.isfinite(opt.ask()).all()


def test_best_tracking_never_picks_a_nan():
    opt = Recording(CODES, nan_policy="worst")
    scores = np.array([np.nan, 2.0, np.nan, 7.0, 1.0])  # a NaN first, where argmax would stop
    opt.tell(opt.ask(), scores)
    assert opt.best is not None
    code, score = opt.best
    assert score == 7.0
    np.testing.assert_array_equal(code, CODES[3])
    opt.tell(opt.ask(), np.array([np.nan, 1.0, np.nan, np.nan, 0.0]))  # lower: the best stays
    opt.tell(opt.ask(), np.full(5, np.nan))
    code, score = opt.best
    assert score == 7.0
    np.testing.assert_array_equal(code, CODES[3])


def test_best_under_worst_is_the_raw_score_not_the_replacement():
    """The replacement for NaN is the generation's minimum: it must never become the best either."""
    opt = Recording(CODES, nan_policy="worst")
    opt.tell(opt.ask(), np.array([np.nan, -3.0, -5.0, np.nan, -4.0]))
    assert opt.best is not None
    code, score = opt.best
    assert score == -3.0
    np.testing.assert_array_equal(code, CODES[1])
