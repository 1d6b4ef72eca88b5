"""Core hooks the rig needs, kept general: block numbers and extras from subjects, evoked responses
from time bins, operator lines, and several threads per block from a config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from latentopt.builtins.generators import PixelGenerator
from latentopt.builtins.objectives import SingleUnit
from latentopt.builtins.optimizers import RandomSearch
from latentopt.cli import ConfigError, build_evolution, thread_specs
from latentopt.experiment import Thread, operator_line
from latentopt.experiments.evolve import Evolution
from latentopt.records import RunWriter, load_generation, load_run
from latentopt.responses import evoked_response
from latentopt.subject import Subject

EDGES = np.arange(0.0, 251.0, 10.0)


class BinnedSubject(Subject):
    """Mean luminance as a PSTH: 1 per bin before 50 ms, 1 + 10 * luminance after; NaN for image 0."""

    time_bins_ms = EDGES

    def __init__(self) -> None:
        self.channel_names = ["lum"]
        self.blocks: list[int] = []

    def start_block(self, block: int) -> None:
        self.blocks.append(block)

    def respond(self, images: torch.Tensor, *, image_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        lum = images.mean(dim=(1, 2, 3)).double().numpy()
        psth = np.where(EDGES[:-1] >= 50, 1.0, 1.0)[None, None, :] + (EDGES[:-1] >= 50) * 10 * lum[:, None, None]
        psth[0] = np.nan
        self._last = {"block": self.blocks[-1], "raw": {"psth": psth, "file": b"\x00rig"}, "ids": list(image_ids)}
        return psth

    def block_extras(self) -> dict[str, Any]:
        return self._last


def test_evoked_response_subtracts_the_baseline_window() -> None:
    psth = np.where(EDGES[:-1] >= 50, 3.0, 1.0)[None, None, :].repeat(2, axis=1)
    np.testing.assert_allclose(evoked_response(psth, EDGES), [[2.0, 2.0]])
    np.testing.assert_allclose(evoked_response(psth, EDGES, baseline_window_ms=None), [[3.0, 3.0]])
    with pytest.raises(ValueError, match="no time bin"):
        evoked_response(psth, EDGES, response_window_ms=(300.0, 400.0))
    scores = SingleUnit().score(psth, time_bins_ms=EDGES)
    np.testing.assert_allclose(scores, [2.0])


def test_extras_are_recorded_under_subject_and_scores_use_windows(tmp_path) -> None:
    subject = BinnedSubject()
    generator = PixelGenerator(image_size=16, resolution=4, device="cpu")
    optimizer = RandomSearch(generator.initial_codes(5, rng=np.random.default_rng(0)), seed=0)
    writer = RunWriter(tmp_path)
    writer.start(config_yaml="x: 1\n", provenance={})
    results = Evolution([Thread("main", generator, optimizer, SingleUnit())], subject, generations=2,
                        recorder=writer).run()
    assert subject.blocks == [0, 1]
    gen = load_generation(tmp_path, 1)
    assert gen["subject"]["block"] == 1 and gen["subject"]["raw"]["file"] == b"\x00rig"
    assert gen["subject"]["raw"]["psth"].shape == (5, 1, 25)  # raw bins kept
    assert gen["block"]["responses"].shape == (5, 1, 25)
    evoked = gen["block"]["responses"][1:, 0, 5:20].mean(axis=1) - 1.0  # 50-200 ms minus 0-45 ms
    np.testing.assert_allclose(gen["threads"]["main"]["scores"][1:], evoked)
    assert np.isnan(gen["threads"]["main"]["scores"][0])
    assert [s["block"] for s in load_run(tmp_path).subject] == [0, 1]
    line = operator_line(results[1])
    assert line.startswith("block 1 | shown 4/5 | main best ") and line.endswith(" s")


def compose_cfg(*overrides: str) -> Any:
    with initialize_config_module(config_module="latentopt.conf", version_base="1.3"):
        base = ["generator=pixel", "generator.image_size=16", "generator.resolution=4", "subject=gabor_v1",
                "experiment.references=[]", "device=cpu"]
        return compose(config_name="config", overrides=[*base, *overrides])


def test_default_is_one_thread_main() -> None:
    evolution = build_evolution(compose_cfg())
    assert [t.name for t in evolution.threads] == ["main"]


def test_threads_merge_over_top_level_groups_or_replace_them() -> None:
    cfg = compose_cfg("optimizer=cmaes_diag", "optimizer.population_size=6",
                      "experiment.threads={a:{},b:{optimizer:{sigma0:0.5,population_size:4}},"
                      "c:{generator:{name:fourier,image_size:32,max_frequency:2,device:cpu}}}")
    specs = dict(thread_specs(cfg))
    assert specs["b"]["optimizer"]["name"] == "cmaes" and specs["b"]["optimizer"]["sigma0"] == 0.5
    assert specs["c"]["generator"]["name"] == "fourier" and "resolution" not in specs["c"]["generator"]
    evolution = build_evolution(cfg)
    a, b, c = evolution.threads
    assert (a.name, b.name, c.name) == ("a", "b", "c")
    assert a.generator is b.generator and c.generator is not a.generator  # identical configs share one
    assert [len(t.optimizer.ask()) for t in evolution.threads] == [6, 4, 6]
    assert evolution.block_size == (32, 32)
    result = evolution.step(0)
    assert set(result.thread_scores) == {"a", "b", "c"} and len(result.image_ids) == 16
    assert result.image_ids[6].startswith("g00000_b_")


@pytest.mark.parametrize(("threads", "message"), [
    ("{bad/name:{}}", "thread name"), ("{a:{subject:{}}}", "unknown key"),
])
def test_bad_thread_configs_are_one_line_errors(threads: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        thread_specs(compose_cfg(f"experiment.threads={threads}"))


def test_the_run_tells_a_run_length_schedule_its_planned_generations() -> None:
    """SphereCMA's default schedule_generations: null decays over the run: experiment.generations, or the
    budget / λ; a number stays as configured; the GA ignores the hint."""
    from latentopt.experiments.evolve import planned_generations

    by_generations = build_evolution(compose_cfg("optimizer=sphere_cma", "optimizer.population_size=6",
                                                 "experiment.generations=7"))
    assert by_generations.threads[0].optimizer.schedule_generations == 7
    by_budget = build_evolution(compose_cfg("optimizer=sphere_cma", "optimizer.population_size=6",
                                            "experiment.budget=100"))
    assert by_budget.threads[0].optimizer.schedule_generations == 17  # ceil(100 / 6)
    fixed = build_evolution(compose_cfg("optimizer=sphere_cma", "optimizer.population_size=6",
                                        "optimizer.schedule_generations=75", "experiment.generations=7"))
    assert fixed.threads[0].optimizer.schedule_generations == 75
    optimizer = by_generations.threads[0].optimizer
    assert optimizer.provenance()["schedule_generations"] == 7 and optimizer.provenance()["schedule_from_run"]
    assert planned_generations(object(), 5, None) == 5 and planned_generations(object(), 5, 100) is None
