"""Cholesky CMA-ES: the factored rank-one updates equal the dense formulas of Wang & Ponce."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentopt_cmafamily.cholesky import CholeskyCMA, CholeskyCore


def test_factored_updates_match_the_dense_covariance_update() -> None:
    rng = np.random.default_rng(0)
    core = CholeskyCore(np.zeros(8), sigma0=1.0, mu=5, a_update_every=1)
    target = rng.standard_normal(8) * 3
    for _ in range(40):
        before = core.factor.dense()
        points = core.sample(rng, 10)
        core.update(points, -((points - target) ** 2).sum(1))
        after, inverse = core.factor.dense(), core.inverse.dense()
        expected = (1 - core.c1) * before.T @ before + core.c1 * np.outer(core.pc, core.pc)
        np.testing.assert_allclose(after.T @ after, expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(after @ inverse, np.eye(8), atol=1e-9)
    assert core.factor.rank == 40


def test_factor_is_updated_every_tenth_generation_only() -> None:
    codes = np.random.default_rng(1).standard_normal((40, 30)).astype(np.float32)
    optimizer = CholeskyCMA(codes, seed=0)
    for generation in range(1, 26):
        batch = optimizer.ask()
        optimizer.tell(batch, -np.abs(batch - 1.0).sum(1))
        assert optimizer.core.factor.rank == generation // 10


def test_paper_defaults_are_resolved() -> None:
    optimizer = CholeskyCMA(np.zeros((40, 4096), np.float32))
    settings = optimizer.provenance()
    assert (settings["population_size"], settings["mu"], settings["sigma0"]) == (40, 20, 3.0)
    assert settings["a_update_every"] == 10 and settings["init_mean"] == "zero"
    assert np.array_equal(optimizer.core.mean, np.zeros(4096))


def test_init_mean_codes_starts_at_their_mean() -> None:
    codes = np.random.default_rng(2).standard_normal((40, 16)).astype(np.float32) + 5
    optimizer = CholeskyCMA(codes, init_mean="codes", sigma0=1e-3)
    np.testing.assert_allclose(optimizer.ask().mean(0), codes.mean(0), atol=1e-2)


def test_exp_schedule_decays_sigma_geometrically_over_the_planned_run_and_resumes() -> None:
    import pytest

    from latentopt.checks import ConfigError

    codes = np.random.default_rng(3).standard_normal((10, 12)).astype(np.float32)
    optimizer = CholeskyCMA(codes, sigma0=2.0, step_schedule="exp", sigma_end_ratio=0.25)
    assert optimizer.core.schedule_generations == 75  # never told: the paper's length
    optimizer.plan_generations(9)
    sigmas = [optimizer.sigma]
    for generation in range(12):
        batch = optimizer.ask()
        optimizer.tell(batch, -np.abs(batch).sum(1))
        sigmas.append(optimizer.sigma)
        if generation == 4:
            state = optimizer.state_dict()
    # generation g is sampled at σ0 r^(g/(T-1)): the 9th (g = 8) and every later one at σ0 r
    np.testing.assert_allclose(sigmas[:9], 2.0 * 0.25 ** (np.arange(9) / 8), rtol=1e-12)
    np.testing.assert_allclose(sigmas[9:], 0.5, rtol=1e-12)
    optimizer.plan_generations(50)  # too late: the run has started
    assert optimizer.core.schedule_generations == 9
    resumed = CholeskyCMA(codes, sigma0=2.0, step_schedule="exp", sigma_end_ratio=0.25)
    resumed.load_state_dict(state)
    assert resumed.core.schedule_generations == 9 and resumed.sigma == pytest.approx(sigmas[5])
    assert resumed.provenance()["sigma_end_ratio"] == 0.25
    csa = CholeskyCMA(codes, sigma0=2.0)
    csa.plan_generations(9)
    assert "sigma_end_ratio" not in csa.provenance() and csa.provenance()["step_schedule"] == "csa"
    for bad, key in (({"step_schedule": "cosine"}, "step_schedule"), ({"sigma_end_ratio": 0.0}, "sigma_end_ratio"),
                     ({"schedule_generations": 0}, "schedule_generations")):
        settings: dict[str, Any] = {"step_schedule": "exp", "sigma_end_ratio": 0.5, **bad}
        with pytest.raises(ConfigError, match=rf"optimizer\.{key}"):
            CholeskyCMA(codes, **settings)


def test_the_shipped_config_is_the_benchmarked_preset_on_the_offline_generators_codes() -> None:
    """cholesky_cma.yaml (the default optimizer before sep_cma) on Fourier codes of scale 0.5 is
    bench_cholesky_cma (σ0 1.5, centred on the codes' mean, mean shown) up to the codes' sampled scale."""
    from pathlib import Path

    import yaml

    import latentopt_cmafamily

    node = yaml.safe_load((Path(latentopt_cmafamily.__file__).parent / "conf/optimizer/cholesky_cma.yaml").read_text())
    assert node.pop("name") == "cholesky_cma"
    codes = 0.5 * np.random.default_rng(6).standard_normal((40, 1386)).astype(np.float32)
    shipped = CholeskyCMA(codes, seed=1, **node)
    bench = CholeskyCMA(codes, seed=1, **{**node, "sigma0": 1.5})
    assert abs(shipped.sigma - 1.5) < 0.015 and shipped.show_centre and shipped.init_mean == "codes"
    np.testing.assert_allclose(shipped.ask()[0], bench.ask()[0])  # the same shown mean
