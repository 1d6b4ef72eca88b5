"""Every registered component, built-in or from an installed plugin, passes the same contract."""

from __future__ import annotations

import pytest

from latentopt.plugins import default_registry
from latentopt.testing import (
    check_generator,
    check_objective,
    check_optimizer,
    check_subject,
    contract_instance,
    contract_kwargs,
)

REGISTRY = default_registry()


def _params(group: str) -> list[object]:
    return [pytest.param(c, id=name) for name, c in sorted(REGISTRY.components[group].items())]


@pytest.mark.parametrize("component", _params("generators"))
def test_generator_contract(component):
    generator = contract_instance(component.factory)
    try:
        check_generator(generator)
    finally:
        generator.close()


@pytest.mark.parametrize("component", _params("subjects"))
def test_subject_contract(component):
    subject = contract_instance(component.factory)
    try:
        check_subject(subject)
    finally:
        subject.close()


@pytest.mark.parametrize("component", _params("objectives"))
def test_objective_contract(component):
    check_objective(contract_instance(component.factory))


@pytest.mark.parametrize("component", _params("optimizers"))
def test_optimizer_contract(component):
    check_optimizer(component.factory, **contract_kwargs(component.factory))


def test_every_group_has_components():
    for group, components in REGISTRY.components.items():
        assert components, f"no {group} registered"
    assert {"evolve", "manifold"} <= set(REGISTRY.names("experiments"))
