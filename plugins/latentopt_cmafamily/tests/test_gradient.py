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
        generator, unit, FirstChannel(), start, steps=300, lr=1.0, optimizer="sgd", max_norm=radius
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
