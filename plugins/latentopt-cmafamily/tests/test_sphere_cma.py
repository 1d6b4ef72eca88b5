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
    optimizer = SphereCMA(codes, sphere_norm=None, sphere_norm_factor=4.7)
    expected = 4.7 * np.linalg.norm(codes, axis=1).mean()
    np.testing.assert_allclose(np.linalg.norm(optimizer.ask(), axis=1), expected, rtol=1e-5)


def test_slerp_keeps_unit_norm() -> None:
    a, b = np.eye(3)[0], np.eye(3)[1]
    assert np.linalg.norm(slerp(a, b, 1.5)) == pytest.approx(1.0)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-12)


def test_show_centre_makes_the_centre_the_first_code_scored_but_not_recombined() -> None:
    initial = np.random.default_rng(4).standard_normal((12, 64)).astype(np.float32)
    shown, hidden = SphereCMA(initial, seed=2, show_centre=True), SphereCMA(initial, seed=2)
    codes = shown.ask().astype(np.float64)
    np.testing.assert_allclose(codes[0], 300.0 * shown.centre, rtol=1e-6)
    angles = np.degrees(np.arccos(np.clip(codes[1:] @ shown.centre / 300.0, -1, 1)))
    assert angles.min() > 10.0  # the other 11 are samples at the scheduled 50°
    assert hidden.ask().shape == codes.shape  # λ is unchanged: the centre replaces one sample
    # the centre's score does not enter the update: telling it (even as the best) or not gives the same centre
    twin = SphereCMA(initial, seed=2, show_centre=True, nan_policy="drop")
    twin_codes = twin.ask()
    scores = np.random.default_rng(1).standard_normal(12)
    scores[0] = 100.0
    shown.tell(codes.astype(np.float32), scores)
    twin.tell(twin_codes, np.concatenate([[np.nan], scores[1:]]))  # the centre's row dropped
    np.testing.assert_allclose(shown.centre, twin.centre, atol=1e-12)
    assert shown.provenance()["show_centre"] is True


def test_show_centre_must_be_a_boolean() -> None:
    from latentopt.checks import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer\.show_centre"):
        SphereCMA(np.ones((4, 8), np.float32), show_centre="yes")  # type: ignore[arg-type]


def test_average_generations_shows_the_mean_of_the_last_k_centres_on_the_sphere() -> None:
    rng = np.random.default_rng(5)
    optimizer = SphereCMA(rng.standard_normal((10, 32)).astype(np.float32), seed=3, show_centre=True,
                          average_generations=3, sphere_norm=7.0)
    centres = []
    for _ in range(5):
        codes = optimizer.ask()
        optimizer.tell(codes, rng.standard_normal(10))
        centres.append(optimizer.centre.copy())
    codes = optimizer.ask().astype(np.float64)
    expected = np.mean(centres[-3:], axis=0)
    np.testing.assert_allclose(codes[1], 7.0 * expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codes[0], 7.0 * optimizer.centre, rtol=1e-5, atol=1e-6)
    # the window survives a state round trip: the restored optimizer asks the same codes
    restored = SphereCMA(np.zeros((10, 32), np.float32) + 1, seed=0, show_centre=True, average_generations=3,
                         sphere_norm=7.0)
    optimizer_state = optimizer.state_dict()
    restored.load_state_dict(optimizer_state)
    np.testing.assert_array_equal(restored.ask(), optimizer.ask())


def test_average_generations_needs_show_centre_and_a_count() -> None:
    from latentopt.checks import ConfigError

    codes = np.ones((6, 8), np.float32)
    with pytest.raises(ConfigError, match="show_centre"):
        SphereCMA(codes, average_generations=4)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match=r"optimizer\.average_generations"):
            SphereCMA(codes, show_centre=True, average_generations=bad)  # type: ignore[arg-type]
    first = SphereCMA(codes, show_centre=True, average_generations=4).ask()  # no centre told yet: all samples
    assert first.shape == (6, 8)


def test_first_generation_initial_shows_the_initial_codes_and_jumps_to_their_weighted_mean() -> None:
    from latentopt_cmafamily._base import ranked_parents

    initial = np.random.default_rng(6).standard_normal((10, 48)).astype(np.float32)
    optimizer = SphereCMA(initial, seed=0, sphere_norm=5.0, first_generation="initial", show_centre=True)
    codes = optimizer.ask().astype(np.float64)
    unit = initial / np.linalg.norm(initial, axis=1, keepdims=True)
    np.testing.assert_allclose(codes, 5.0 * unit, rtol=1e-5, atol=1e-6)  # no centre shown before a centre exists
    scores = np.random.default_rng(2).standard_normal(10)
    optimizer.tell(codes.astype(np.float32), scores)
    order, weights = ranked_parents(scores, 5)
    target = weights @ codes[order]
    np.testing.assert_allclose(optimizer.centre, target / np.linalg.norm(target), atol=1e-6)
    later = optimizer.ask().astype(np.float64)  # then the usual: the centre, and samples at the scheduled angle
    np.testing.assert_allclose(later[0], 5.0 * optimizer.centre, rtol=1e-5, atol=1e-6)
    assert optimizer.state_dict()["impl"]["family"]["initial"].shape == (0, 48)  # no longer kept once used
    from latentopt.checks import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer\.first_generation"):
        SphereCMA(initial, first_generation="uniform")


@pytest.mark.parametrize("name", ["sep_cma", "cholesky_cma"])
def test_show_centre_in_the_cma_es_shows_the_mean_scored_but_not_recombined(name: str) -> None:
    from latentopt_cmafamily import OPTIMIZERS

    initial = np.random.default_rng(7).standard_normal((10, 30)).astype(np.float32)
    shown = OPTIMIZERS[name](initial, seed=4, show_centre=True, init_mean="codes", sigma0=0.5)
    twin = OPTIMIZERS[name](initial, seed=4, show_centre=True, init_mean="codes", sigma0=0.5, nan_policy="drop")
    codes, twin_codes = shown.ask(), twin.ask()
    np.testing.assert_allclose(codes[0], initial.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    scores = np.random.default_rng(8).standard_normal(10)
    scores[0] = 50.0  # the mean as the best code: still not a parent
    shown.tell(codes, scores)
    twin.tell(twin_codes, np.concatenate([[np.nan], scores[1:]]))
    np.testing.assert_allclose(shown.ask(), twin.ask(), rtol=1e-6, atol=1e-6)
    assert shown.provenance()["show_centre"] is True
    plain = OPTIMIZERS[name](initial, seed=4, init_mean="codes", sigma0=0.5).ask()
    np.testing.assert_allclose(plain[1:], codes[1:], rtol=1e-6)  # the same samples besides the mean


def test_schedule_over_the_run_takes_the_planned_generations_once_and_keeps_them_in_the_state() -> None:
    initial = np.random.default_rng(9).standard_normal((8, 16)).astype(np.float32)
    optimizer = SphereCMA(initial, schedule_generations=None, sphere_norm=3.0)
    assert optimizer.schedule_generations == 75  # never told: the paper's length
    optimizer.plan_generations(12)
    assert optimizer.schedule_generations == 12
    for _ in range(11):
        optimizer.tell(optimizer.ask(), np.arange(8.0))
    assert optimizer.step_deg == pytest.approx(7.33)  # the end angle at the 12th generation
    optimizer.plan_generations(99)  # too late: the run has started
    assert optimizer.schedule_generations == 12
    resumed = SphereCMA(initial, schedule_generations=None, sphere_norm=3.0)
    resumed.load_state_dict(optimizer.state_dict())
    assert resumed.schedule_generations == 12 and resumed.step_deg == pytest.approx(7.33)
    fixed = SphereCMA(initial, schedule_generations=20)
    fixed.plan_generations(12)
    assert fixed.schedule_generations == 20
    from latentopt.checks import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer\.schedule_generations"):
        SphereCMA(initial, schedule_generations=2.5)  # type: ignore[arg-type]


def test_settings_that_leave_no_sphere_are_refused_naming_the_key() -> None:
    from latentopt.checks import ConfigError

    codes = np.random.default_rng(0).standard_normal((6, 5))
    for kwargs, key in (({"sphere_norm": 0.0}, "sphere_norm"), ({"sphere_norm": None, "sphere_norm_factor": 0.0},
                                                                  "sphere_norm_factor"),
                        ({"step_start_deg": 0.0}, "step_start_deg"), ({"step_end_deg": -1.0}, "step_end_deg"),
                        ({"schedule_generations": 0}, "schedule_generations")):
        with pytest.raises(ConfigError, match=rf"optimizer\.{key} must be"):
            SphereCMA(codes, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"optimizer\.sphere_norm: the initial codes have norm 0"):
        SphereCMA(np.zeros((6, 5)), sphere_norm=None)


@pytest.mark.parametrize("n", [9, 10])
def test_mirrored_samples_come_in_pairs_about_the_centre_after_the_shown_codes(n: int) -> None:
    rng = np.random.default_rng(6)
    optimizer = SphereCMA(rng.standard_normal((n, 48)).astype(np.float32), seed=1, sphere_norm=3.0,
                          show_centre=True, average_generations=2, mirrored=True)
    optimizer.tell(codes := optimizer.ask(), -np.linalg.norm(codes - 1, axis=1))
    codes = optimizer.ask().astype(np.float64) / 3.0
    np.testing.assert_allclose(codes[0], optimizer.centre, atol=1e-6)  # shown codes first, unmirrored
    samples = codes[2:]
    np.testing.assert_allclose(np.linalg.norm(samples, axis=1), 1.0, rtol=1e-5)
    # the log map at the centre: sample k and its mirror have opposite tangents of the same angle
    cosines = samples @ optimizer.centre
    tangents = samples - np.outer(cosines, optimizer.centre)
    half = (samples.shape[0] + 1) // 2
    pairs = samples.shape[0] - half
    np.testing.assert_allclose(cosines[half:], cosines[:pairs], atol=1e-6)
    np.testing.assert_allclose(tangents[half:], -tangents[:pairs], atol=1e-6)
    assert not np.allclose(tangents[0], tangents[1], atol=1e-3)
    assert optimizer.provenance()["mirrored"] is True
    from latentopt.checks import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer\.mirrored"):
        SphereCMA(np.ones((4, 8), np.float32), mirrored="yes")  # type: ignore[arg-type]


def test_mirrored_off_keeps_the_random_stream_of_unmirrored_runs() -> None:
    """Mirroring is opt-in; without it the codes do not depend on whether shown codes replace samples."""
    initial = np.random.default_rng(7).standard_normal((8, 24)).astype(np.float32)
    plain, shown = SphereCMA(initial, seed=3), SphereCMA(initial, seed=3, show_centre=True)
    for _ in range(3):
        a, b = plain.ask(), shown.ask()
        np.testing.assert_array_equal(a[1:], b[1:])  # the same draws; row 0 is the centre when shown
        plain.tell(a, -np.linalg.norm(a, axis=1))
        shown.tell(a, -np.linalg.norm(a, axis=1))
        shown.centre = plain.centre.copy()


def test_cholesky_average_generations_shows_the_mean_of_the_last_k_means_scored_but_not_recombined() -> None:
    from latentopt.checks import ConfigError
    from latentopt_cmafamily import OPTIMIZERS

    initial = np.random.default_rng(11).standard_normal((10, 30)).astype(np.float32)
    settings = {"seed": 4, "show_centre": True, "init_mean": "codes", "sigma0": 0.5, "average_generations": 3}
    shown, twin = OPTIMIZERS["cholesky_cma"](initial, **settings), OPTIMIZERS["cholesky_cma"](initial, **settings,
                                                                                               nan_policy="drop")
    rng, means = np.random.default_rng(12), []
    for generation in range(4):
        codes, twin_codes = shown.ask(), twin.ask()
        np.testing.assert_allclose(codes, twin_codes)
        scores, shown_rows = rng.standard_normal(10), 1 if generation == 0 else 2  # no average before an update
        scores[:shown_rows] = 50.0  # the mean and the average as the best codes: still not parents
        shown.tell(codes, scores)
        twin.tell(twin_codes, np.where(np.arange(10) < shown_rows, np.nan, scores))
        means.append(shown.core.mean.copy())
    codes = shown.ask().astype(np.float64)
    np.testing.assert_allclose(codes[0], means[-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codes[1], np.mean(means[-3:], axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codes, twin.ask(), rtol=1e-6, atol=1e-6)
    restored = OPTIMIZERS["cholesky_cma"](initial * 0 + 1, **settings)
    restored.load_state_dict(shown.state_dict())
    np.testing.assert_array_equal(restored.ask(), shown.ask())
    assert shown.provenance()["average_generations"] == 3
    with pytest.raises(ConfigError, match="show_centre"):
        OPTIMIZERS["cholesky_cma"](initial, average_generations=2)
