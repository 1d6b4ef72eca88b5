"""Fixtures: every optimizer of the plugin by name, on small problems with known optima (``cmafamily_helpers``)."""

from __future__ import annotations

import pytest
from cmafamily_helpers import Factory, make_factory

from latentopt_cmafamily import OPTIMIZERS


@pytest.fixture(params=sorted(OPTIMIZERS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def factory(name: str) -> Factory:
    return make_factory(name)
