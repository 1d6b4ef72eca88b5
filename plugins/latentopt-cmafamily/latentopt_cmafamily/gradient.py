"""White-box gradient ascent on codes: the upper reference for simulated neurons.

It needs the generator, subject and objective themselves, differentiable end to end
(``Generator.differentiable`` and ``Subject.differentiable``), as in the population-control
syntheses of Bashivan, Kar & DiCarlo (2019). Each code of the batch is optimised independently.
Two ways in: :func:`gradient_ascent` on the components directly (the benchmark suite's reference),
and :class:`GradientAscentOptimizer`, registered as ``gradient_ascent``, which runs inside the
ordinary evolution loop (records, resume, budget) with the white-box model the loop attaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from latentopt.checks import ConfigError, finite_number
from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.optimizer import Optimizer, OptimizerError
from latentopt.subject import Subject

STEPPERS = ("adam", "sgd")
"""The torch optimizers that take the gradient steps (``stepper=``); not the registry's optimizers."""


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
    stepper: str = "adam",
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
        stepper: the torch optimizer that takes the steps, ``"adam"`` or ``"sgd"``.
        max_norm: if given, codes are projected back into the ball of this norm after each step
            (keeps codes where the generator was trained, e.g. ~300 for DeePSim fc6).

    Returns:
        A :class:`GradientAscentResult`.
    """
    if not generator.differentiable or not subject.differentiable:
        raise ConfigError(
            f"gradient_ascent needs a differentiable generator and subject; got "
            f"{type(generator).__name__} (differentiable={generator.differentiable}) and "
            f"{type(subject).__name__} (differentiable={subject.differentiable})"
        )
    if stepper not in STEPPERS:
        raise ConfigError(f"stepper must be one of {STEPPERS}, got {stepper!r}")
    start = np.asarray(initial_codes, dtype=np.float32)
    codes = torch.tensor(start, device=generator.device, requires_grad=True)
    torch_optimizer: torch.optim.Optimizer = (
        torch.optim.Adam([codes], lr=lr) if stepper == "adam" else torch.optim.SGD([codes], lr=lr)
    )
    best_codes, best_scores = start.copy(), np.full(start.shape[0], -np.inf)
    trajectory = np.empty((steps + 1, start.shape[0]))
    for step in range(steps + 1):
        torch_optimizer.zero_grad()
        scores = objective.score(subject.respond_torch(generator.generate(codes)))
        values = scores.detach().cpu().numpy().astype(np.float64)
        trajectory[step] = values
        improved = values > best_scores
        best_scores[improved] = values[improved]
        best_codes[improved] = codes.detach().cpu().numpy()[improved]
        if step == steps:
            break
        (-scores.sum()).backward()  # torch optimizers descend; ascend the summed scores
        torch_optimizer.step()
        if max_norm is not None:
            with torch.no_grad():
                norms = codes.norm(dim=1, keepdim=True).clamp_min(1e-12)
                codes.mul_(torch.clamp(max_norm / norms, max=1.0))
    return GradientAscentResult(
        best_codes=best_codes,
        best_scores=best_scores,
        trajectory=trajectory,
        evaluations=start.shape[0] * (steps + 1),
        settings={"steps": steps, "lr": lr, "stepper": stepper, "max_norm": max_norm},
    )


class GradientAscentOptimizer(Optimizer):
    """Gradient ascent as an ask/tell optimizer: each generation shows the current codes; ``tell``
    then takes one step of each code up the noise-free white-box gradient.

    The scores told (noisy, as the subject gave them) are recorded and tracked as the best, but do
    not steer: the step follows the white-box model the evolution loop attaches (generator ->
    subject's ``respond_torch`` -> objective). It is the upper reference for simulated neurons in
    the same budget of shown images, not a method for real neurons.

    Args:
        initial_codes: ``(n, d)`` starting codes; the population is ``n`` (``population_size``).
        seed: kept for the interface; the method is deterministic.
        lr: step size (Adam: about the change of each coordinate per step; SGD: gradient factor).
        stepper: ``"adam"`` (Kingma & Ba 2015, β = 0.9, 0.999) or ``"sgd"``.
        max_norm: codes are projected back into the ball of this norm after each step (e.g. ~300
            for DeePSim fc6, where evolved codes live); None = no bound.
        nan_policy: ``worst`` or ``drop`` (only the best-code tracking sees the scores).
    """

    needs_white_box = True
    _BETAS = (0.9, 0.999)
    _EPS = 1e-8

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        lr: float = 0.05,
        stepper: str = "adam",
        max_norm: float | None = None,
        nan_policy: str = "worst",
    ) -> None:
        super().__init__(initial_codes, seed=seed, nan_policy=nan_policy)
        if stepper not in STEPPERS:
            raise ConfigError(f"optimizer.stepper must be one of {STEPPERS}, got {stepper!r}")
        finite_number(lr, "optimizer.lr", minimum=0.0)
        if max_norm is not None:
            finite_number(max_norm, "optimizer.max_norm", minimum=0.0)
        self.lr, self.stepper, self.max_norm = float(lr), stepper, None if max_norm is None else float(max_norm)
        self._codes = np.asarray(initial_codes, dtype=np.float64).copy()
        self._m = np.zeros_like(self._codes)
        self._v = np.zeros_like(self._codes)
        self._steps = 0

    @classmethod
    def contract_kwargs(cls) -> dict[str, Any]:
        return {"kwargs": {"lr": 0.1}}

    def _ask(self) -> np.ndarray:
        return self._codes.astype(np.float32)

    def gradient(self) -> np.ndarray:
        """``(n, d)`` gradient of the white-box scores at the current codes."""
        if self.white_box is None:
            raise OptimizerError(
                "gradient_ascent has no white-box model: run it in an evolution with a differentiable "
                "generator and subject (or call attach_white_box)"
            )
        codes = torch.tensor(self._codes, dtype=torch.float32, requires_grad=True)
        with torch.enable_grad():
            self.white_box(codes).sum().backward()
        assert codes.grad is not None
        grad = codes.grad.detach().cpu().numpy().astype(np.float64)
        if not np.isfinite(grad).all():
            raise OptimizerError("gradient_ascent: the white-box gradient is not finite")
        return grad

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        grad = self.gradient()
        self._steps += 1
        if self.stepper == "adam":
            b1, b2 = self._BETAS
            self._m = b1 * self._m + (1 - b1) * grad
            self._v = b2 * self._v + (1 - b2) * grad**2
            m_hat = self._m / (1 - b1**self._steps)
            v_hat = self._v / (1 - b2**self._steps)
            self._codes += self.lr * m_hat / (np.sqrt(v_hat) + self._EPS)
        else:
            self._codes += self.lr * grad
        if self.max_norm is not None:
            norms = np.maximum(np.linalg.norm(self._codes, axis=1, keepdims=True), 1e-12)
            self._codes *= np.minimum(1.0, self.max_norm / norms)

    def _state_dict(self) -> dict[str, Any]:
        return {"codes": self._codes.copy(), "m": self._m.copy(), "v": self._v.copy(), "steps": self._steps}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        self._codes = np.asarray(state["codes"], dtype=np.float64).copy()
        self._m = np.asarray(state["m"], dtype=np.float64).copy()
        self._v = np.asarray(state["v"], dtype=np.float64).copy()
        self._steps = int(state["steps"])

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "population_size": int(self._codes.shape[0]), "lr": self.lr,
                "stepper": self.stepper, "max_norm": self.max_norm,
                "note": "white-box upper reference: steps follow the noise-free gradient, not the told scores"}
