"""A paired-generator session through the rig, with PSTHs: the alignment analysis reads the rig's records (per-trial
responses and their time bins) as it reads a simulated subject's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.experiments.alignment_report import load_session, write_alignment_report
from latentopt.launch import run_experiment
from latentopt_rig.drill import FAST_WAIT


def _session(root: Path, seed: int, sim_factory: Any) -> Path:
    exchange, out = root / f"exchange{seed}", root / f"session{seed}"
    sim_factory(exchange, protocol="native", fmt="npz", psth=True, missing_fraction=0.0, delay_s=0.05, seed=seed)
    config = {"seed": seed, "device": "cpu", "progress": False,
              "subject": {"name": "rig", "exchange": str(exchange), "protocol": "native", **FAST_WAIT},
              "objective": {"name": "single_unit"},
              "optimizer": {"name": "cmaes", "population_size": 10, "sigma0": 0.5, "diagonal": True},
              "experiment": {"name": "alignment", "generations": 15, "references": ["camera"], "generators": {
                  "fourier": {"name": "fourier", "image_size": 32, "max_frequency": 3, "device": "cpu"},
                  "pixel": {"name": "pixel", "image_size": 32, "resolution": 4, "device": "cpu"}}}}
    run_experiment(config, out, config_yaml=json.dumps(config))
    return out


def test_alignment_from_rig_records_with_psths(tmp_path: Path, sim_factory: Any) -> None:
    runs = [_session(tmp_path, seed, sim_factory) for seed in (0, 1)]
    session = load_session(runs[0])
    assert session.time_bins_ms is not None and session.time_bins_ms[0] == 0.0
    assert session.psth is not None and len(session.psth["fourier"]) == 15
    assert session.psth["pixel"][0].shape == (10, len(session.time_bins_ms) - 1)
    rows = json.loads((runs[0] / "alignment.json").read_text())["threads"]
    assert {r["generator"] for r in rows} == {"fourier", "pixel"} and all(r["valid"] for r in rows)
    result = write_alignment_report(runs, tmp_path / "analysis", generators=("fourier", "pixel"))
    assert result["sessions"] == 2
    dynamics = result["dynamics"]["unknown"]
    assert dynamics["sessions"] == 2 and len(dynamics["bin_edges_ms"]) == 21  # 10-ms bins over 0-200 ms
    assert np.isfinite(dynamics["mean_a"]).all() and (tmp_path / "analysis" / "dynamics.png").exists()
