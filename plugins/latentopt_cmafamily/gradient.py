"""White-box gradient ascent on codes: the upper reference for simulated neurons.

Not an ask/tell optimizer: it needs the generator, subject and objective themselves, differentiable
end to end (``Generator.differentiable`` and ``Subject.differentiable``), as in the population-control
syntheses of Bashivan, Kar & DiCarlo (2019). Each code of the batch is optimised independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.subject import Subject

OPTIMIZERS = ("adam", "sgd")


@dataclass
class GradientAscentResult:
    """What :func:`gradient_ascent` found.

    Attributes:
        best_codes: ``(n, d)`` float32, the best code seen for each starting code.
        best_scores: ``(n,)`` float64, their scores (noise-free ``respond_torch`` responses).
        trajectory: ``(steps + 1, n)`` float64 scores before each step and after the last.
        evaluations: images generated (``n · (steps + 1)``).
        settings: resolved settings, for records and benchmarks.
    """

    best_codes: np.ndarray
    best_scores: np.ndarray
    trajectory: np.ndarray
    evaluations: int
    settings: dict[str, Any] = field(default_factory=dict)


def gradient_ascent(
    generator: Generator,
    subject: Subject,
    objective: Objective,
    initial_codes: np.ndarray,
    *,
    steps: int = 200,
    lr: float = 0.05,
    optimizer: str = "adam",
    max_norm: float | None = None,
) -> GradientAscentResult:
    """Raise the objective by gradient ascent on the codes.

    Args:
        generator: differentiable generator, codes ``(n, d)`` -> images ``(n, 3, H, W)`` in [0, 1].
        subject: differentiable subject (``respond_torch``), images -> ``(n, channels)``.
        objective: responses -> ``(n,)`` scores, higher is better.
        initial_codes: ``(n, d)`` float32 starting codes.
        steps: gradient steps.
        lr: learning rate of the torch optimizer.
        optimizer: ``"adam"`` or ``"sgd"``.
        max_norm: if given, codes are projected back into the ball of this norm after each step
            (keeps codes where the generator was trained, e.g. ~300 for DeePSim fc6).

    Returns:
        A :class:`GradientAscentResult`.
    """
    if not generator.differentiable or not subject.differentiable:
        raise ValueError(
            f"gradient_ascent needs a differentiable generator and subject; got "
            f"{type(generator).__name__} (differentiable={generator.differentiable}) and "
            f"{type(subject).__name__} (differentiable={subject.differentiable})"
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    start = np.asarray(initial_codes, dtype=np.float32)
    codes = torch.tensor(start, device=generator.device, requires_grad=True)
    stepper: torch.optim.Optimizer = (
        torch.optim.Adam([codes], lr=lr) if optimizer == "adam" else torch.optim.SGD([codes], lr=lr)
    )
    best_codes, best_scores = start.copy(), np.full(start.shape[0], -np.inf)
    trajectory = np.empty((steps + 1, start.shape[0]))
    for step in range(steps + 1):
        stepper.zero_grad()
        scores = objective.score(subject.respond_torch(generator.generate(codes)))
        values = scores.detach().cpu().numpy().astype(np.float64)
        trajectory[step] = values
        improved = values > best_scores
        best_scores[improved] = values[improved]
        best_codes[improved] = codes.detach().cpu().numpy()[improved]
        if step == steps:
            break
        (-scores.sum()).backward()  # torch optimizers descend; ascend the summed scores
        stepper.step()
        if max_norm is not None:
            with torch.no_grad():
                norms = codes.norm(dim=1, keepdim=True).clamp_min(1e-12)
                codes.mul_(torch.clamp(max_norm / norms, max=1.0))
    return GradientAscentResult(
        best_codes=best_codes,
        best_scores=best_scores,
        trajectory=trajectory,
        evaluations=start.shape[0] * (steps + 1),
        settings={"steps": steps, "lr": lr, "optimizer": optimizer, "max_norm": max_norm},
    )
