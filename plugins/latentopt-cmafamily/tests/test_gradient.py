"""White-box gradient ascent reaches the known optimum of a linear unit on a ball of codes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from latentopt.generator import Generator
from latentopt.objective import Array, Objective
from latentopt.subject import Subject
from latentopt_cmafamily.gradient import gradient_ascent


class AffineGenerator(Generator):
    """images = 0.5 + 0.01 · W code, (n, 3, 4, 4): affine, so the optimum on a ball is known."""

    differentiable = True
    image_size = (4, 4)

    def __init__(self, dim: int) -> None:
        self.latent_dim = dim
        self.weight = torch.from_numpy(np.random.default_rng(0).standard_normal((48, dim)).astype(np.float32))

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        return (0.5 + 0.01 * codes @ self.weight.T).reshape(-1, 3, 4, 4)


class LinearUnit(Subject):
    """One channel: a fixed linear filter of the pixels."""

    differentiable = True

    def __init__(self) -> None:
        self.channel_names = ["unit"]
        self.filter = torch.from_numpy(np.random.default_rng(1).standard_normal(48).astype(np.float32))

    def respond_torch(self, images: torch.Tensor) -> torch.Tensor:
        return (images.flatten(1) @ self.filter)[:, None]

    def respond(self, images: torch.Tensor, *, image_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        return self.respond_torch(images).numpy().astype(np.float64)


class FirstChannel(Objective):
    def _score(self, responses: Array) -> Array:
        return responses[:, 0]


def test_reaches_the_optimum_on_a_ball_of_codes() -> None:
    generator, unit, radius = AffineGenerator(16), LinearUnit(), 5.0
    start = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
    result = gradient_ascent(
        generator, unit, FirstChannel(), start, steps=300, lr=1.0, stepper="sgd", max_norm=radius
    )
    direction = (generator.weight.T @ unit.filter).numpy().astype(np.float64)
    optimum = 0.5 * float(unit.filter.sum()) + 0.01 * radius * np.linalg.norm(direction)
    np.testing.assert_allclose(result.best_scores, optimum, rtol=1e-3)
    assert np.all(np.linalg.norm(result.best_codes, axis=1) <= radius * (1 + 1e-5))
    assert result.trajectory.shape == (301, 3) and result.evaluations == 903
    np.testing.assert_allclose(result.trajectory.max(0), result.best_scores)


def test_adam_raises_the_score_of_every_code() -> None:
    start = np.zeros((2, 16), np.float32)
    result = gradient_ascent(AffineGenerator(16), LinearUnit(), FirstChannel(), start, steps=20, lr=0.05)
    assert np.all(np.diff(result.trajectory, axis=0) > 0)


def test_needs_a_differentiable_subject() -> None:
    unit = LinearUnit()
    unit.differentiable = False
    with pytest.raises(ValueError, match="differentiable"):
        gradient_ascent(AffineGenerator(4), unit, FirstChannel(), np.zeros((1, 4), np.float32))


def test_as_an_optimizer_in_the_evolution_loop_it_reaches_the_same_optimum() -> None:
    from latentopt.experiment import Thread
    from latentopt.experiments.evolve import Evolution
    from latentopt_cmafamily.gradient import GradientAscentOptimizer

    generator, unit, radius = AffineGenerator(16), LinearUnit(), 5.0
    start = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
    optimizer = GradientAscentOptimizer(start, lr=1.0, stepper="sgd", max_norm=radius)
    evolution = Evolution([Thread("main", generator, optimizer, FirstChannel())], unit, generations=300)
    results = evolution.run()
    direction = (generator.weight.T @ unit.filter).numpy().astype(np.float64)
    optimum = 0.5 * float(unit.filter.sum()) + 0.01 * radius * np.linalg.norm(direction)
    np.testing.assert_allclose(results[-1].thread_scores["main"], optimum, rtol=1e-3)
    assert optimizer.evaluations == 900 and optimizer.best is not None
    np.testing.assert_allclose(optimizer.best[1], optimum, rtol=1e-3)


def test_in_the_loop_it_needs_a_differentiable_subject() -> None:
    from latentopt.experiment import Thread
    from latentopt.experiments.evolve import Evolution
    from latentopt_cmafamily.gradient import GradientAscentOptimizer

    unit = LinearUnit()
    unit.differentiable = False
    optimizer = GradientAscentOptimizer(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"GradientAscentOptimizer \(thread main\) needs a differentiable"):
        Evolution([Thread("main", AffineGenerator(4), optimizer, FirstChannel())], unit)
    with pytest.raises(Exception, match="no white-box model"):
        optimizer.tell(optimizer.ask(), np.zeros(2))


@pytest.mark.slow
def test_cli_run_with_gradient_ascent_resumes_where_an_uninterrupted_run_ends(tmp_path) -> None:
    import subprocess
    import sys

    import latentopt

    common = ["optimizer=gradient_ascent", "subject=gabor_v1", "experiment.references=[]", "progress=false",
              "device=cpu"]

    def cli(*args: str, resume: bool = False) -> None:
        entry = "resume_main" if resume else "main"
        proc = subprocess.run([sys.executable, "-c", f"from latentopt.cli import {entry}; {entry}()", *args],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]

    cli(*common, "experiment.generations=12", f"hydra.run.dir={tmp_path / 'whole'}")
    cli(*common, "experiment.generations=5", f"hydra.run.dir={tmp_path / 'split'}")
    cli(str(tmp_path / "split"), "experiment.generations=12", resume=True)
    whole, split = latentopt.load_run(tmp_path / "whole"), latentopt.load_run(tmp_path / "split")
    np.testing.assert_array_equal(whole.codes, split.codes)
    np.testing.assert_array_equal(whole.scores, split.scores)
    assert np.nanmean(whole.scores[-1]) > 5 * np.nanmean(whole.scores[0])  # the Gabor cell's score rises
