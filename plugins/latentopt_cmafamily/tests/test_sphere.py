"""SphereCMA: codes on the sphere, the angular schedule, spherical interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentopt_cmafamily.sphere import SphereCMA, slerp, step_angle


@pytest.mark.parametrize("schedule", ["exp", "inv"])
def test_schedule_decays_from_50_to_7_33_degrees_over_75_generations(schedule: str) -> None:
    degrees = [
        math.degrees(step_angle(g, start_deg=50, end_deg=7.33, generations=75, schedule=schedule)) for g in range(100)
    ]
    assert degrees[0] == pytest.approx(50) and degrees[74] == pytest.approx(7.33)
    assert degrees[99] == pytest.approx(7.33) and all(np.diff(degrees[:75]) < 0)


def test_inverse_schedule_drops_faster_early_than_exponential() -> None:
    mid = {s: step_angle(10, start_deg=50, end_deg=7.33, generations=75, schedule=s) for s in ("exp", "inv")}
    assert mid["inv"] < mid["exp"]


def test_codes_lie_on_the_sphere_at_the_scheduled_angle() -> None:
    optimizer = SphereCMA(np.random.default_rng(0).standard_normal((40, 4096)).astype(np.float32), seed=1)
    codes = optimizer.ask().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 300.0, rtol=1e-5)
    angles = np.degrees(np.arccos(codes @ optimizer.centre / 300.0))
    assert angles.mean() == pytest.approx(50.0, rel=0.02)


def test_centre_moves_past_the_projected_mean_by_the_learning_rate() -> None:
    optimizer = SphereCMA(np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32), mu=1)
    before = optimizer.centre.copy()
    codes = optimizer.ask()
    optimizer.tell(codes, np.arange(10.0))
    best = codes[9] / np.linalg.norm(codes[9])
    step, to_best = (np.arccos(np.clip(before @ v, -1, 1)) for v in (optimizer.centre, best))
    assert step == pytest.approx(1.5 * to_best, rel=1e-4)


def test_sphere_norm_none_uses_the_norm_of_the_initial_codes() -> None:
    codes = np.random.default_rng(3).standard_normal((40, 100)).astype(np.float32) * 0.5
    optimizer = SphereCMA(codes, sphere_norm=None)
    expected = np.linalg.norm(codes, axis=1).mean()
    np.testing.assert_allclose(np.linalg.norm(optimizer.ask(), axis=1), expected, rtol=1e-5)


def test_slerp_keeps_unit_norm() -> None:
    a, b = np.eye(3)[0], np.eye(3)[1]
    assert np.linalg.norm(slerp(a, b, 1.5)) == pytest.approx(1.0)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-12)
