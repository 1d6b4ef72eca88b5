"""A manifold runs on the rig exactly as an evolution does: blocks of grid images through the exchange
folder, every delivered trial recorded (checked against the rig simulator's ledger), and the maps fitted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from latentopt import load_manifold
from latentopt.launch import run_experiment
from latentopt.run_record import load_run
from latentopt_rig.drill import FAST_WAIT, audit

SMALL = {"seed": 1, "device": "cpu", "progress": False,
         "generator": {"name": "fourier", "image_size": 32, "max_frequency": 2, "device": "cpu"},
         "objective": {"name": "single_unit"}}


def test_manifold_through_the_rig_records_every_delivered_trial(tmp_path: Path, sim_factory: Any) -> None:
    source = tmp_path / "evolution"
    evolve = {**SMALL, "subject": {"name": "gabor_v1", "device": "cpu"},
              "optimizer": {"name": "cmaes", "population_size": 40, "sigma0": 0.5, "diagonal": True},
              "experiment": {"name": "evolve", "generations": 2, "references": []}}
    run_experiment(evolve, source, config_yaml=json.dumps(evolve))
    exchange, out = tmp_path / "exchange", tmp_path / "manifold"
    sim = sim_factory(exchange, protocol="native", fmt="npz")
    manifold = {**SMALL, "subject": {"name": "rig", "exchange": str(exchange), "protocol": "native", **FAST_WAIT},
                "experiment": {"name": "manifold", "source": str(source), "inherit": ["generator", "objective"],
                               "grid": 5, "n_components": 10, "spheres": ["PC1_PC2_PC3", "PC1_RND1_RND2"],
                               "block_size": 20, "references": ["camera"]}}
    run_experiment(manifold, out, config_yaml=json.dumps(manifold))
    blocks = load_run(out).generations
    assert blocks == -(-34 // 20)  # 2 spheres x (5 x 3 + 2 poles) grid images in blocks of 20
    result = audit(out, sim.events, blocks)
    assert result.images == 34 + blocks and result.lost == 0 and result.duplicated == 0, result
    assert result.recorded + result.not_shown == result.images, result
    record = load_manifold(out)
    shown = np.isfinite(record.trials[:, 0, 0])
    assert shown.sum() >= 30  # the simulator drops a quarter of the trials; the rig re-queues them
    spheres = json.loads((out / "manifold.json").read_text())["spheres"]
    assert [s["name"] for s in spheres] == ["PC1_PC2_PC3", "PC1_RND1_RND2"]
    assert (exchange / "latentopt-session.json").exists()
