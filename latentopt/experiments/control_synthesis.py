"""Synthesise controller images on a digital twin: stretch and one-hot controllers, by gradient or by evolution.

Both methods see the images as the subject will (resized to the session's image size) through the twin's
noise-free ``respond_torch``. One-hot scores use the twin's responses normalised per channel by the twin's own
responses to the natural set (its mean and standard deviation over the set), so the target is judged against
the population as the twin sees it.

- ``method: gradient``: Adam on ``starts`` random codes per controller at once (one batch), ``steps`` steps of
  learning rate ``lr``; codes optionally projected into the ball of radius ``max_norm``. The best code seen for
  each controller, over its starts and steps, is kept.
- ``method: evolution``: one optimizer thread per controller (the run's ``optimizer`` group, any registered
  optimizer, each seeded by the assembly's rule) for ``generations`` generations in shared blocks on the twin;
  the best code each thread showed is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentopt.blocks import fit_images
from latentopt.checks import ConfigError, finite_number, integer
from latentopt.generator import Generator
from latentopt.subject import Subject

METHODS = ("gradient", "evolution")


@dataclass
class SynthesisSettings:
    """``experiment.synthesis``: see the module docstring."""

    method: str = "gradient"
    steps: int = 200
    lr: float = 0.05
    starts: int = 4
    max_norm: float | None = None
    generations: int = 40

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> SynthesisSettings:
        if not isinstance(node, Mapping):
            raise ConfigError(f"experiment.synthesis must be a mapping, got {node!r}")
        unknown = set(map(str, node)) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"experiment.synthesis: unknown key(s) {sorted(unknown)}; "
                              f"use {', '.join(cls.__dataclass_fields__)}")
        method = node.get("method", "gradient")
        if method not in METHODS:
            raise ConfigError(f"experiment.synthesis.method must be one of {', '.join(METHODS)}, got {method!r}")
        max_norm = node.get("max_norm")
        return cls(method=str(method),
                   steps=integer(node.get("steps", 200), "experiment.synthesis.steps", minimum=1, maximum=100_000),
                   lr=finite_number(node.get("lr", 0.05), "experiment.synthesis.lr", minimum=1e-9),
                   starts=integer(node.get("starts", 4), "experiment.synthesis.starts", minimum=1, maximum=1000),
                   max_norm=None if max_norm is None else finite_number(max_norm, "experiment.synthesis.max_norm",
                                                                         minimum=1e-9),
                   generations=integer(node.get("generations", 40), "experiment.synthesis.generations", minimum=1,
                                       maximum=100_000))


def twin_responses(twin: Subject, images: torch.Tensor, *, batch: int = 50) -> np.ndarray:
    """The twin's noise-free responses ``(n, C)`` to images."""
    with torch.no_grad():
        return np.concatenate([twin.respond_torch(part).double().cpu().numpy()
                               for part in torch.split(images, batch)]) if len(images) else np.zeros((0, 0))


def _scores(responses: torch.Tensor, kinds: torch.Tensor, channels: torch.Tensor, mean: torch.Tensor,
            std: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row: the raw response of its channel (stretch) or its softmax one-hot score (one-hot)."""
    rows = torch.arange(len(channels), device=responses.device)
    raw = responses[rows, channels]
    soft = torch.softmax((responses - mean) / std / temperature, dim=1)[rows, channels]
    return torch.where(kinds == 0, raw, soft)


def synthesise(twin: Subject, generator: Generator, targets: Sequence[tuple[str, int]], natural: torch.Tensor, *,
               settings: SynthesisSettings, temperature: float, image_size: tuple[int, int], seed: int,
               assembly: Any = None, optimizer_node: Any = None, progress: bool = False) -> dict[str, Any]:
    """Controller codes for ``targets`` (``[(kind, channel)]``) on the twin (``progress``: a bar on stderr).

    Returns:
        ``codes (K, d)`` float32, ``twin_scores (K,)`` (each controller's own objective on the twin),
        ``twin_responses (K, C)``, ``twin_natural (N, C)`` (the twin's responses to the natural set),
        ``mean`` / ``std`` ``(C,)`` (the one-hot normalisation) and ``method``.
    """
    natural_twin = twin_responses(twin, fit_images(natural, image_size))
    mean = natural_twin.mean(axis=0)
    std = np.maximum(natural_twin.std(axis=0), 1e-12)
    from tqdm import tqdm

    total = settings.steps + 1 if settings.method == "gradient" else settings.generations
    with tqdm(total=total, desc=f"synthesis on the twin ({len(targets)} controllers)", unit="step",
              disable=not progress, dynamic_ncols=True) as bar:
        if settings.method == "gradient":
            codes = _by_gradient(twin, generator, targets, settings=settings, mean=mean, std=std,
                                 temperature=temperature, image_size=image_size, seed=seed, tick=bar.update)
        else:
            codes = _by_evolution(twin, generator, targets, settings=settings, mean=mean, std=std,
                                  temperature=temperature, seed=seed, assembly=assembly,
                                  optimizer_node=optimizer_node, tick=bar.update)
    with torch.no_grad():
        images = fit_images(generator.generate(codes).detach().cpu(), image_size)
    responses = twin_responses(twin, images)
    kinds = np.asarray([0 if k == "stretch" else 1 for k, _ in targets])
    channels = np.asarray([c for _, c in targets])
    own = _scores(torch.from_numpy(responses), torch.from_numpy(kinds), torch.from_numpy(channels),
                  torch.from_numpy(mean), torch.from_numpy(std), temperature).numpy()
    return {"codes": codes.astype(np.float32), "twin_scores": own.astype(np.float64),
            "twin_responses": responses, "twin_natural": natural_twin, "mean": mean, "std": std,
            "method": np.asarray(settings.method)}


def _by_gradient(twin: Subject, generator: Generator, targets: Sequence[tuple[str, int]], *,
                 settings: SynthesisSettings, mean: np.ndarray, std: np.ndarray, temperature: float,
                 image_size: tuple[int, int], seed: int, tick: Any = None) -> np.ndarray:
    if not (generator.differentiable and twin.differentiable):
        raise ConfigError("experiment.synthesis.method=gradient needs a differentiable generator and twin")
    k, starts = len(targets), settings.starts
    rng = np.random.default_rng([int(seed), 5151])
    start = generator.initial_codes(k * starts, rng=rng).astype(np.float32)
    device = generator.device
    codes = torch.tensor(start, device=device, requires_grad=True)
    kinds = torch.tensor([0 if kind == "stretch" else 1 for kind, _ in targets] * starts, device=twin_device(twin))
    channels = torch.tensor([c for _, c in targets] * starts, device=twin_device(twin))
    mean_t = torch.tensor(mean, dtype=torch.float32, device=twin_device(twin))
    std_t = torch.tensor(std, dtype=torch.float32, device=twin_device(twin))
    stepper = torch.optim.Adam([codes], lr=settings.lr)
    best = np.full(k * starts, -np.inf)
    best_codes = start.copy()
    for step in range(settings.steps + 1):
        stepper.zero_grad()
        images = fit_images(generator.generate(codes), image_size)
        scores = _scores(twin.respond_torch(images), kinds, channels, mean_t, std_t, temperature)
        values = scores.detach().double().cpu().numpy()
        better = values > best
        best[better] = values[better]
        best_codes[better] = codes.detach().cpu().numpy()[better]
        if tick is not None:
            tick(1)
        if step == settings.steps:
            break
        (-scores.sum()).backward()
        stepper.step()
        if settings.max_norm is not None:
            with torch.no_grad():
                codes.mul_(torch.clamp(settings.max_norm / codes.norm(dim=1, keepdim=True).clamp_min(1e-12), max=1))
    chosen = best.reshape(starts, k).argmax(axis=0)
    return best_codes.reshape(starts, k, -1)[chosen, np.arange(k)]


def twin_device(twin: Subject) -> torch.device:
    return getattr(twin, "device", torch.device("cpu"))


class _Keeper:
    """An in-memory recorder: the best code each synthesis thread showed."""

    def __init__(self, names: list[str]) -> None:
        self.best: dict[str, tuple[float, np.ndarray | None]] = {n: (-np.inf, None) for n in names}

    def write_generation(self, generation: int, record: Mapping[str, Any], best_images: Any = None) -> None:
        for name, node in record["threads"].items():
            scores = np.asarray(node["scores"], dtype=np.float64)
            if np.isfinite(scores).any():
                i = int(np.nanargmax(scores))
                if scores[i] > self.best[name][0]:
                    self.best[name] = (float(scores[i]), np.asarray(node["codes"])[i].copy())


def _by_evolution(twin: Subject, generator: Generator, targets: Sequence[tuple[str, int]], *,
                  settings: SynthesisSettings, mean: np.ndarray, std: np.ndarray, temperature: float, seed: int,
                  assembly: Any, optimizer_node: Any, tick: Any = None) -> np.ndarray:
    from latentopt.assembly import MAX_POPULATION, thread_code_seed, thread_optimizer_seed
    from latentopt.builtins.population import OneHot, Stretch
    from latentopt.experiment import Thread
    from latentopt.experiments.evolve import Evolution

    if not isinstance(optimizer_node, Mapping) or "name" not in optimizer_node:
        raise ConfigError("experiment.synthesis.method=evolution needs an optimizer group (optimizer=...)")
    population = integer(optimizer_node.get("population_size", 40), "optimizer.population_size", minimum=1,
                         maximum=MAX_POPULATION)
    node = {k: v for k, v in optimizer_node.items() if k != "population_size"}
    threads = []
    for i, (kind, channel) in enumerate(targets):
        objective: Any = (Stretch(channel=channel) if kind == "stretch" else
                          OneHot(channel=channel, mean=mean.tolist(), std=std.tolist(), temperature=temperature))
        initial = generator.initial_codes(population, rng=np.random.default_rng(thread_code_seed(seed + 7, i)))
        optimizer = assembly.component("optimizer", node, "optimizer", initial,
                                       seed=thread_optimizer_seed(seed + 7, i))
        threads.append(Thread(f"{kind}_{channel}", generator, optimizer, objective))
    keeper = _Keeper([t.name for t in threads])
    evolution = Evolution(threads, twin, seed=seed, generations=settings.generations, recorder=keeper,
                          on_generation=None if tick is None else lambda result: tick(1))
    evolution.run()
    codes = [keeper.best[t.name][1] for t in threads]
    if any(c is None for c in codes):
        raise ConfigError("experiment.synthesis: the twin gave no finite score to a controller thread")
    return np.stack([np.asarray(c) for c in codes]).astype(np.float32)
