"""Population-control objectives (stretch, one-hot, target pattern): values checked against scipy / numpy on the
same numbers, numpy and torch agree (white-box gradient ascent uses torch), bad values are one ConfigError, and an
evolution raises the one-hot score of a target channel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import pearsonr

from latentopt.builtins.population import OneHot, Stretch, TargetPattern
from latentopt.checks import ConfigError
from latentopt.launch import run_experiment
from latentopt.run_record import load_run

R = np.array([[1.0, 4.0, 2.0, 0.5], [3.0, 0.0, 1.0, 2.0], [0.2, 0.1, 5.0, 0.3]])
MEAN, STD = [1.0, 2.0, 1.5, 0.5], [0.5, 2.0, 1.0, 0.25]


def test_stretch_is_the_target_channel():
    np.testing.assert_array_equal(Stretch(channel=2).score(R), R[:, 2])


def test_one_hot_is_the_softmax_of_the_normalised_population():
    objective = OneHot(channel=1, mean=MEAN, std=STD, temperature=2.0)
    z = (R - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(objective.score(R), softmax(z / 2.0, axis=1)[:, 1], rtol=1e-12)
    subset = OneHot(channel=2, channels=[0, 2, 3])
    np.testing.assert_allclose(subset.score(R), softmax(R[:, [0, 2, 3]], axis=1)[:, 1], rtol=1e-12)
    big = OneHot(channel=0).score(R * 1000.0)  # the shift keeps large responses finite
    assert np.isfinite(big).all()


@pytest.mark.parametrize("measure", ["correlation", "distance"])
def test_target_pattern_matches_numpy(measure):
    pattern = [1.0, -1.0, 0.5, 0.0]
    objective = TargetPattern(pattern=pattern, mean=MEAN, std=STD, measure=measure)
    z = (R - np.array(MEAN)) / np.array(STD)
    if measure == "correlation":
        expected = [pearsonr(row, pattern).statistic for row in z]
    else:
        expected = -np.sqrt(((z - np.array(pattern)) ** 2).mean(axis=1))
    np.testing.assert_allclose(objective.score(R), expected, rtol=1e-10)


@pytest.mark.parametrize("objective", [Stretch(channel=1), OneHot(channel=3, mean=MEAN, std=STD),
                                       TargetPattern(pattern=[1.0, -1.0, 0.5, 0.0], measure="correlation"),
                                       TargetPattern(pattern=[1.0, -1.0, 0.5, 0.0], measure="distance")],
                         ids=["stretch", "one_hot", "correlation", "distance"])
def test_numpy_and_torch_agree_and_torch_has_gradients(objective):
    tensor = torch.tensor(R, requires_grad=True)
    scores = objective.score(tensor)
    np.testing.assert_allclose(scores.detach().numpy(), objective.score(R), rtol=1e-10)
    scores.sum().backward()
    assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


@pytest.mark.parametrize(("make", "message"), [
    (lambda: OneHot(channel=5, channels=[0, 1]), r"objective\.channel=5 is not among objective\.channels"),
    (lambda: OneHot(mean=[1.0, 2.0], std=[1.0]), r"objective\.mean has 2 values but objective\.std 1"),
    (lambda: OneHot(std=[1.0, 0.0]), r"objective\.std must be > 0"),
    (lambda: OneHot(channels=[0, 0]), r"names a channel twice"),
    (lambda: TargetPattern(pattern=[1.0]), r"objective\.pattern: give the target response of at least 2"),
    (lambda: TargetPattern(pattern=[2.0, 2.0]), r"objective\.pattern is constant"),
    (lambda: TargetPattern(measure="cosine"), r"objective\.measure must be correlation or distance"),
    (lambda: TargetPattern(pattern=[1.0, 0.0], channels=[0, 1, 2]), r"objective\.pattern has 2 values for 3"),
])
def test_bad_values_are_one_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_channels_beyond_the_subject_are_refused_when_built():
    with pytest.raises(ConfigError, match=r"objective\.channel=4 but the subject has 4 channel"):
        OneHot(channel=4).check_channels(4)
    with pytest.raises(ConfigError, match=r"objective\.mean has 4 values for 3 channel"):
        OneHot(mean=MEAN).check_channels(3)
    with pytest.raises(ConfigError, match=r"objective\.pattern has 4 values for 2 channel"):
        TargetPattern(pattern=[1.0, 0.0, 0.0, 1.0]).check_channels(2)


def test_an_evolution_raises_the_one_hot_score_of_its_target(tmp_path):
    """Four Gabor cells (orientations 0, 45, 90, 135 degrees); the one-hot target is the 90-degree cell."""
    config = {"seed": 0, "device": "cpu", "progress": False,
              "generator": {"name": "pixel", "image_size": 32, "resolution": 8, "device": "cpu"},
              "subject": {"name": "gabor_v1", "size": 32, "orientations_deg": [0, 45, 90, 135], "device": "cpu"},
              "objective": {"name": "one_hot", "channel": 2},
              "optimizer": {"name": "cmaes", "population_size": 16, "sigma0": 0.5, "diagonal": True},
              "experiment": {"name": "evolve", "generations": 12, "references": []}}
    run_experiment(config, tmp_path / "run", config_yaml=json.dumps(config))
    scores = load_run(tmp_path / "run").scores
    assert scores[-3:].mean() > scores[:2].mean() + 0.2, scores.mean(axis=1)
