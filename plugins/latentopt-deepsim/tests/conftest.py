"""Fixtures: weight files of the real layout, written once per session, and an isolated cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentopt_deepsim.testing import write_random_weights


@pytest.fixture(scope="session")
def fc6_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight upconvGAN_fc6.pt (224 MB), shared by the session's tests."""
    return write_random_weights(tmp_path_factory.mktemp("fc6") / "upconvGAN_fc6.pt", "fc6", seed=0)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty weight cache and no real download address."""
    cache = tmp_path / "weights-cache"
    monkeypatch.setenv("LATENTOPT_WEIGHTS_DIR", str(cache))
    monkeypatch.setenv("LATENTOPT_DEEPSIM_URL", "http://127.0.0.1:9/upconvGAN_{variant}.pt")
    return cache
