"""Built-in optimizers: preset semantics, NaN policies, pycma side effects, and state safety."""

from __future__ import annotations

import os

import numpy as np
import pytest
from omegaconf import OmegaConf

from latentopt.builtins.optimizers import GeneticAlgorithm, PycmaES, RandomSearch
from latentopt.optimizer import OptimizerError
from latentopt.testing import quadratic_neuron

CONF = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "optimizer")


def _preset(name: str) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(os.path.join(CONF, f"{name}.yaml")))
    assert isinstance(cfg, dict)
    cfg.pop("name")
    return cfg


def test_ponce_preset_numbers():
    cfg = _preset("ga_ponce")
    assert cfg == {"population_size": 40, "n_elite": 10, "mutation_rate": 0.25, "mutation_size": 0.75,
                   "parental_skew": 0.75, "temperature_factor": 2.0, "score_clip_percentile": None,
                   "nan_policy": "worst"}


def test_xdream_preset_numbers():
    cfg = _preset("ga_xdream")
    assert cfg["population_size"] == 20 and cfg["n_elite"] == 1 and cfg["parental_skew"] == 0.5
    assert cfg["mutation_rate"] == 0.5 and cfg["mutation_size"] == 0.5
    assert cfg["temperature_factor"] == 0.5  # kT = std / selectivity, selectivity 2
    assert cfg["score_clip_percentile"] == 95 and cfg["nan_policy"] == "carry"


def test_ga_keeps_elites_and_population_size():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(40, 8)).astype(np.float32)
    ga = GeneticAlgorithm(codes, seed=1, **{k: v for k, v in _preset("ga_ponce").items() if k != "population_size"})
    asked = ga.ask()
    scores = np.arange(40, dtype=float)
    ga.tell(asked, scores)
    nxt = ga.ask()
    assert nxt.shape == (40, 8)
    best10 = asked[np.argsort(-scores)[:10]]
    assert np.array_equal(nxt[:10], best10)


def test_ga_temperature_is_inverse_between_presets():
    codes = np.zeros((20, 2), np.float32)
    scores = np.linspace(0, 1, 20)
    hot = GeneticAlgorithm(codes, n_elite=1, temperature_factor=2.0).fitness(scores)
    cold = GeneticAlgorithm(codes, n_elite=1, temperature_factor=0.5).fitness(scores)
    assert cold.max() > hot.max()  # XDream's selectivity 2 selects more sharply than Ponce's kT = 2 std
    assert np.isclose(cold[-1] / cold[0], np.exp(1 / (0.5 * scores.std())))


def test_xdream_carries_unscored_codes_unchanged():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(20, 5)).astype(np.float32)
    ga = GeneticAlgorithm(codes, seed=0, **{k: v for k, v in _preset("ga_xdream").items() if k != "population_size"})
    asked = ga.ask()
    scores = rng.normal(size=20)
    scores[[3, 7]] = np.nan
    ga.tell(asked, scores)
    nxt = ga.ask()
    for k in (3, 7):
        assert any(np.array_equal(asked[k], row) for row in nxt), "an unscored code was not carried over"
    assert nxt.shape == (20, 5)


def test_nan_policy_drop_and_worst_do_not_poison_cma():
    for policy in ("worst", "drop"):
        opt = PycmaES(np.zeros((10, 6), np.float32), seed=0, sigma0=1.0, nan_policy=policy)
        codes = opt.ask()
        scores = quadratic_neuron(6)(codes)
        scores[:4] = np.nan
        opt.tell(codes, scores)
        assert np.isfinite(opt.ask()).all()


def test_unknown_nan_policy_is_an_error():
    with pytest.raises(ValueError, match="nan_policy"):
        PycmaES(np.zeros((4, 3), np.float32), nan_policy="carry")


def test_tell_checks_shapes_and_infinities():
    opt = RandomSearch(np.zeros((4, 3), np.float32))
    codes = opt.ask()
    with pytest.raises(OptimizerError, match="3 scores for 4 codes"):
        opt.tell(codes, np.zeros(3))
    with pytest.raises(OptimizerError, match="infinite"):
        opt.tell(codes, np.array([0, 1, np.inf, 2.0]))


def test_pycma_writes_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = PycmaES(np.zeros((8, 5), np.float32), seed=0, sigma0=1.0)
    for _ in range(5):
        codes = opt.ask()
        opt.tell(codes, quadratic_neuron(5)(codes))
    assert list(tmp_path.iterdir()) == []


def test_pycma_state_from_an_old_pickling_record_is_refused():
    opt = PycmaES(np.zeros((8, 5), np.float32), seed=0, sigma0=1.0)
    state = opt.state_dict()
    state["impl"] = {"pycma": b"\x80\x04N.", "asked": {}}  # the old format: pickled bytes
    with pytest.raises(OptimizerError, match="pickled pycma strategy"):
        PycmaES(np.zeros((8, 5), np.float32)).load_state_dict(state)


def test_cma_minimises_only_in_its_adapter():
    opt = PycmaES(np.zeros((12, 4), np.float32), seed=2, sigma0=0.5)
    neuron = quadratic_neuron(4, seed=3)
    for _ in range(60):
        codes = opt.ask()
        opt.tell(codes, neuron(codes))
    assert opt.best is not None and opt.best[1] > -0.05  # maximised, not minimised


def test_pycma_state_does_not_grow_with_generations():
    """pycma recognises told solutions only by their exact float64 bytes; float32 copies used to pile
    up in its archive and made every generation file larger than the last."""
    from latentopt.records import tree_to_npz_bytes

    opt = PycmaES(np.zeros((20, 500), np.float32), seed=0, sigma0=1.0, diagonal=True)
    neuron = quadratic_neuron(500)
    sizes = []
    for _ in range(30):
        codes = opt.ask()
        opt.tell(codes, neuron(codes))
        sizes.append(len(tree_to_npz_bytes(opt.state_dict())))
    assert sizes[-1] <= 1.05 * sizes[4], sizes
    assert len(opt.es.sent_solutions) == 0


def test_full_covariance_in_high_dimension_warns_about_record_size():
    import warnings

    with pytest.warns(UserWarning, match=r"full covariance at d = 1024 writes about 17 MB"):
        PycmaES(np.zeros((8, 1024), np.float32), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PycmaES(np.zeros((8, 1024), np.float32), seed=0, diagonal=True)
        PycmaES(np.zeros((8, 512), np.float32), seed=0)


def test_ga_state_recorded_before_the_rename_resumes_the_same_generation():
    """States written before the GA's code array was renamed hold it under ``population``."""
    from latentopt.testing import _through_disk

    neuron = quadratic_neuron(5, seed=1)
    codes = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    ga = GeneticAlgorithm(codes, seed=4, n_elite=2)
    for _ in range(3):
        asked = ga.ask()
        ga.tell(asked, neuron(asked))
    old = ga.state_dict()
    old["impl"] = {"population": old["impl"].pop("codes")}
    resumed = GeneticAlgorithm(np.zeros((8, 5), np.float32), seed=9, n_elite=2)
    resumed.load_state_dict(_through_disk(old))
    for _ in range(3):
        x, y = ga.ask(), resumed.ask()
        np.testing.assert_array_equal(x, y)
        ga.tell(x, neuron(x))
        resumed.tell(y, neuron(y))
    assert set(resumed.state_dict()["impl"]) == {"codes"}  # written again under the new key


@pytest.mark.parametrize(("init_mean", "expected"), [("codes", lambda c: c.mean(0)), ("zero", np.zeros_like)])
def test_pycma_starts_at_init_mean(init_mean, expected):
    codes = np.random.default_rng(0).normal(3.0, 1.0, size=(10, 4)).astype(np.float32)
    opt = PycmaES(codes, seed=0, sigma0=1e-6, init_mean=init_mean)
    target = np.asarray(expected(codes.astype(np.float64)))
    np.testing.assert_allclose(opt.ask(), np.broadcast_to(target, (10, 4)), atol=1e-4)
    assert opt.provenance()["init_mean"] == init_mean and opt.provenance()["population_size"] == 10


def test_pycma_init_mean_refuses_the_old_value_naming_the_key():
    with pytest.raises(ValueError, match=r"^optimizer\.init_mean must be one of codes, zero, got 'mean'$"):
        PycmaES(np.zeros((4, 3), np.float32), init_mean="mean")


def test_random_search_samples_around_the_codes_mean_with_sigma0():
    """After the initial codes, samples are N(mean of the codes, sigma0^2): 20 generations of 40 x 6
    draws standardised by that mean and sigma0 pass scipy's Kolmogorov-Smirnov test against N(0, 1)."""
    from scipy import stats

    codes = np.random.default_rng(1).normal(2.0, 0.1, size=(40, 6)).astype(np.float32)
    opt = RandomSearch(codes, seed=0, sigma0=0.5)
    first = opt.ask()
    np.testing.assert_array_equal(first, codes)
    opt.tell(first, np.zeros(40))
    draws = []
    for _ in range(20):
        draws.append(opt.ask())
        opt.tell(draws[-1], np.zeros(40))
    standardised = ((np.concatenate(draws) - codes.mean(0)) / 0.5).ravel()
    assert stats.kstest(standardised, "norm").pvalue > 1e-3
    assert opt.sigma == opt.sigma0 == 0.5 and opt.provenance()["sigma0"] == 0.5
    assert RandomSearch(codes).sigma0 == pytest.approx(float(codes.std()))
