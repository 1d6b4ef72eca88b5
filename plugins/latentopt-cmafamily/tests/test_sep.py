"""sep-CMA-ES: the fixed geometric step-size schedule (``step_schedule="exp"``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cmafamily_helpers import initial_codes, npz_round_trip

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


def test_exp_schedule_resumes_exactly_mid_run(tmp_path):
    settings: dict[str, Any] = {"sigma0": 1.0, "step_schedule": "exp", "schedule_generations": 8, "seed": 3}
    rng = np.random.default_rng(4)
    first = SepCMA(initial_codes(12, 30), **settings)
    for _ in range(4):
        _tell(first, rng)
    resumed = SepCMA(initial_codes(12, 30), **settings)
    resumed.load_state_dict(npz_round_trip(first.state_dict(), tmp_path / "state.npz"))
    scores = np.random.default_rng(5).standard_normal((6, 12))
    for row in scores:
        a, b = first.ask(), resumed.ask()
        np.testing.assert_array_equal(a, b)
        first.tell(a, row)
        resumed.tell(b, row)
    assert first.sigma == resumed.sigma


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
