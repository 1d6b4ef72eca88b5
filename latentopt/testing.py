"""Contract checks every component must pass; plugin authors import them in their own tests.

Example (a plugin's test file)::

    from latentopt.testing import check_generator
    from my_plugin import MyGenerator

    def test_contract():
        check_generator(MyGenerator(device="cpu"))

Each ``check_*`` raises ``AssertionError`` with a message naming what is wrong. Every component's
``provenance()`` (what a run records about it) must pass :func:`check_provenance`.

Every registered component is contract-tested by latentopt's own suite through
:func:`contract_instance`: a component class provides a ``contract_instance()`` classmethod that
builds a small, offline instance (generators, subjects, objectives), and optimizers may provide
``contract_kwargs()`` (keyword arguments for :func:`check_optimizer`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.optimizer import Optimizer
from latentopt.records import load_tree, tree_to_npz_bytes
from latentopt.subject import Subject


def check_provenance(component: Any) -> None:
    """``component.provenance()`` is a JSON-serialisable dict naming the component's class first.

    The form shared by generators, subjects, objectives and optimizers:
    ``{"class": type(component).__name__, <settings>...}``, written as is into ``provenance.json``.
    """
    name = type(component).__name__
    record = component.provenance()
    assert isinstance(record, dict), f"{name}.provenance() must return a dict, got {type(record).__name__}"
    assert record and next(iter(record)) == "class" and record["class"] == name, \
        f'{name}.provenance() must start with {{"class": "{name}"}} (extend super().provenance()), got {record!r}'
    try:
        json.dumps(record)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{name}.provenance() is not JSON-serialisable: {err}") from err


EXTREME_NORM_FACTORS = (10.0, 100.0)
"""Multiples of the initial codes' norm at which :func:`check_generator` also asks for images in [0, 1]:
optimizers move codes far out (SphereCMA keeps them at 4.7 x that norm, CMA-ES and GAs let them grow)."""


def check_generator(generator: Generator, *, n: int = 3, seed: int = 0) -> None:
    """Shapes, dtype, range, determinism and seeding of a generator; the range also far from the initial codes.

    Images must be finite and in [0, 1] for the initial codes, for the same directions at
    :data:`EXTREME_NORM_FACTORS` times their mean norm, and at the corners of ``generator.code_bounds``
    when the generator declares bounds (:func:`check_extreme_codes`).
    """
    assert isinstance(generator.latent_dim, int) and generator.latent_dim > 0, "latent_dim must be a positive int"
    codes = generator.initial_codes(n, rng=np.random.default_rng(seed))
    assert codes.shape == (n, generator.latent_dim), f"initial_codes shape {codes.shape}"
    assert codes.dtype == np.float32, f"initial_codes dtype {codes.dtype}, expected float32"
    again = generator.initial_codes(n, rng=np.random.default_rng(seed))
    assert np.array_equal(codes, again), "initial_codes is not reproducible for a given rng seed"
    images = generator.generate(codes)
    assert tuple(images.shape) == (n, 3, *generator.image_size), f"images shape {tuple(images.shape)}"
    assert images.dtype == torch.float32, f"images dtype {images.dtype}"
    assert torch.isfinite(images).all(), "images contain NaN or inf"
    assert images.min() >= 0 and images.max() <= 1, "images must lie in [0, 1]"
    assert torch.equal(images, generator.generate(codes)), "generate is not deterministic"
    single = generator.generate(codes[:1])
    assert torch.allclose(single, images[:1], atol=1e-4), "an image depends on the rest of its batch"
    if generator.differentiable:
        torch_codes = torch.from_numpy(codes[:1]).requires_grad_(True)
        generator.generate(torch_codes).mean().backward()
        assert torch_codes.grad is not None and torch.isfinite(torch_codes.grad).all(), "no finite gradient"
    check_extreme_codes(generator, codes)
    check_provenance(generator)


def extreme_codes(generator: Generator, codes: np.ndarray) -> dict[str, np.ndarray]:
    """``{what: (m, d) float32 codes}`` far from ``codes`` (initial codes ``(n, d)``): the same directions at
    :data:`EXTREME_NORM_FACTORS` times their mean norm, and, for a generator that declares
    ``code_bounds = (low, high)``, the all-low and all-high codes and two alternating corners (there the
    scaled codes are clipped into the bounds: codes outside them are not valid codes)."""
    codes = np.asarray(codes, dtype=np.float64)
    norms = np.linalg.norm(codes, axis=1, keepdims=True)
    # a zero initial code has no direction: take a seeded random one
    fallback = np.random.default_rng(0).standard_normal(codes.shape)
    directions = np.where(norms > 0, codes, fallback)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    scale = float(norms.mean()) if float(norms.mean()) > 0 else 1.0
    cases = {f"{factor:g} x the initial codes' norm (|code| = {factor * scale:.4g})": directions * factor * scale
             for factor in EXTREME_NORM_FACTORS}
    if generator.code_bounds is not None:
        low, high = (float(b) for b in generator.code_bounds)
        cases = {f"{what}, clipped to code_bounds": np.clip(scaled, low, high) for what, scaled in cases.items()}
        corners = np.full((4, codes.shape[1]), low)
        corners[1] = high
        corners[2, ::2] = high
        corners[3, 1::2] = high
        cases[f"the corners of code_bounds ({low:g}, {high:g})"] = corners
    return {what: extreme.astype(np.float32) for what, extreme in cases.items()}


def check_extreme_codes(generator: Generator, codes: np.ndarray) -> None:
    """Images stay finite and in [0, 1] at the codes of :func:`extreme_codes` (a generator whose output leaves
    the range for large codes must clamp, or squash, its images)."""
    for what, extreme in extreme_codes(generator, codes).items():
        images = generator.generate(extreme)
        name = type(generator).__name__
        assert torch.isfinite(images).all(), f"{name}: images contain NaN or inf at codes of {what}"
        low, high = float(images.min()), float(images.max())
        assert low >= 0 and high <= 1, (
            f"{name}: images must lie in [0, 1] also at codes of {what}; got values in [{low:.4g}, {high:.4g}] "
            f"(clamp or squash the output of _generate)")


def check_subject(subject: Subject, *, image_size: tuple[int, int] = (64, 64), n: int = 4) -> None:
    """Shapes and dtype of a subject's responses; seeded noise is reproducible."""
    images = torch.rand(n, 3, *image_size, generator=torch.Generator().manual_seed(0))
    ids = [f"contract_{k}" for k in range(n)]
    first = subject.respond(images, image_ids=ids, rng=np.random.default_rng(1))
    assert first.shape[:2] == (n, subject.n_channels), f"responses shape {first.shape}"
    assert first.ndim in (2, 3), "responses must be (n, channels) or (n, channels, time_bins)"
    if first.ndim == 3:
        assert subject.time_bins_ms is not None and len(subject.time_bins_ms) == first.shape[2] + 1, \
            "time-binned responses need time_bins_ms with time_bins + 1 edges"
    second = subject.respond(images, image_ids=ids, rng=np.random.default_rng(1))
    assert np.array_equal(first, second, equal_nan=True), "the same rng seed must give the same responses"
    if subject.differentiable:
        x = images.clone().requires_grad_(True)
        subject.respond_torch(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), "respond_torch gives no finite gradient"
    check_provenance(subject)


def check_objective(objective: Objective, *, channels: int = 3) -> None:
    """Scores have shape (n,), propagate NaN rows, and agree between numpy and torch."""
    responses = np.random.default_rng(0).normal(size=(5, channels))
    responses[2] = np.nan
    scores = np.asarray(objective.score(responses))
    assert scores.shape == (5,), f"scores shape {scores.shape}"
    assert np.isnan(scores[2]) and np.isfinite(np.delete(scores, 2)).all(), "a NaN response row must score NaN"
    as_torch = objective.score(torch.from_numpy(responses)).numpy()
    assert np.allclose(scores, as_torch, equal_nan=True), "numpy and torch scores differ"
    binned = np.repeat(responses[:, :, None], 4, axis=2)
    assert np.allclose(objective.score(binned), scores, equal_nan=True), "time bins must be averaged"
    check_provenance(objective)


def quadratic_neuron(dim: int, *, seed: int = 0, scale: float = 1.0) -> Callable[[Any], Any]:
    """An analytic model neuron in latent space: ``score = -|code - target|^2 / dim`` (max 0).

    Takes numpy codes ``(n, d)`` (returns numpy scores) or torch codes (returns differentiable torch
    scores: the white-box model :func:`check_optimizer` gives to white-box optimizers)."""
    target = np.random.default_rng(seed).normal(0, scale, dim)

    def score(codes: Any) -> Any:
        if isinstance(codes, torch.Tensor):
            return -((codes - torch.as_tensor(target, dtype=codes.dtype)) ** 2).sum(1) / dim
        return -np.sum((codes - target) ** 2, axis=1) / dim

    return score


def check_optimizer(
    factory: Callable[..., Optimizer],
    *,
    dim: int = 16,
    population_size: int = 12,
    generations: int = 40,
    min_gain: float = 0.3,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """The optimizer contract: shapes, seeding, NaN scores, exact state round trips, improvement.

    A white-box optimizer (``needs_white_box``) gets the test neuron's differentiable form.

    Args:
        factory: ``factory(initial_codes, seed=..., **kwargs)`` returns an Optimizer.
        dim: code dimension of the test problem.
        population_size: number of initial codes.
        generations: budget for the improvement check.
        min_gain: the best score must close at least this fraction of the gap between the initial
            mean score and the optimum (0) of a quadratic neuron.
        kwargs: extra keyword arguments for the factory.
    """
    kwargs = dict(kwargs or {})
    rng = np.random.default_rng(0)
    initial = rng.standard_normal((population_size, dim)).astype(np.float32)
    neuron = quadratic_neuron(dim, seed=1, scale=1.0)

    def make(seed: int = 3, **extra: Any) -> Optimizer:
        optimizer = factory(initial.copy(), seed=seed, **{**kwargs, **extra})
        if optimizer.needs_white_box:
            optimizer.attach_white_box(neuron)
        return optimizer

    # shapes and seeding
    a, b = make(), make()
    check_provenance(a)
    codes_a, codes_b = a.ask(), b.ask()
    assert codes_a.ndim == 2 and codes_a.shape[1] == dim, f"ask returned shape {codes_a.shape}"
    assert codes_a.dtype == np.float32, "ask must return float32"
    assert np.array_equal(codes_a, codes_b), "the same seed must give the same first ask"
    a.tell(codes_a, neuron(codes_a))
    b.tell(codes_b, neuron(codes_b))
    assert np.array_equal(a.ask(), b.ask()), "the same seed and scores must give the same second ask"

    # state round trip mid-run, through the on-disk format, after a generation with NaN scores
    opt = make()
    for generation in range(3):
        codes = opt.ask()
        scores = neuron(codes)
        if generation == 1:
            scores[::3] = np.nan
        opt.tell(codes, scores)
    clone = make(seed=99)
    clone.load_state_dict(_through_disk(opt.state_dict()))
    for _ in range(3):
        x, y = opt.ask(), clone.ask()
        assert np.array_equal(x, y), "after load_state_dict the optimizer must propose the same codes"
        opt.tell(x, neuron(x))
        clone.tell(y, neuron(y))
    assert opt.generation == clone.generation and opt.evaluations == clone.evaluations
    assert opt.nan_scores == clone.nan_scores, "the NaN count must survive a state round trip"

    # a state saved between ask and tell accepts the scores of the codes that were asked
    pending = opt.ask()
    clone = make(seed=99)
    clone.load_state_dict(_through_disk(opt.state_dict()))
    for optimizer in (opt, clone):
        optimizer.tell(pending, neuron(pending))
    assert np.array_equal(opt.ask(), clone.ask()), "a state saved with a pending ask must resume it"

    # NaN scores, under every policy the optimizer supports: a partly and a fully unscored
    # generation neither crash nor poison the state
    for policy in make().supported_nan_policies:
        opt = make(nan_policy=policy)
        codes = opt.ask()
        scores = neuron(codes)
        scores[::3] = np.nan
        opt.tell(codes, scores)
        codes = opt.ask()
        assert np.isfinite(codes).all(), f"NaN scores produced non-finite codes (nan_policy={policy})"
        opt.tell(codes, np.full(codes.shape[0], np.nan))
        assert np.isfinite(opt.ask()).all(), f"an all-NaN generation produced non-finite codes (nan_policy={policy})"
        assert opt.nan_scores == len(scores[::3]) + codes.shape[0], "NaN scores were not counted"

    # misuse is an error, not silence
    opt = make()
    try:
        opt.tell(initial, neuron(initial))
    except RuntimeError:
        pass
    else:
        raise AssertionError("tell without ask must raise")

    # improvement on a known neuron
    opt = make()
    start = float(np.mean(neuron(initial)))
    best = -np.inf
    for _ in range(generations):
        codes = opt.ask()
        s = neuron(codes)
        best = max(best, float(s.max()))
        opt.tell(codes, s)
    assert opt.best is not None and np.isclose(opt.best[1], best), "best must be the highest score told"
    assert np.isclose(neuron(opt.best[0][None])[0], best, atol=1e-4), "best code does not give the best score"
    gain = (best - start) / (0.0 - start)
    assert gain >= min_gain, f"closed only {gain:.2f} of the gap to the optimum (needed {min_gain})"


def _through_disk(state: dict[str, Any]) -> Any:
    """``state`` written in the records' npz format and read back."""
    import io

    return load_tree(io.BytesIO(tree_to_npz_bytes({"s": state})))["s"]


def contract_instance(factory: Callable[..., Any]) -> Any:
    """A small offline instance of a registered generator, subject or objective for the checks."""
    make = getattr(factory, "contract_instance", None)
    if make is None:
        raise AssertionError(f"{getattr(factory, '__qualname__', factory)} has no contract_instance() classmethod")
    return make()


def contract_kwargs(factory: Callable[..., Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`check_optimizer` that an optimizer class declares (default none)."""
    make = getattr(factory, "contract_kwargs", None)
    return dict(make()) if make is not None else {}


def check_experiment(config: dict[str, Any], folder: Any, *, registry: Any = None, stop_after: int = 1) -> None:
    """The contract of an experiment: records, provenance, and a resume that ends where an uninterrupted run does.

    Runs ``config`` (a plain config whose ``experiment.name`` is the experiment) into ``folder/full``; checks
    that every block is recorded under the experiment's name and that ``provenance.json`` names the
    experiment and its components with their distributions; then copies the first ``stop_after`` blocks
    to ``folder/resumed`` (what a kill after that block leaves: block files are written atomically), resumes
    it and checks that every block's ``block``, ``threads`` and ``design`` records equal the uninterrupted run's.

    Args:
        config: the plain config; it should make at least ``stop_after + 1`` blocks.
        folder: a fresh folder (``tmp_path``).
        registry: the plugin registry holding the experiment (default: everything installed).
        stop_after: blocks kept before the resume.
    """
    import json
    import shutil
    from pathlib import Path

    from latentopt.launch import run_experiment
    from latentopt.records import GENERATION_DIR, load_generation
    from latentopt.run_record import load_run

    full, resumed = Path(folder) / "full", Path(folder) / "resumed"
    name = config["experiment"]["name"]
    run_experiment(config, full, config_yaml=json.dumps(config), registry=registry)
    record = load_run(full)
    assert record.generations > stop_after, f"{name}: {record.generations} blocks; the contract needs more"
    for g in range(record.generations):
        assert record.block(g).experiment == name, f"{name}: block {g} is recorded as {record.block(g).experiment}"
    provenance = json.loads((full / "provenance.json").read_text())
    assert provenance.get("experiment", {}).get("name") == name, f"{name}: provenance.json names no experiment"
    for key in ("experiment", "subject"):
        assert provenance[key].get("distribution"), f"{name}: provenance.json has no distribution for {key}"
    shutil.copytree(full, resumed)
    for g in range(stop_after, record.generations):
        (resumed / GENERATION_DIR / f"gen_{g:05d}.npz").unlink()
    run_experiment(config, resumed, config_yaml=json.dumps(config), resume=True, registry=registry)
    assert load_run(resumed).generations == record.generations, f"{name}: the resume made another number of blocks"
    for g in range(record.generations):
        a, b = load_generation(full, g), load_generation(resumed, g)
        for part in ("block", "threads", "design"):
            _assert_same_tree(a.get(part, {}), b.get(part, {}), f"{name}: block {g} {part}")


def _assert_same_tree(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for key in a:
            _assert_same_tree(a[key], b[key], f"{where}/{key}")
        return
    assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f"), \
        f"{where}: the resumed run differs from the uninterrupted one"
