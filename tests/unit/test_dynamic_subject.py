"""The dynamic in-silico subject, checked from outside: its counts follow the documented model computed
from an independent forward pass, each component starts at its latency, its Poisson noise has the model's
mean and variance, its evoked response is positive for a driving image, and an evolution runs with it."""

from __future__ import annotations

import inspect
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

from latentopt.builtins.dynamic import DynamicCNNSubject, alpha_kernel
from latentopt.builtins.subjects import load_efficientnet_lite0
from latentopt.checks import ConfigError
from latentopt.references import DEFAULT_REFERENCES, load_references
from latentopt.responses import evoked_response

ROOT = Path(__file__).resolve().parents[2]
EARLY, LATE = "_blocks.6", "_blocks.12"  # the V4 preset and the next area up (PIT), from the README
CENTRE = {EARLY: (7, 7), LATE: (3, 3)}  # H // 2, W // 2 of the 14 x 14 and 7 x 7 maps at 224 px
EDGES = np.arange(0.0, 201.0, 10.0)
BASELINE_COUNT = 5.0 * 10.0 / 1000.0  # 5 Hz for 10 ms


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Six photographs (none of the four the subject's scales come from), 32 x 32."""
    return load_references(["cat", "clock", "grass", "gravel", "camera", "brick"], (32, 32))[1]


@pytest.fixture(scope="module")
def subject():
    made = DynamicCNNSubject(layer="V4", channels=list(range(80)), poisson=False, device="cpu")
    yield made
    made.close()


def _independent(images: torch.Tensor, names: tuple[str, ...] = (EARLY, LATE)) -> dict[str, np.ndarray]:
    """``(n, 80)`` activations at the centre of each layer, from a separately loaded network and hooks."""
    model = load_efficientnet_lite0()
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o.detach().clone()))
               for n in names]
    x = F.interpolate(images.float(), size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        model(x * 2.0 - 1.0)
    for handle in handles:
        handle.remove()
    return {n: maps[n][:, :80, CENTRE[n][0], CENTRE[n][1]].double().numpy() for n in names}


@pytest.fixture(scope="module")
def activations(images) -> dict[str, np.ndarray]:
    return _independent(images)


@pytest.fixture(scope="module")
def scales() -> dict[str, float]:
    """The documented scale: mean relu activation over the 4 default photographs and all channels."""
    photographs = load_references(DEFAULT_REFERENCES, (224, 224))[1]
    model = load_efficientnet_lite0()
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o.detach().clone()))
               for n in (EARLY, LATE)]
    with torch.no_grad():
        model(photographs * 2.0 - 1.0)
    for handle in handles:
        handle.remove()
    return {n: float(torch.relu(maps[n][:, :, CENTRE[n][0], CENTRE[n][1]].double()).mean()) for n in (EARLY, LATE)}


def _kernel_per_bin(latency: float, tau: float) -> np.ndarray:
    """``(20,)`` integral over each bin of s / tau * exp(1 - s / tau), s = t - latency >= 0, by quadrature."""
    def k(t: float) -> float:
        s = max(t - latency, 0.0) / tau
        return s * math.exp(1.0 - s)

    return np.array([integrate.quad(k, a, b, points=[latency] if a < latency < b else None)[0]
                     for a, b in itertools.pairwise(EDGES)])


def _model_counts(a_early: np.ndarray, a_late: np.ndarray, scales: dict[str, float]) -> np.ndarray:
    """The class docstring's formula with the defaults: ``(n, channels, 20)`` expected counts per bin."""
    early = 40.0 * np.maximum(a_early / scales[EARLY], 0.0)[..., None] * _kernel_per_bin(50.0, 15.0)
    late = 40.0 * np.maximum(a_late / scales[LATE], 0.0)[..., None] * _kernel_per_bin(100.0, 30.0)
    return (5.0 * 10.0 + early + late) / 1000.0


def _respond(subject: DynamicCNNSubject, images: torch.Tensor, seed: int = 0) -> np.ndarray:
    return subject.respond(images, image_ids=[f"i{k}" for k in range(len(images))], rng=np.random.default_rng(seed))


def test_shape_dtype_time_bins_and_provenance(subject, images):
    responses = _respond(subject, images)
    assert responses.shape == (6, 80, 20) and responses.dtype == np.float64
    np.testing.assert_array_equal(subject.time_bins_ms, EDGES)
    assert subject.channel_names[3] == f"{EARLY}+{LATE}:3" and subject.area == "V4"
    record = subject.provenance()
    assert next(iter(record)) == "class" and record["class"] == "DynamicCNNSubject"
    assert (record["layer"], record["late_layer"], record["position"], record["late_position"]) == \
        (EARLY, LATE, [7, 7], [3, 3])
    assert json.loads(json.dumps(record)) == record


def test_expected_counts_follow_the_model_of_both_layers(subject, images, activations, scales):
    for layer in (EARLY, LATE):
        assert subject.scale["early" if layer == EARLY else "late"] == pytest.approx(scales[layer], rel=1e-5)
    expected = _model_counts(activations[EARLY], activations[LATE], scales)
    # float32 activations in another memory layout: about 1e-6 relative
    np.testing.assert_allclose(_respond(subject, images), expected, rtol=1e-4, atol=1e-6)
    assert expected.max() > 10 * BASELINE_COUNT  # the photographs drive some units well above baseline


def test_one_forward_pass_per_batch_stopping_after_the_late_layer(subject, images):
    modules = dict(subject.model.named_modules())
    calls = {"early": 0, "after": 0}
    handles = [modules[EARLY].register_forward_hook(lambda *a: calls.__setitem__("early", calls["early"] + 1)),
               modules["_blocks.13"].register_forward_hook(lambda *a: calls.__setitem__("after", calls["after"] + 1))]
    try:
        _respond(subject, torch.cat([images, images]))  # 12 images in batches of 10
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"early": 2, "after": 0}


def _bins_at_baseline(counts: np.ndarray) -> np.ndarray:
    return np.isclose(counts, BASELINE_COUNT, rtol=0.0, atol=1e-12)


def test_each_component_starts_at_its_latency(subject, images, activations, scales):
    counts = _respond(subject, images)
    late_only = np.argwhere((activations[EARLY] <= 0) & (activations[LATE] / scales[LATE] > 0.5))
    early_only = np.argwhere((activations[EARLY] / scales[EARLY] > 0.5) & (activations[LATE] <= 0))
    assert len(late_only) >= 3 and len(early_only) >= 3, "the photographs should give both kinds of unit"
    for image, channel in late_only:  # silent until 100 ms, then above baseline in every bin
        psth = counts[image, channel]
        np.testing.assert_array_equal(_bins_at_baseline(psth), EDGES[1:] <= 100.0)
        assert (psth[EDGES[:-1] >= 100.0] > BASELINE_COUNT + 1e-4).all()
    for image, channel in early_only:  # silent until 50 ms, then above baseline
        psth = counts[image, channel]
        np.testing.assert_array_equal(_bins_at_baseline(psth), EDGES[1:] <= 50.0)
        assert psth[6] > psth[9] > BASELINE_COUNT  # the early peak (65 ms) decays by 90-100 ms
    silent = (activations[EARLY] <= 0) & (activations[LATE] <= 0)
    assert silent.any() and _bins_at_baseline(counts[silent]).all()


def test_kernel_peaks_at_one_at_latency_plus_tau():
    t = np.linspace(0.0, 200.0, 20001)
    k = alpha_kernel(t, 50.0, 15.0)
    assert k.max() == pytest.approx(1.0, abs=1e-12) and t[k.argmax()] == pytest.approx(65.0, abs=0.01)
    assert (k[t <= 50.0] == 0).all()


@pytest.fixture(scope="module")
def noisy():
    made = DynamicCNNSubject(layer="V4", channels=list(range(16)), device="cpu")
    yield made
    made.close()


REPEATS = 100


@pytest.fixture(scope="module")
def trials(noisy, images) -> np.ndarray:
    """``(2 images, REPEATS, 16 channels, 20 bins)`` Poisson counts: the first two images shown REPEATS times."""
    shown = images[:2].repeat_interleave(REPEATS, dim=0)
    return _respond(noisy, shown, seed=11).reshape(2, REPEATS, 16, 20)


def test_poisson_counts_are_seeded_by_the_rng_given(noisy, images):
    first = _respond(noisy, images, seed=11)
    assert np.array_equal(first, _respond(noisy, images, seed=11))
    assert not np.array_equal(first, _respond(noisy, images, seed=12))


def test_poisson_counts_have_the_model_mean_and_variance(noisy, images, trials):
    expected = noisy.expected_counts(images[:2])  # (2, 16, 20)
    assert (trials >= 0).all() and np.array_equal(trials, np.round(trials))
    # per image, channel and bin, the summed count is Poisson(REPEATS * expected): two-sided p per cell
    total, mean = trials.sum(1), REPEATS * expected
    p = np.minimum(1.0, 2 * np.minimum(stats.poisson.cdf(total, mean), stats.poisson.sf(total - 1, mean)))
    assert p.min() > 1e-4, f"{(p <= 1e-4).sum()} of {p.size} cells off the model mean"
    assert abs(total.sum() - mean.sum()) < 4 * math.sqrt(mean.sum())
    fano = trials.var(1, ddof=1).sum() / trials.mean(1).sum()
    assert fano == pytest.approx(1.0, abs=0.1)  # Poisson: variance = mean (pooled over 640 cells)


def test_evoked_response_is_positive_for_a_driving_image(subject, images, activations, noisy, trials):
    evoked = evoked_response(_respond(subject, images), subject.time_bins_ms)
    driven = (activations[EARLY] > 0) | (activations[LATE] > 0)
    assert driven.sum() > 50 and (evoked[driven] > 0).all() and np.allclose(evoked[~driven], 0.0, atol=1e-12)
    # single trials: the mean over trials of the evoked response is the model's, within 4 standard errors
    trial_evoked = evoked_response(trials.reshape(-1, 16, 20), noisy.time_bins_ms).reshape(2, REPEATS, 16)
    model = evoked_response(noisy.expected_counts(images[:2]), noisy.time_bins_ms)
    error = trial_evoked.std(1, ddof=1) / math.sqrt(REPEATS)
    assert (np.abs(trial_evoked.mean(1) - model) < 4 * error + 1e-12).all()
    assert (model > 0.05).sum() >= 4 and (trial_evoked.mean(1)[model > 0.05] > 0).all()


def test_bins_are_configurable_and_close_removes_the_hooks(images):
    made = DynamicCNNSubject(layer="V1", channels=[2], bin_ms=5, span_ms=[-50, 250], poisson=False,
                             scale_early=1.0, scale_late=2.0, device="cpu")
    assert made.layer == "_blocks.4" and made.late_layer == "_blocks.6"
    np.testing.assert_allclose(made.time_bins_ms, np.arange(-50.0, 251.0, 5.0))
    responses = _respond(made, images[:2])
    assert responses.shape == (2, 1, 60)
    np.testing.assert_allclose(responses[..., made.time_bins_ms[1:] <= 50.0], 5.0 * 5.0 / 1000.0, rtol=0, atol=1e-12)
    assert made.scale == {"early": 1.0, "late": 2.0}
    modules = dict(made.model.named_modules())
    made.close()
    made.close()
    assert not modules["_blocks.4"]._forward_hooks and not modules["_blocks.6"]._forward_hooks


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"layer": "V9"}, "subject.layer"),
    ({"layer": "_blocks.3"}, "subject.late_layer"),  # no default late layer
    ({"late_layer": "_blocks.4"}, "subject.late_layer"),  # runs before the early layer
    ({"late_layer": "V4"}, "subject.late_layer"),  # the early layer itself
    ({"late_layer": "_blocks"}, "subject.late_layer"),  # a container that is never run
    ({"channels": [80]}, "subject.channels"),
    ({"position": [14, 0]}, "subject.position"),
    ({"latency_early_ms": -1.0}, "subject.latency_early_ms"),
    ({"tau_late_ms": 0.0}, "subject.tau_late_ms"),
    ({"gain_late_hz": float("nan")}, "subject.gain_late_hz"),
    ({"baseline_hz": -5.0}, "subject.baseline_hz"),
    ({"scale_early": 0.0}, "subject.scale_early"),
    ({"bin_ms": 0}, "subject.bin_ms"),
    ({"span_ms": [0, 205]}, "subject.span_ms"),
    ({"span_ms": [200, 0]}, "subject.span_ms"),
    ({"poisson": "yes"}, "subject.poisson"),
])
def test_bad_values_are_one_line_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + r"\b") as info:
        DynamicCNNSubject(**{"layer": "V4", "scale_early": 1.0, "scale_late": 1.0, "device": "cpu", **kwargs})
    assert "\n" not in str(info.value)


def test_the_config_file_composes_to_the_documented_defaults():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from latentopt.plugins import default_registry

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["subject=insilico_dynamic", "device=cpu"])
    node = OmegaConf.to_container(cfg.subject, resolve=True)
    assert isinstance(node, dict) and node.pop("name") == "insilico_dynamic"
    defaults = {k: p.default for k, p in inspect.signature(DynamicCNNSubject).parameters.items()}
    assert set(node) == set(defaults)
    for key, value in node.items():
        if key not in ("channels", "device"):
            assert value == (list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]), key
    built = default_registry().build("subjects", "insilico_dynamic", **node)
    try:
        assert built.provenance()["class"] == "DynamicCNNSubject" and built.n_channels == 1
    finally:
        built.close()


def test_an_evolution_runs_and_scores_the_evoked_response(tmp_path):
    from latentopt.launch import run_experiment
    from latentopt.run_record import load_run

    config = {"seed": 3, "device": "cpu", "progress": False,
              "generator": {"name": "pixel", "image_size": 32, "resolution": 4},
              "subject": {"name": "insilico_dynamic", "layer": "V4", "channels": [0, 1], "device": "cpu"},
              "objective": {"name": "single_unit", "channel": 1},
              "optimizer": {"name": "cmaes", "population_size": 6, "sigma0": 0.5, "diagonal": True},
              "experiment": {"name": "evolve", "generations": 3, "references": ["coffee"]}}
    run_experiment(config, tmp_path / "run", config_yaml=json.dumps(config))
    record = load_run(tmp_path / "run")
    assert record.responses.shape == (3, 6, 2, 20) and record.reference_responses.shape == (3, 1, 2, 20)
    assert np.array_equal(record.responses, np.round(record.responses)) and (record.responses >= 0).all()
    for g in range(3):
        np.testing.assert_allclose(record.scores[g], evoked_response(record.responses[g], EDGES)[:, 1])
    assert record.provenance["subject"]["class"] == "DynamicCNNSubject"
    assert record.provenance["subject"]["time_bins_ms"] == EDGES.tolist()
