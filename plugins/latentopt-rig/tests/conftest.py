"""Shared fixtures of the rig plugin's tests (helpers live in ``latentopt_rig.drill``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from latentopt_rig.drill import SimThread


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Any]:
    """Start simulators in background threads; all are stopped after the test."""
    sims: list[SimThread] = []

    def start(exchange: Path, **kwargs: Any) -> SimThread:
        sims.append(SimThread(exchange, **kwargs))
        return sims[-1]

    yield start
    for sim in sims:
        sim.close()
