"""latentopt.weights.check_state_dict: the key and shape check both generator plugins use."""

from __future__ import annotations

import pytest
import torch

from latentopt.weights import WeightsError, check_state_dict

EXPECTED = {"layer.weight": (4, 3), "layer.bias": (4,)}


def _state(**changes: object) -> dict[str, object]:
    state: dict[str, object] = {"layer.weight": torch.zeros(4, 3), "layer.bias": torch.zeros(4)}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def test_a_matching_state_dict_passes():
    check_state_dict(_state(), EXPECTED, source="w.pt", model="Net")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (_state(**{"layer.bias": None}), "w.pt: missing key 'layer.bias' for Net (hint)"),
        (_state(extra=torch.zeros(1)), "w.pt: unexpected key 'extra' for Net (hint)"),
        (
            _state(**{"layer.weight": torch.zeros(3, 4)}),
            "w.pt: key 'layer.weight' has shape (3, 4), Net needs (4, 3) (hint)",
        ),
        (_state(**{"layer.bias": [0.0] * 4}), "w.pt: key 'layer.bias' holds a list, not a tensor"),
        (_state(**{"layer.bias": torch.zeros(4, dtype=torch.int64)}), "w.pt: key 'layer.bias' has dtype torch.int64"),
    ],
)
def test_each_mismatch_is_one_line_naming_the_file_and_key(state, message):
    with pytest.raises(WeightsError) as info:
        check_state_dict(state, EXPECTED, source="w.pt", model="Net", hint=" (hint)")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_integer_tensors_pass_when_floating_is_not_required():
    state = _state(**{"layer.bias": torch.zeros(4, dtype=torch.int64)})
    check_state_dict(state, EXPECTED, source="w.pt", model="Net", floating=False)
