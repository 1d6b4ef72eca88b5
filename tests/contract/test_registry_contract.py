"""Every registered component, built-in or from an installed plugin, passes the same contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from latentopt.plugins import default_registry
from latentopt.testing import (
    check_generator,
    check_objective,
    check_optimizer,
    check_provenance,
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


class _Recorded:
    """A component whose ``provenance()`` returns what it is given."""

    def __init__(self, record: Any) -> None:
        self.record = record

    def provenance(self) -> Any:
        return self.record


@pytest.mark.parametrize(("record", "message"), [
    ([("class", "_Recorded")], "must return a dict, got list"),
    ({}, 'must start with {"class": "_Recorded"}'),
    ({"kind": "mine", "class": "_Recorded"}, 'must start with {"class": "_Recorded"}'),
    ({"class": "SomethingElse"}, 'must start with {"class": "_Recorded"}'),
    ({"class": "_Recorded", "weights": np.float32(1.0)}, "not JSON-serialisable"),
])
def test_provenance_check_names_what_is_wrong(record, message):
    with pytest.raises(AssertionError, match=message.replace("{", r"\{").replace("(", r"\(")):
        check_provenance(_Recorded(record))
    check_provenance(_Recorded({"class": "_Recorded", "sigma0": 1.0, "weights": {"sha256": "ab"}}))

