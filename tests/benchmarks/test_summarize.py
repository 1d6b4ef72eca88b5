"""The suite's metrics on runs whose numbers are known, without running an evolution."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "suite_summarize", Path(__file__).resolve().parents[2] / "benchmarks" / "suite" / "summarize.py"
)
assert _SPEC is not None and _SPEC.loader is not None
summarize = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(summarize)


def test_evaluations_to_90_percent_of_the_final_value():
    # generation means 1, 5, 8, 9.5, 10, 10, 10: final value 10, 90 % = 9 first reached at generation 4
    trajectory = np.array([1.0, 5.0, 8.0, 9.5, 10.0, 10.0, 10.0])
    assert summarize.evaluations_to(trajectory, 40, 0.9) == 4 * 40
    # of the way from 1 to 10: 1 + 0.9 * 9 = 9.1, also generation 4; 50 % of the way (5.5): generation 3
    assert summarize.evaluations_to(trajectory, 40, 0.9, from_start=True) == 160
    assert summarize.evaluations_to(trajectory, 40, 0.5, from_start=True) == 120
    # a baseline far from 0 tells the two apart: 100 -> 110, 90 % of 110 = 99 is reached at once
    offset = trajectory + 99.0
    assert summarize.evaluations_to(offset, 20, 0.9) == 20
    assert summarize.evaluations_to(offset, 20, 0.9, from_start=True) == 80


def test_evaluations_to_is_empty_where_the_target_means_nothing():
    assert math.isnan(summarize.evaluations_to(np.array([-3.0, -2.0, -1.0]), 40, 0.9))
    assert math.isnan(summarize.evaluations_to(np.array([5.0, 4.0, 3.0, 3.0]), 40, 0.9, from_start=True))


def _row(optimizer: str, unit: str, activation: float, *, seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {"optimizer": optimizer, "unit_key": unit, "activation": activation, "seed": seed, "area": "V4",
            "noise": "none", "generator": "fourier", "gradient_reference": 20.0, "natural_reference": 4.0,
            "evals_to_90": 400.0, "optimizer_s": 1.0, **extra}


def test_normalisation_against_best_ever_gradient_and_natural_references():
    rows = [_row("ga_ponce", "u1", 5.0), _row("bench_sep_cma", "u1", 10.0), _row("ga_ponce", "u2", 3.0),
            _row("bench_sep_cma", "u2", 2.0, natural_reference=-1.0)]
    summarize.normalise(rows)
    assert [r["norm_best_ever"] for r in rows] == [0.5, 1.0, 1.0, pytest.approx(2 / 3)]
    assert [r["norm_gradient"] for r in rows] == [0.25, 0.5, 0.15, 0.1]
    assert rows[0]["norm_natural"] == 1.25 and math.isnan(rows[3]["norm_natural"])  # no ratio to a value <= 0


def test_table_and_verdict_compare_the_cma_family_with_the_ga():
    rows = []
    for seed in (0, 1):
        rows += [_row("ga_ponce", f"u{seed}", 4.0, seed=seed), _row("bench_sep_cma", f"u{seed}", 7.0, seed=seed),
                 _row("bench_cmaes_diag", f"u{seed}", 8.0, seed=seed)]
    summarize.normalise(rows)
    table = summarize.markdown(rows)
    assert "| ga_ponce | 0.500 | 0.5 |" in table and "| bench_cmaes_diag | 1.000 | 1 |" in table
    verdict = summarize.verdict(rows)
    assert verdict.startswith("best CMA-family optimizer bench_cmaes_diag: 1.000") and "2.000x ga_ponce" in verdict
    assert "target >= 1.5x: MET" in verdict
    assert "- bench_sep_cma / ga_ponce: 1.750x (seed 0 1.75x, seed 1 1.75x)" in verdict
    rows = [_row("ga_ponce", "u", 8.0), _row("bench_sep_cma", "u", 10.0)]
    summarize.normalise(rows)
    assert "1.250x ga_ponce" in summarize.verdict(rows) and "NOT MET" in summarize.verdict(rows)


def test_trajectory_plot_has_a_panel_per_area_and_noise(tmp_path):
    rows = [_row(o, "u", a, noise=n, area=ar, trajectory=[1.0, 2.0, a], population_size=40)
            for o, a in (("ga_ponce", 3.0), ("bench_sep_cma", 4.0)) for n in ("none", "mult05") for ar in ("V1", "V4")]
    summarize.normalise(rows)
    summarize.plot(rows, tmp_path / "t.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "t.png").size
    assert (width, height) == (1000, 720)  # 2 areas x 2 noise levels at 5 x 3.6 inches, 100 dpi


def _gabor_unit() -> dict[str, Any]:
    return {
        "generator": {"name": "pixel", "image_size": 64, "resolution": 8, "init_scale": 0.5, "device": "cpu"},
        "subject": {"name": "gabor_v1", "orientations_deg": [45.0], "wavelength": 8.0, "sigma": 6.0, "size": 64,
                    "gain": 10.0, "device": "cpu"},
        "objective": {"name": "single_unit", "channel": 0},
        "experiment": {"references": []},
    }


def test_gradient_reference_takes_steps_and_learning_rate_and_is_the_noise_free_score():
    """The upper reference is gradient ascent's best noise-free score; the suite's learning rate (0.2)
    climbs well past the old 0.05 in the same number of steps on the analytic V1 cell."""
    slow = summarize.UnitLab(_gabor_unit(), gradient_steps=30, gradient_lr=0.05)
    fast = summarize.UnitLab(_gabor_unit(), gradient_steps=30, gradient_lr=summarize.GRADIENT_LR)
    start = fast.generator.initial_codes(4, rng=np.random.default_rng(0))
    assert fast.gradient > 1.5 * slow.gradient > 0
    assert fast.gradient > fast.activations(start).max()
    assert math.isnan(summarize.UnitLab(_gabor_unit(), gradient_steps=0).gradient)


def test_summarize_cli_names_a_bad_gradient_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(summarize, "summarize", lambda *a, **k: pytest.fail("must not run"))
    monkeypatch.setattr("latentopt.runtime.maybe_reexec_with_tcmalloc", lambda: None)
    monkeypatch.setattr("sys.argv", ["summarize.py", str(tmp_path), "--gradient-lr", "0"])
    with pytest.raises(SystemExit, match=r"--gradient-lr > 0, got 300 and 0\.0"):
        summarize.main()
