"""White-box gradient ascent with the population objectives on a differentiable subject whose optimum is known.

The subject is four analytic V1 complex cells (0, 45, 90, 135 degrees); a grating of the target orientation is
what drives one cell and leaves the orthogonal one silent, so each objective has a reachable optimum.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from latentopt_cmafamily import gradient_ascent

from latentopt.builtins.generators import PixelGenerator
from latentopt.builtins.population import OneHot, Stretch, TargetPattern
from latentopt.builtins.subjects import GaborV1Subject
from latentopt.launch import run_experiment
from latentopt.natural import natural_set
from latentopt.run_record import load_run

ORIENTATIONS = [0.0, 45.0, 90.0, 135.0]


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    generator = PixelGenerator(image_size=32, resolution=16, device="cpu")
    subject = GaborV1Subject(orientations_deg=ORIENTATIONS, size=32, wavelength=6.0, sigma=5.0, device="cpu")
    _, natural = natural_set(60, (32, 32), seed=1)
    with torch.no_grad():
        responses = subject.respond_torch(natural).double().numpy()
    return generator, subject, responses.mean(0).tolist(), responses.std(0).tolist()


def _ascend(generator, subject, objective, steps=150):
    start = generator.initial_codes(3, rng=np.random.default_rng(0))
    result = gradient_ascent(generator, subject, objective, start, steps=steps, lr=0.1)
    with torch.no_grad():
        final = subject.respond_torch(generator.generate(result.best_codes)).double().numpy()
    return result, final


def test_gradient_ascent_stretches_the_target_channel(parts):
    generator, subject, _, _ = parts
    result, final = _ascend(generator, subject, Stretch(channel=1))
    assert (result.best_scores > 5 * result.trajectory[0]).all()
    assert (final.argmax(axis=1) == 1).all()  # the 45-degree cell is now the most driven


def test_gradient_ascent_wins_a_one_hot_target(parts):
    generator, subject, mean, std = parts
    objective = OneHot(channel=2, mean=mean, std=std)
    result, final = _ascend(generator, subject, objective)
    assert (result.trajectory[0] < 0.6).all() and (result.best_scores > 0.95).all()
    z = (final - np.array(mean)) / np.array(std)
    assert (z.argmax(axis=1) == 2).all()


def test_gradient_ascent_reaches_a_target_pattern(parts):
    generator, subject, mean, std = parts
    objective = TargetPattern(pattern=[1.0, -1.0, 1.0, -1.0], mean=mean, std=std, measure="correlation")
    result, _ = _ascend(generator, subject, objective)
    assert (result.best_scores > 0.9).all() and (result.best_scores > result.trajectory[0] + 0.3).all()


def test_one_hot_in_the_evolution_loop_with_the_gradient_ascent_optimizer(parts, tmp_path):
    _, _, mean, std = parts
    config = {"seed": 0, "device": "cpu", "progress": False,
              "generator": {"name": "pixel", "image_size": 32, "resolution": 16, "device": "cpu"},
              "subject": {"name": "gabor_v1", "orientations_deg": ORIENTATIONS, "size": 32, "wavelength": 6.0,
                          "sigma": 5.0, "device": "cpu"},
              "objective": {"name": "one_hot", "channel": 3, "mean": mean, "std": std},
              "optimizer": {"name": "gradient_ascent", "population_size": 2, "lr": 0.1},
              "experiment": {"name": "evolve", "generations": 60, "references": None}}
    run_experiment(config, tmp_path / "run", config_yaml=json.dumps(config))
    scores = load_run(tmp_path / "run").scores  # (generations, population)
    assert scores[0].max() < 0.6 and scores[-1].min() > 0.9
