"""Fixtures: small random BigGAN-deep models of the published layout, written like the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentopt_biggan.testing import tiny_config, write_random_model


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config.json + pytorch_model.bin of a random biggan-deep-128 at channel width 4."""
    return write_random_model(tmp_path_factory.mktemp("biggan128"), tiny_config(128), seed=0)


@pytest.fixture(autouse=True)
def empty_library_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty pytorch-pretrained-biggan cache and unreachable download addresses."""
    from pytorch_pretrained_biggan import model

    cache = tmp_path / "biggan-cache"
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(cache))
    for name in list(model.PRETRAINED_MODEL_ARCHIVE_MAP):
        monkeypatch.setitem(model.PRETRAINED_MODEL_ARCHIVE_MAP, name, f"http://127.0.0.1:9/{name}-pytorch_model.bin")
        monkeypatch.setitem(model.PRETRAINED_CONFIG_ARCHIVE_MAP, name, f"http://127.0.0.1:9/{name}-config.json")
    return cache
