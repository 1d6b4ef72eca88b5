"""sep-CMA-ES: the fixed geometric step-size schedule (``step_schedule="exp"``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cmafamily_helpers import initial_codes, npz_round_trip

from latentopt_cmafamily._base import recombination_weights
from latentopt_cmafamily.sep import SepCMA


def _tell(optimizer: SepCMA, rng: np.random.Generator) -> None:
    codes = optimizer.ask()
    optimizer.tell(codes, np.asarray(rng.standard_normal(codes.shape[0])))


def test_exp_schedule_decays_sigma_geometrically_then_holds():
    optimizer = SepCMA(initial_codes(12, 30), sigma0=2.0, step_schedule="exp", sigma_end_ratio=0.1,
                       schedule_generations=11)
    rng = np.random.default_rng(0)
    sigmas = [optimizer.sigma]
    for _ in range(15):
        _tell(optimizer, rng)
        sigmas.append(optimizer.sigma)
    np.testing.assert_allclose(sigmas[:11], 2.0 * 0.1 ** (np.arange(11) / 10))
    assert sigmas[10:] == pytest.approx([0.2] * 6)
    assert optimizer.provenance()["step_schedule"] == "exp"


def test_csa_keeps_sigma_high_under_random_selection_where_exp_decays():
    """Scores unrelated to the codes (pure noise): CSA sees no signal and leaves σ near σ0."""
    rng = np.random.default_rng(1)
    csa = SepCMA(initial_codes(40, 1386), sigma0=1.5, seed=2)
    exp = SepCMA(initial_codes(40, 1386), sigma0=1.5, seed=2, step_schedule="exp")
    for _ in range(75):
        _tell(csa, rng)
        _tell(exp, rng)
    assert csa.sigma > 0.6 * 1.5  # ~0.8 sigma0 after 75 generations of random selection
    assert exp.sigma == pytest.approx(1.5 * 7.33 / 50)


@pytest.mark.parametrize("settings", [
    {"step_schedule": "exp", "schedule_generations": 8},
    {"step_schedule": "tpa", "active": True, "rates": "pycma"},  # the line's shift and tpa's s are state too
])
def test_resumes_exactly_mid_run(tmp_path, settings):
    settings = {"sigma0": 1.0, "seed": 3, **settings}
    rng = np.random.default_rng(4)
    first = SepCMA(initial_codes(12, 30), **settings)
    for _ in range(4):
        _tell(first, rng)
    resumed = SepCMA(initial_codes(12, 30), **settings)
    resumed.load_state_dict(npz_round_trip(first.state_dict(), tmp_path / "state.npz"))
    for row in np.random.default_rng(5).standard_normal((6, 12)):
        a, b = first.ask(), resumed.ask()
        np.testing.assert_array_equal(a, b)
        first.tell(a, row)
        resumed.tell(b, row)
    assert first.sigma == resumed.sigma and first.tpa_s == resumed.tpa_s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_schedule": "linear"}, "step_schedule must be one of"),
        ({"sigma_end_ratio": 0.0}, "sigma_end_ratio must be > 0"),
        ({"schedule_generations": 0}, "schedule_generations >= 1"),
    ],
)
def test_bad_schedule_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SepCMA(initial_codes(), **kwargs)


# --- two-point step-size adaptation, active weights and pycma's rates: checked against pycma 4 itself ---

PYCMA_LIKE: dict[str, Any] = {"step_schedule": "tpa", "active": True, "rates": "pycma"}


def _pycma(dim: int, popsize: int = 40, sigma0: float = 1.0, mean: np.ndarray | None = None, seed: int = 1):
    cma = pytest.importorskip("cma")
    x0 = np.zeros(dim) if mean is None else mean
    return cma.CMAEvolutionStrategy(x0, sigma0, {
        "popsize": popsize, "CMA_diagonal": True, "verbose": -9, "verb_log": 0, "seed": seed, "tolfun": 0,
        "tolx": 0, "tolflatfitness": int(1e9), "tolstagnation": int(1e9)})


@pytest.mark.parametrize("dim", [400, 1386, 4096])
def test_pycma_settings_are_pycmas_own_numbers(dim):
    """Rates, the two-point damping and the negative weights equal what pycma computes for the same d, λ."""
    es = _pycma(dim)
    ours = SepCMA(np.zeros((40, dim), np.float32), **PYCMA_LIKE)
    assert type(es.adapt_sigma).__name__ == "CMAAdaptSigmaTPA"  # pycma's own choice for d >= 300
    assert ours.c1 == pytest.approx(es.sp.c1_sep, rel=1e-12)
    assert ours.cmu == pytest.approx(es.sp.cmu_sep, rel=1e-12)
    assert ours.cc == pytest.approx(es.sp.cc_sep, rel=1e-12)
    assert ours.tpa_damping == pytest.approx(es.adapt_sigma.sp.damp, rel=1e-12)
    scores = np.arange(40.0)[::-1]  # code i ranks i + 1
    rows, weights = ours._covariance_weights(scores, np.arange(20), recombination_weights(20))
    np.testing.assert_array_equal(rows, np.arange(40))
    np.testing.assert_allclose(weights, np.asarray(es.sp.weights), rtol=1e-10)


def _minimise(optimizer, f, generations: int) -> None:
    for _ in range(generations):
        codes = optimizer.ask()
        optimizer.tell(codes, -f(codes.astype(np.float64)))


def _sphere(x: np.ndarray) -> np.ndarray:
    return np.sum(x**2, axis=1)


def _linear(x: np.ndarray) -> np.ndarray:
    return -np.sum(x, axis=1)


def test_pycma_like_sep_progresses_as_pycmas_diagonal_mode():
    """d = 400, λ = 40, σ0 = 1, from the same mean: after 250 generations on the sphere the mean's f is
    within a factor 3 of pycma's (median of 3 seeds; measured 1.4e-3 against 1.2e-3 over 300 generations),
    and after 40 generations on a linear function σ has grown like pycma's (within a factor 1.5)."""
    dim = 400
    ours_f, theirs_f, ours_sigma, theirs_sigma = [], [], [], []
    for seed in range(3):
        start = np.random.default_rng(seed).standard_normal((40, dim)).astype(np.float32) * 0.5
        ours = SepCMA(start, seed=seed, sigma0=1.0, init_mean="codes", **PYCMA_LIKE)
        _minimise(ours, _sphere, 250)
        ours_f.append(_sphere(ours.mean[None])[0])
        es = _pycma(dim, mean=start.mean(0).astype(np.float64), seed=seed + 1)
        for _ in range(250):
            x = es.ask()
            es.tell(x, list(_sphere(np.asarray(x))))
        theirs_f.append(_sphere(es.mean[None])[0])
        ours = SepCMA(start, seed=seed, sigma0=1.0, init_mean="codes", **PYCMA_LIKE)
        _minimise(ours, _linear, 40)
        ours_sigma.append(ours.sigma)
        es = _pycma(dim, mean=start.mean(0).astype(np.float64), seed=seed + 1)
        for _ in range(40):
            x = es.ask()
            es.tell(x, list(_linear(np.asarray(x))))
        theirs_sigma.append(es.sigma)
    ratio_f = np.median(ours_f) / np.median(theirs_f)
    assert 1 / 3 < ratio_f < 3, (ours_f, theirs_f)
    ratio_sigma = np.median(ours_sigma) / np.median(theirs_sigma)
    assert 1 / 1.5 < ratio_sigma < 1.5, (ours_sigma, theirs_sigma)
    assert np.median(ours_sigma) > 5.0  # it grew: σ0 = 1


def test_tpa_shows_a_pair_on_the_last_mean_shift_at_a_samples_length():
    optimizer = SepCMA(initial_codes(40, 300), sigma0=0.7, step_schedule="tpa", seed=4)
    rng = np.random.default_rng(0)
    first = optimizer.ask()  # no shift yet: 40 ordinary samples
    assert optimizer._line_pair(first.astype(np.float64)) is None
    old_mean = optimizer.mean.copy()
    optimizer.tell(first, rng.standard_normal(40))
    shift = optimizer.mean - old_mean
    codes = optimizer.ask().astype(np.float64)
    forward, backward = codes[0] - optimizer.mean, codes[1] - optimizer.mean
    np.testing.assert_allclose(forward, -backward, atol=1e-5)
    cosine = forward @ shift / (np.linalg.norm(forward) * np.linalg.norm(shift))
    assert cosine == pytest.approx(1.0, abs=1e-9)
    whitened = np.linalg.norm(forward / (optimizer.sigma * np.sqrt(optimizer.variances)))
    assert abs(whitened - np.sqrt(300)) < 4.0  # a χ_300 draw: mean 17.3, sd 0.71
    assert optimizer._line_pair(codes) == (0, 1)


def test_tpa_raises_sigma_when_the_forward_code_wins_and_lowers_it_when_it_loses():
    rng = np.random.default_rng(1)
    sigmas = {}
    for forward_wins in (True, False):
        optimizer = SepCMA(initial_codes(40, 300), sigma0=0.7, step_schedule="tpa", seed=4)
        _tell(optimizer, rng)
        before = optimizer.sigma
        codes = optimizer.ask()
        scores = rng.standard_normal(40)
        scores[0], scores[1] = (10.0, -10.0) if forward_wins else (-10.0, 10.0)
        optimizer.tell(codes, scores)
        # z = ±1: s = ±0.3, σ × exp(±0.3 / d_s)
        assert optimizer.tpa_s == pytest.approx(0.3 if forward_wins else -0.3)
        assert optimizer.sigma / before == pytest.approx(np.exp(optimizer.tpa_s / optimizer.tpa_damping))
        sigmas[forward_wins] = optimizer.sigma
    assert sigmas[True] > sigmas[False]


def test_tpa_leaves_sigma_alone_when_its_pair_was_not_told():
    rng = np.random.default_rng(2)
    optimizer = SepCMA(initial_codes(40, 300), sigma0=0.7, step_schedule="tpa", seed=4, nan_policy="drop")
    _tell(optimizer, rng)
    before, codes = optimizer.sigma, optimizer.ask()
    scores = rng.standard_normal(40)
    scores[:2] = np.nan  # the line pair's trials were lost (a fixation break), and dropped
    optimizer.tell(codes, scores)
    assert optimizer.sigma == before and optimizer.tpa_s == 0.0


def test_tpa_with_the_centre_shown_puts_the_pair_after_it():
    rng = np.random.default_rng(3)
    optimizer = SepCMA(initial_codes(40, 300), sigma0=0.7, step_schedule="tpa", show_centre=True, seed=4)
    _tell(optimizer, rng)
    codes = optimizer.ask().astype(np.float64)
    np.testing.assert_allclose(codes[0], optimizer.mean, atol=1e-5)
    assert optimizer._line_pair(codes) == (1, 2)


def test_active_additive_update_keeps_every_variance_positive():
    """Negative weights on the worse half with the additive rule: the pos-def cap keeps variances > 0
    even when the worst codes are the longest."""
    optimizer = SepCMA(initial_codes(40, 50), sigma0=1.0, active=True, seed=5)
    for _ in range(100):
        codes = optimizer.ask()
        optimizer.tell(codes, -np.linalg.norm(codes.astype(np.float64) - optimizer.mean, axis=1))
    assert np.all(optimizer.variances > 0)
    assert np.all(np.isfinite(optimizer.variances))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rates": "fast"}, "optimizer.rates must be one of"),
        ({"active": "yes"}, "optimizer.active must be true or false"),
        ({"step_schedule": "tpa", "population_size": 2}, "tpa needs optimizer.population_size >= 3"),
    ],
)
def test_bad_pycma_like_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SepCMA(initial_codes(), **kwargs)


def test_the_shipped_config_is_the_benchmarked_default():
    """sep_cma.yaml (the default optimizer) is pycma's diagonal mode in our code, and on Fourier codes of
    scale 0.5 it is bench_sep_cma (σ0 1.5, centred on the codes' mean) up to the codes' sampled scale."""
    from pathlib import Path

    import yaml

    import latentopt_cmafamily

    conf = Path(latentopt_cmafamily.__file__).parent / "conf"
    node = yaml.safe_load((conf / "optimizer/sep_cma.yaml").read_text())
    assert node.pop("name") == "sep_cma" and latentopt_cmafamily.DEFAULT_CMA == "sep_cma"
    assert (node["step_schedule"], node["active"], node["rates"]) == ("tpa", True, "pycma")
    default = yaml.safe_load((conf / "default_optimizer/sep_cma.yaml").read_text())
    assert default["defaults"] == [{"override /optimizer": "sep_cma"}]
    codes = 0.5 * np.random.default_rng(6).standard_normal((40, 1386)).astype(np.float32)
    shipped = SepCMA(codes, seed=1, **node)
    assert abs(shipped.sigma - 1.5) < 0.015 and shipped.init_mean == "codes"
    np.testing.assert_allclose(shipped.mean, codes.astype(np.float64).mean(0))
