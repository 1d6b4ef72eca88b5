"""Every optimizer of the plugin: shapes, seeding, NaN policies, exact resume, progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cmafamily_helpers import Factory, initial_codes, make_factory, npz_round_trip, torch_quadratic

from latentopt.optimizer import OptimizerError
from latentopt_cmafamily import OPTIMIZERS


def quadratic(codes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Negative squared distance to a hidden target: ``(n, d)`` -> ``(n,)``, maximum 0 at the target."""
    return -((codes.astype(np.float64) - target) ** 2).sum(1)


def run(optimizer, target: np.ndarray, generations: int) -> list[np.ndarray]:
    asked = []
    for _ in range(generations):
        codes = optimizer.ask()
        asked.append(codes)
        optimizer.tell(codes, quadratic(codes, target))
    return asked


def test_ask_shapes_and_counts(factory: Factory) -> None:
    optimizer = factory(initial_codes(12, 20))
    codes = optimizer.ask()
    assert codes.shape == (12, 20) and codes.dtype == np.float32
    optimizer.tell(codes, np.arange(12.0))
    assert (optimizer.generation, optimizer.evaluations) == (1, 12)
    best = optimizer.best
    assert best is not None and best[1] == 11.0 and np.array_equal(best[0], codes[11])


def test_same_seed_same_codes_other_seed_other_codes(factory: Factory) -> None:
    target = np.ones(20)
    runs = [run(factory(initial_codes(), seed=seed), target, 3) for seed in (5, 5, 6)]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    if not runs_are_deterministic(factory):  # gradient ascent draws nothing: every seed is the same run
        assert not np.array_equal(runs[0][-1], runs[2][-1])


def runs_are_deterministic(factory: Factory) -> bool:
    return bool(factory(initial_codes()).needs_white_box)


@pytest.mark.parametrize("nan_policy", ["worst", "drop"])
def test_nan_scores_are_handled(factory: Factory, nan_policy: str) -> None:
    optimizer = factory(initial_codes(), nan_policy=nan_policy)
    target = np.full(20, 0.5)
    for generation in range(4):
        codes = optimizer.ask()
        scores = quadratic(codes, target)
        scores[generation::3] = np.nan
        optimizer.tell(codes, scores)
        assert np.isfinite(optimizer.ask()).all()
        optimizer._pending = None  # discard that extra ask; the next loop asks again
    assert optimizer.nan_scores > 0 and optimizer.generation == 4


def test_all_nan_generation_changes_nothing(factory: Factory, tmp_path: Path) -> None:
    optimizer = factory(initial_codes())
    run(optimizer, np.ones(20), 2)
    codes = optimizer.ask()
    optimizer.tell(codes, np.full(codes.shape[0], np.nan))
    assert optimizer.generation == 2 and optimizer.evaluations == 3 * codes.shape[0]


def test_state_round_trip_mid_run_gives_identical_asks(factory: Factory, tmp_path: Path) -> None:
    target = np.linspace(-1, 1, 20)
    original = factory(initial_codes(), seed=3)
    run(original, target, 4)
    state = npz_round_trip(original.state_dict(), tmp_path / "state.npz")
    resumed = factory(initial_codes(), seed=3)
    resumed.load_state_dict(state)
    expected, got = run(original, target, 3), run(resumed, target, 3)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
    assert resumed.best is not None and original.best is not None and resumed.best[1] == original.best[1]


def test_state_round_trip_with_a_pending_ask(factory: Factory, tmp_path: Path) -> None:
    target = np.linspace(-1, 1, 20)
    original = factory(initial_codes(), seed=3)
    run(original, target, 2)
    pending = original.ask()
    resumed = factory(initial_codes(), seed=3)
    resumed.load_state_dict(npz_round_trip(original.state_dict(), tmp_path / "state.npz"))
    for optimizer in (original, resumed):
        optimizer.tell(pending, quadratic(pending, target))
    assert np.array_equal(original.ask(), resumed.ask())


def test_tell_without_ask_is_an_error(factory: Factory) -> None:
    optimizer = factory(initial_codes())
    with pytest.raises(OptimizerError):
        optimizer.tell(initial_codes(), np.zeros(12))


# (name, d, settings, generations, required fraction of the initial distance² removed)
PROGRESS = [
    ("sep_cma", 50, {"sigma0": 0.5}, 60, 0.95),
    ("cholesky_cma", 50, {"sigma0": 0.5}, 60, 0.95),
    ("hessian_cma", 50, {"sigma0": 0.5}, 60, 0.95),
    ("sphere_cma", 50, {"step_start_deg": 40.0, "step_end_deg": 3.0, "schedule_generations": 40}, 60, 0.9),
    ("nevergrad", 50, {"sigma0": 0.5}, 60, 0.9),
    ("gradient_ascent", 50, {"lr": 0.05}, 60, 0.95),
    ("sep_cma", 4096, {"sigma0": 0.3}, 30, 0.08),
    ("cholesky_cma", 4096, {"sigma0": 0.3}, 30, 0.08),
    (
        "sphere_cma",
        4096,
        {"step_start_deg": 20.0, "step_end_deg": 10.0, "schedule_generations": 30},
        30,
        0.08,
    ),
]


@pytest.mark.parametrize(("name", "dim", "settings", "generations", "fraction"), PROGRESS)
def test_raises_the_score_of_a_quadratic(
    name: str, dim: int, settings: dict, generations: int, fraction: float
) -> None:
    """Budget: ``generations × 40`` evaluations; the best code must close ``fraction`` of the gap
    between the target and the best code of the first generation."""
    rng = np.random.default_rng(11)
    target = rng.standard_normal(dim)
    if name == "sphere_cma":
        settings = {**settings, "sphere_norm": float(np.linalg.norm(target))}
    if name == "hessian_cma":
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        settings = {**settings, "eigvecs": basis, "eigvals": np.ones(dim)}
    start = rng.standard_normal((40, dim)).astype(np.float32) * 0.1
    optimizer = make_factory(name, **settings)(start, seed=0)
    if optimizer.needs_white_box:
        optimizer.attach_white_box(torch_quadratic(target))
    run(optimizer, target, 1)
    assert optimizer.best is not None
    first_gap = -optimizer.best[1]
    run(optimizer, target, generations - 1)
    assert -optimizer.best[1] <= (1 - fraction) * first_gap


def test_every_registered_optimizer_is_covered() -> None:
    assert {row[0] for row in PROGRESS} == set(OPTIMIZERS)


def test_latentopt_contract_checks_pass(name: str) -> None:
    """The core's own contract (``latentopt.testing.check_optimizer``), as plugin authors run it."""
    from latentopt.testing import check_optimizer, contract_kwargs

    check_optimizer(OPTIMIZERS[name], **contract_kwargs(OPTIMIZERS[name]))


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("sphere_cma", {"show_centre": True, "average_generations": 3, "first_generation": "initial"}),
        ("sphere_cma", {"show_centre": True, "average_generations": 3, "first_generation": "initial",
                        "mirrored": True}),
        ("cholesky_cma", {"show_centre": True}),
        ("cholesky_cma", {"show_centre": True, "average_generations": 3}),
        ("cholesky_cma", {"show_centre": True, "step_schedule": "exp", "sigma_end_ratio": 0.3,
                          "schedule_generations": 20}),
        ("sep_cma", {"show_centre": True}),
        ("sep_cma", {"step_schedule": "tpa", "active": True, "rates": "pycma"}),
        ("sep_cma", {"show_centre": True, "step_schedule": "tpa", "active": True}),
    ],
)
def test_the_contract_holds_with_the_shown_centre_and_its_average(name: str, extra: dict) -> None:
    """Issue 14's defaults (centre and average shown, initial codes first) keep seeding, NaN policies,
    exact state round trips and improvement."""
    from latentopt.testing import check_optimizer, contract_kwargs

    settings = contract_kwargs(OPTIMIZERS[name])
    check_optimizer(OPTIMIZERS[name], **{**settings, "kwargs": {**settings.get("kwargs", {}), **extra}})


@pytest.mark.parametrize("name", ["cholesky_cma", "sep_cma"])
def test_sigma0_null_is_the_factor_times_the_initial_codes_scale(name: str) -> None:
    """``sigma0: null`` (both shipped configs): σ0 = sigma0_factor x the codes' mean norm / √d
    (``_base.initial_step``)."""
    from latentopt.checks import ConfigError

    cls = OPTIMIZERS[name]
    codes = 0.5 * np.random.default_rng(4).standard_normal((40, 1386)).astype(np.float32)
    optimizer = cls(codes, sigma0=None, sigma0_factor=3.0)
    scale = np.linalg.norm(codes.astype(np.float64), axis=1).mean() / np.sqrt(1386)
    assert optimizer.sigma == pytest.approx(3.0 * scale) and optimizer.sigma == pytest.approx(1.5, rel=0.01)
    assert optimizer.provenance()["sigma0"] == pytest.approx(3.0 * scale)
    fc6 = cls(np.random.default_rng(5).standard_normal((40, 4096)).astype(np.float32), sigma0=None)
    assert fc6.sigma == pytest.approx(3.0, rel=0.01)  # Wang & Ponce's σ0 for fc6's N(0, 1) codes
    assert cls(codes, sigma0=0.7, sigma0_factor=9.0).sigma == 0.7  # a number fixes it
    with pytest.raises(ConfigError, match=r"optimizer\.sigma0"):
        cls(np.zeros((4, 8), np.float32), sigma0=None)
    with pytest.raises(ConfigError, match=r"optimizer\.sigma0_factor"):
        cls(codes, sigma0=None, sigma0_factor=float("nan"))
