"""Twin save/load round trips, file checks, the feature cache and the ``twin`` subject."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentopt.builtins.twin import TwinSubject, make_tiny_twin
from latentopt.checks import ConfigError
from latentopt.plugins import default_registry
from latentopt.twin.factorised import factorised_cv
from latentopt.twin.features import Backbone, cached_features, pool
from latentopt.twin.fit import ridge_cv
from latentopt.twin.model import JSON_FILE, NPZ_FILE, load_twin, save_twin

IMAGES = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_twin(tmp_path_factory.mktemp("twin") / "tiny")


def test_backbone_pooling_shapes_and_gradient():
    backbone = Backbone(["V1", "_blocks.2"], device="cpu")
    try:
        assert backbone.layers == ["_blocks.4", "_blocks.2"] and backbone.shapes["_blocks.4"] == (40, 28, 28)
        maps = backbone.features_torch(IMAGES[:3])
        assert [tuple(m.shape) for m in maps] == [(3, 40, 28, 28), (3, 24, 56, 56)]
        assert pool(maps, "avg").shape == (3, 64)
        assert pool(maps, "grid", 3).shape == (3, 64 * 9)
        assert torch.allclose(pool(maps, "grid", 1), pool(maps, "avg"), atol=1e-5)
        assert pool(maps, "factorised").shape == (3, 64, 7, 7)
        x = IMAGES[:2].clone().requires_grad_(True)
        backbone.pooled_torch(x, "grid", 2).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    finally:
        backbone.close()
    with pytest.raises(ConfigError, match=r"twin\.layers"):
        Backbone("V9", device="cpu")


def test_feature_cache_reuses_and_survives_damage(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6.0).reshape(2, 3)

    key = {"stimuli": ["a", "b"], "layers": ["_blocks.4"], "pooling": "avg", "backbone": "abc"}
    first, reused = cached_features(key, compute, tmp_path)
    again, reused2 = cached_features(key, compute, tmp_path)
    assert (reused, reused2) == (False, True) and np.array_equal(first, again) and len(calls) == 1
    _, reused3 = cached_features({**key, "pooling": "grid"}, compute, tmp_path)
    assert not reused3 and len(calls) == 2
    (file,) = [p for p in tmp_path.glob("*.npz") if
               json.loads(str(np.load(p, allow_pickle=False)["key"]))["pooling"] == "avg"]
    file.write_bytes(b"garbage")
    _, reused4 = cached_features(key, compute, tmp_path)
    assert not reused4 and len(calls) == 3


def test_save_load_round_trip_gives_identical_responses(tiny, tmp_path):
    twin = load_twin(tiny, device="cpu")
    meta = json.loads((tiny / JSON_FILE).read_text())
    assert meta["format_version"] == 1 and meta["layers"] == ["_blocks.4"] and len(meta["r"]) == 3
    with np.load(tiny / NPZ_FILE, allow_pickle=False) as data:
        assert set(data.files) == {"weights", "bias", "x_mean", "x_std"} and data["weights"].shape == (40, 3)
    with torch.inference_mode():
        out = twin.respond_torch(IMAGES).double().numpy()
        X = twin.backbone.pooled_numpy(IMAGES, "avg").astype(np.float64)
    with np.load(tiny / NPZ_FILE, allow_pickle=False) as data:
        direct = ((X - data["x_mean"]) / data["x_std"]) @ data["weights"] + data["bias"]
    assert np.allclose(out, direct, rtol=1e-5, atol=1e-4)
    again = load_twin(tiny, device="cpu")
    with torch.inference_mode():
        assert np.allclose(again.respond_torch(IMAGES).double().numpy(), out, rtol=0, atol=1e-6)
    twin.close()
    again.close()


def test_factorised_twin_round_trip(tmp_path):
    backbone = Backbone("V1", device="cpu")
    with torch.inference_mode():
        maps = backbone.pooled_torch(IMAGES, "factorised").double().numpy()
    rng = np.random.default_rng(0)
    Y = np.einsum("nkhw,kc->nc", maps[:, :, 2:5, 2:5], rng.standard_normal((40, 2)))
    fit = factorised_cv(maps, Y, np.arange(12), folds=3, n_iter=2)
    folder = save_twin(tmp_path / "f", fit, layers=backbone.layers, pooling="factorised", grid=2,
                       channel_names=["a", "b"], weights_sha256=backbone.weights_sha256, provenance={})
    backbone.close()
    twin = load_twin(folder, device="cpu")
    with torch.inference_mode():
        out = twin.respond_torch(IMAGES).double().numpy()
    assert np.allclose(out, fit.predict(maps), rtol=1e-4, atol=1e-4 * np.abs(out).max())
    twin.close()


def test_refuses_overwrite_and_bad_channel_names(tiny, tmp_path):
    fit = ridge_cv(np.random.default_rng(0).standard_normal((10, 40)), np.ones((10, 1)) + np.arange(10)[:, None],
                   np.arange(10), folds=3)
    kwargs = {"layers": ["_blocks.4"], "pooling": "avg", "grid": 2, "weights_sha256": "x", "provenance": {}}
    with pytest.raises(ConfigError, match="not empty"):
        save_twin(tiny, fit, channel_names=["c"], **kwargs)
    with pytest.raises(ConfigError, match="channel_names"):
        save_twin(tmp_path / "n", fit, channel_names=["c", "d"], **kwargs)
    save_twin(tmp_path / "o", fit, channel_names=["c"], **kwargs)
    save_twin(tmp_path / "o", fit, channel_names=["c"], overwrite=True, **kwargs)


def _copy(tiny, tmp_path):
    import shutil

    return shutil.copytree(tiny, tmp_path / "copy")


@pytest.mark.parametrize(("damage", "file", "message"), [
    (lambda d: (d / JSON_FILE).write_text("{not json"), JSON_FILE, "not readable JSON"),
    (lambda d: (d / JSON_FILE).unlink(), JSON_FILE, "missing"),
    (lambda d: (d / NPZ_FILE).unlink(), NPZ_FILE, "missing"),
    (lambda d: (d / NPZ_FILE).write_bytes(b"xx"), NPZ_FILE, "readout_sha256"),
    (lambda d: _edit(d, format_version=99), JSON_FILE, "format_version 99"),
    (lambda d: _edit(d, backbone={"name": "x", "weights_sha256": "ab" * 32, "input_size": 224}), "copy",
     "fitted on backbone weights sha256 abab"),
    (lambda d: _edit(d, channel_names=["a", "b"]), NPZ_FILE, "shape"),
])
def test_damaged_twin_is_one_config_error_naming_the_file(tiny, tmp_path, damage, file, message):
    folder = _copy(tiny, tmp_path)
    damage(folder)
    with pytest.raises(ConfigError, match=message) as info:
        load_twin(folder, device="cpu")
    text = str(info.value)
    assert "\n" not in text and text.startswith("subject.path") and file in text


def _edit(folder, **changes):
    meta = json.loads((folder / JSON_FILE).read_text())
    meta.update(changes)
    (folder / JSON_FILE).write_text(json.dumps(meta))


def test_pickled_npz_is_refused(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    np.savez(folder / NPZ_FILE, weights=np.array([{"a": 1}], dtype=object), bias=np.zeros(3), x_mean=np.zeros(40),
             x_std=np.ones(40))
    from latentopt.weights import sha256_file

    _edit(folder, readout_sha256=sha256_file(folder / NPZ_FILE))
    with pytest.raises(ConfigError, match=f"{NPZ_FILE} is not a readable npz"):
        load_twin(folder, device="cpu")


def test_twin_subject(tiny):
    registry = default_registry()
    subject = registry.build("subjects", "twin", path=str(tiny), channels=["ch2", 0], device="cpu",
                             noise={"kind": "poisson", "gain": 2.0})
    try:
        assert isinstance(subject, TwinSubject) and subject.differentiable
        assert subject.channel_names == ["ch2", "ch0"]
        out = subject.respond(IMAGES[:4], image_ids=list("abcd"), rng=np.random.default_rng(0))
        assert out.shape == (4, 2) and out.dtype == np.float64
        assert np.all(out == np.round(out))  # Poisson counts
        full = load_twin(tiny, device="cpu")
        with torch.inference_mode():
            ref = full.respond_torch(IMAGES[:4])[:, [2, 0]]
            assert torch.allclose(subject.respond_torch(IMAGES[:4]), ref, atol=1e-5)
        full.close()
        x = IMAGES[:2].clone().requires_grad_(True)
        subject.respond_torch(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        record = subject.provenance()
        assert record["class"] == "TwinSubject" and len(record["twin_sha256"]) == 64
        assert record["channels"] == ["ch2", "ch0"] and record["noise"]["kind"] == "poisson"
        json.dumps(record)
    finally:
        subject.close()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"path": None}, "subject.path: give the twin folder"),
    ({"channels": ["nope"]}, "subject.channels: the twin has no channel 'nope'"),
    ({"channels": [7]}, "subject.channels: index 7 out of range"),
    ({"channels": []}, "subject.channels: give at least one"),
    ({"channels": "ch0"}, "subject.channels: null or a list"),
    ({"noise": {"kind": "loud"}}, "subject.noise.kind"),
])
def test_twin_subject_errors(tiny, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TwinSubject(**{"path": str(tiny), "device": "cpu", **kwargs})


def test_twin_subject_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match=f"subject.path: {tmp_path / 'none' / JSON_FILE} is missing"):
        TwinSubject(path=str(tmp_path / "none"), device="cpu")
