"""Noise streams and resume: noise changes from generation to generation, repeats for the same seed and
generation, and a run stopped after k generations and resumed equals the uninterrupted run exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY, run_cli
from omegaconf import DictConfig

import latentopt
from latentopt.blocks import noise_rng
from latentopt.builtins.generators import PixelGenerator
from latentopt.builtins.noise import NoiseModel
from latentopt.builtins.objectives import SingleUnit
from latentopt.builtins.subjects import CNNUnitSubject, GaborV1Subject
from latentopt.experiment import Thread
from latentopt.experiments.evolve import Evolution
from latentopt.optimizer import Optimizer

REFERENCES = "experiment.references=[astronaut,chelsea,coffee]"
NOISE = {
    "multiplicative": ["subject.noise.kind=multiplicative", "subject.noise.level=0.3"],
    "poisson": ["subject.noise.kind=poisson", "subject.noise.gain=20.0"],
}
OPTIMIZERS = {
    "ga_ponce": [],
    "cmaes_diag": ["optimizer=cmaes_diag", "optimizer.sigma0=0.5"],
}


def _tiny(*extra: str) -> list[str]:
    """TINY with the references shown every generation (the same images: only the noise changes them)."""
    args = [a for a in TINY if not a.startswith("experiment.references")] + [REFERENCES, *extra]
    if any(a.startswith("optimizer=") and a != "optimizer=ga_ponce" for a in extra):
        args = [a for a in args if not a.startswith("optimizer.n_elite")]
    return args


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="latentopt.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _run(run_dir: Path, overrides: list[str]) -> latentopt.RunRecord:
    """A run through the CLI's own ``run_from_config``, in this process (seconds, not a subprocess each)."""
    from latentopt.cli import run_from_config

    run_from_config(_compose(overrides), run_dir)
    return latentopt.load_run(run_dir)


def _resume(run_dir: Path, generations: int, monkeypatch: pytest.MonkeyPatch) -> latentopt.RunRecord:
    """``latentopt-resume RUN experiment.generations=N``, in this process."""
    from latentopt.cli import resume_main

    monkeypatch.setenv("LATENTOPT_TCMALLOC", "0")  # never re-execute the test process
    resume_main([str(run_dir), f"experiment.generations={generations}"])
    return latentopt.load_run(run_dir)


def _assert_same_run(a: latentopt.RunRecord, b: latentopt.RunRecord) -> None:
    assert a.generations == b.generations
    for name in ("codes", "scores", "responses", "reference_responses"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_noise_stream_depends_on_seed_and_generation_only():
    draws = {(s, g): noise_rng(s, g).standard_normal(16) for s in (0, 1) for g in (0, 1, 2, 7)}
    for (s, g), x in draws.items():
        np.testing.assert_array_equal(x, noise_rng(s, g).standard_normal(16))  # reproducible
        for (s2, g2), y in draws.items():
            if (s, g) != (s2, g2):
                assert not np.allclose(x, y), ((s, g), (s2, g2))


@pytest.mark.parametrize("kind", list(NOISE))
def test_subject_noise_differs_between_generations_and_repeats_for_the_same_seed(tmp_path, kind):
    """The same reference images are shown every generation: noise-free their responses are equal, with
    noise every generation draws afresh, and the same seed draws the same again."""
    generations = ["experiment.generations=4"]
    clean = _run(tmp_path / "clean", _tiny(*generations)).reference_responses
    assert (clean > 0.05).all(), "the reference responses are too small to see the noise"
    np.testing.assert_array_equal(clean, np.broadcast_to(clean[0], clean.shape))

    noisy = _run(tmp_path / "a", _tiny(*generations, *NOISE[kind])).reference_responses
    again = _run(tmp_path / "b", _tiny(*generations, *NOISE[kind])).reference_responses
    np.testing.assert_array_equal(noisy, again)
    for g in range(4):
        for h in range(g):
            assert not np.array_equal(noisy[g], noisy[h]), f"generations {h} and {g} drew the same noise"
    other_seed = _run(tmp_path / "c", _tiny(*generations, *NOISE[kind], "seed=1")).reference_responses
    assert not np.array_equal(noisy, other_seed)


class _SameCodes(Optimizer):
    """Asks the same codes every generation: any change in the responses is the subject's noise."""

    def __init__(self, initial_codes: np.ndarray) -> None:
        super().__init__(initial_codes)
        self.codes = np.asarray(initial_codes, np.float32).copy()

    def _ask(self) -> np.ndarray:
        return self.codes

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        pass

    def _state_dict(self) -> dict[str, Any]:
        return {}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _responses_of_the_same_block(noise: dict[str, Any], seed: int, start: int = 0) -> np.ndarray:
    """Responses of a GaborV1 cell to the same 10 pixel images in 4 generations of the loop from ``start``."""
    generator = PixelGenerator(image_size=32, resolution=4)
    codes = generator.initial_codes(10, rng=np.random.default_rng(0))
    subject = GaborV1Subject(size=32, gain=1000.0, noise=noise, device="cpu")
    evolution = Evolution([Thread("main", generator, _SameCodes(codes), SingleUnit())], subject, seed=seed,
                          generations=start + 4)
    return np.stack([r.responses for r in evolution.run(start_block=start)])


@pytest.mark.parametrize("noise", [{"kind": "multiplicative", "level": 0.3}, {"kind": "poisson", "gain": 5.0}],
                         ids=["multiplicative", "poisson"])
def test_the_same_block_gets_fresh_noise_every_generation_and_the_same_for_the_same_seed(noise):
    clean = _responses_of_the_same_block({"kind": "none"}, seed=0)
    assert (clean > 0.01).all()
    np.testing.assert_array_equal(clean, np.broadcast_to(clean[0], clean.shape))
    noisy = _responses_of_the_same_block(noise, seed=0)
    for g in range(4):
        for h in range(g):
            assert not np.array_equal(noisy[g], noisy[h]), f"generations {h} and {g} drew the same noise"
    np.testing.assert_array_equal(noisy, _responses_of_the_same_block(noise, seed=0))
    assert not np.array_equal(noisy, _responses_of_the_same_block(noise, seed=1))
    # a loop started at generation 2 (a resume) draws generation 2's noise, not generation 0's
    np.testing.assert_array_equal(_responses_of_the_same_block(noise, seed=0, start=2)[:2], noisy[2:])


@pytest.mark.parametrize("noise", [NoiseModel("multiplicative", level=0.3), NoiseModel("poisson", gain=20.0)],
                         ids=["multiplicative", "poisson"])
def test_in_silico_monkey_draws_its_noise_from_the_generations_stream(noise):
    """The CNN subject applies its noise model to the clean responses with the stream it is given."""
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    subject = CNNUnitSubject(layer="V1", channels=[0, 5, 9], noise=noise, device="cpu")
    try:
        with torch.no_grad():
            clean = subject.respond_torch(images).double().numpy()
        ids = [f"i{k}" for k in range(6)]
        by_generation = [subject.respond(images, image_ids=ids, rng=noise_rng(0, g)) for g in range(3)]
        for g, noisy in enumerate(by_generation):
            np.testing.assert_allclose(noisy, noise.apply(clean, noise_rng(0, g)), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(noisy, subject.respond(images, image_ids=ids, rng=noise_rng(0, g)))
        assert not np.array_equal(by_generation[0], by_generation[1])
        assert not np.array_equal(by_generation[1], by_generation[2])
    finally:
        subject.close()


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_run_resumed_after_k_generations_equals_the_uninterrupted_run(tmp_path, monkeypatch, optimizer):
    """Every generation's codes, scores and noisy responses; catches a resume restoring another
    generation's optimizer state or noise stream."""
    args = _tiny(*OPTIMIZERS[optimizer], *NOISE["multiplicative"])
    straight = _run(tmp_path / "straight", [*args, "experiment.generations=7"])
    _run(tmp_path / "resumed", [*args, "experiment.generations=3"])
    resumed = _resume(tmp_path / "resumed", 7, monkeypatch)
    _assert_same_run(straight, resumed)
    assert straight.optimizer_state()["generation"] == resumed.optimizer_state()["generation"] == 7


def test_noisy_cli_run_stopped_and_resumed_equals_the_uninterrupted_run(tmp_path):
    """The console scripts themselves: ``latentopt ... experiment.generations=3`` then
    ``latentopt-resume RUN experiment.generations=6`` equals ``latentopt ... experiment.generations=6``."""
    args = _tiny(*NOISE["multiplicative"])
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_cli([*args, "experiment.generations=6", f"hydra.run.dir={straight}"])
    run_cli([*args, "experiment.generations=3", f"hydra.run.dir={resumed}"])
    run_cli([str(resumed), "experiment.generations=6"], entry="resume_main")
    a, b = latentopt.load_run(straight), latentopt.load_run(resumed)
    assert a.generations == 6
    _assert_same_run(a, b)


def test_a_run_recorded_with_the_old_keys_resumes_as_if_never_stopped(tmp_path):
    """cmaes_diag (``centre: mean`` before the rename) on one channel (``unit: 0``): stopped after 2
    generations and resumed to 4, it equals the uninterrupted 4-generation run."""
    args = [a for a in TINY if not a.startswith("optimizer")] + ["optimizer=cmaes_diag",
                                                                  "optimizer.population_size=8", "optimizer.sigma0=0.5"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    run_cli([*args, "experiment.generations=4", f"hydra.run.dir={whole}"])
    run_cli([*args, "experiment.generations=2", f"hydra.run.dir={part}"])
    config = (part / "config.yaml").read_text()
    assert "init_mean: codes" in config and "channel: 0" in config
    old_spelling = config.replace("init_mean: codes", "centre: mean").replace("channel: 0", "unit: 0")
    (part / "config.yaml").write_text(old_spelling)
    run_cli([str(part), "experiment.generations=4"], entry="resume_main")
    resumed, uninterrupted = latentopt.load_run(part), latentopt.load_run(whole)
    assert uninterrupted.generations == 4
    _assert_same_run(uninterrupted, resumed)
    effective = yaml.safe_load(json.loads((part / "resumes.jsonl").read_text().splitlines()[-1])["effective_config"])
    assert effective["optimizer"]["init_mean"] == "codes" and "centre" not in effective["optimizer"]
    assert effective["objective"] == {"name": "single_unit", "channel": 0}
