"""Time bins, windows and the evoked response (latentopt.responses), checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentopt import objective, responses
from latentopt.checks import ConfigError
from latentopt.responses import BASELINE_WINDOW_MS, RESPONSE_WINDOW_MS, check_window, evoked_response, window_mask

EDGES = np.arange(0.0, 251.0, 10.0)  # 25 bins of 10 ms, 0-250 ms


def test_default_windows_are_wang_and_ponce_2026():
    assert RESPONSE_WINDOW_MS == (50.0, 200.0) and BASELINE_WINDOW_MS == (0.0, 45.0)


def test_window_keeps_the_bins_wholly_inside_it():
    # 50-200 ms: bins [50, 60) ... [190, 200), i.e. 5..19; a window end on an edge keeps the bin before it
    np.testing.assert_array_equal(np.flatnonzero(window_mask(EDGES, RESPONSE_WINDOW_MS)), np.arange(5, 20))
    # 0-45 ms: [40, 50) straddles 45 and is left out
    np.testing.assert_array_equal(np.flatnonzero(window_mask(EDGES, BASELINE_WINDOW_MS)), [0, 1, 2, 3])
    # a window exactly one bin wide, and one reaching past the last edge
    np.testing.assert_array_equal(np.flatnonzero(window_mask(EDGES, (120, 130))), [12])
    np.testing.assert_array_equal(np.flatnonzero(window_mask(EDGES, (230, 1000))), [23, 24])


def test_window_ends_on_float_edges_within_rounding():
    edges = np.arange(11) * 0.1  # 0.1 * 6 = 0.6000000000000001 > 0.6
    np.testing.assert_array_equal(np.flatnonzero(window_mask(edges, (0.3, 0.6))), [3, 4, 5])


@pytest.mark.parametrize(("window", "message"), [
    ((52.0, 58.0), "no time bin lies inside the window [52, 58] ms (bin edges 0 to 250 ms)"),  # narrower than a bin
    ((300.0, 400.0), "no time bin lies inside the window [300, 400] ms (bin edges 0 to 250 ms)"),  # after the last
])
def test_window_without_a_bin_is_an_error_naming_it(window, message):
    with pytest.raises(ValueError) as info:
        window_mask(EDGES, window)
    assert str(info.value) == message


def test_edges_must_increase():
    with pytest.raises(ValueError, match=r"^window \[0, 10\] ms: bin edges must be 2 or more increasing times"):
        window_mask(np.array([0.0, 10.0, 10.0, 20.0]), (0, 10))
    with pytest.raises(ValueError, match="increasing"):
        window_mask(np.array([5.0]), (0, 10))


def _ramp() -> np.ndarray:
    """``(1, 2, 25)``: channel 0 is the bin index i, channel 1 is 2 i + 7."""
    i = np.arange(25, dtype=np.float64)
    return np.stack([i, 2 * i + 7])[None]


def test_evoked_response_subtracts_the_baseline_mean_from_the_response_mean():
    # by hand: response bins 5..19 average (5 + 19) / 2 = 12; baseline bins 0..3 average 1.5
    # channel 0: 12 - 1.5 = 10.5; channel 1: (2 * 12 + 7) - (2 * 1.5 + 7) = 21
    evoked = evoked_response(_ramp(), EDGES)
    assert isinstance(evoked, np.ndarray) and evoked.shape == (1, 2) and evoked.dtype == np.float64
    np.testing.assert_allclose(evoked, [[10.5, 21.0]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(evoked_response(_ramp(), EDGES, baseline_window_ms=None), [[12.0, 31.0]], atol=1e-12)
    # other windows: 100-150 ms (bins 10..14, mean 12) minus 200-250 ms (bins 20..24, mean 22)
    np.testing.assert_allclose(evoked_response(_ramp(), EDGES, response_window_ms=(100, 150),
                                               baseline_window_ms=(200, 250)), [[-10.0, -20.0]], atol=1e-12)


def test_nan_in_an_averaged_bin_gives_nan_and_outside_the_windows_is_ignored():
    data = _ramp()
    data[0, 0, 22] = np.nan  # 220-230 ms: in neither window
    data[0, 1, 7] = np.nan  # 70-80 ms: in the response window
    evoked = evoked_response(data, EDGES)
    assert evoked[0, 0] == pytest.approx(10.5) and np.isnan(evoked[0, 1])


def test_torch_input_gives_a_tensor_with_the_same_numbers_and_the_hand_gradient():
    data = torch.tensor(_ramp(), requires_grad=True)
    evoked = evoked_response(data, EDGES)
    assert isinstance(evoked, torch.Tensor) and evoked.dtype == torch.float64
    torch.testing.assert_close(evoked, torch.tensor([[10.5, 21.0]], dtype=torch.float64), rtol=0, atol=1e-12)
    evoked[0, 0].backward()
    # d evoked / d bin: 1/15 for each response bin, -1/4 for each baseline bin, 0 elsewhere
    expected = np.zeros(25)
    expected[5:20] = 1 / 15
    expected[0:4] = -1 / 4
    np.testing.assert_allclose(data.grad[0, 0].numpy(), expected, atol=1e-12)
    assert not data.grad[0, 1].any()


def test_errors_name_the_window_and_the_shape():
    with pytest.raises(ValueError) as info:
        evoked_response(_ramp(), EDGES, response_window_ms=(300.0, 400.0))
    assert str(info.value) == "no time bin lies inside the response window [300, 400] ms (bin edges 0 to 250 ms)"
    with pytest.raises(ValueError) as info:
        evoked_response(_ramp(), EDGES, baseline_window_ms=(-50.0, -10.0))
    assert str(info.value) == "no time bin lies inside the baseline window [-50, -10] ms (bin edges 0 to 250 ms)"
    with pytest.raises(ValueError, match=r"^responses \(1, 2, 25\) do not fit 25 bin edges"):
        evoked_response(_ramp(), EDGES[:-1])
    with pytest.raises(ValueError, match=r"^responses \(2, 25\) do not fit 26 bin edges"):
        evoked_response(_ramp()[0], EDGES)


@pytest.mark.parametrize(("value", "message"), [
    ("50-200", r"^subject\.response_window_ms must be \[start, end\] in ms, got '50-200'$"),
    ([50.0], r"must be \[start, end\] in ms, got \[50\.0\]$"),
    ([50.0, float("nan")], r"must be two finite numbers \[start, end\] in ms"),
    ([True, 200], r"must be two finite numbers"),
    ([200, 50], r"^subject\.response_window_ms: the start must be before the end, got \[200, 50\]$"),
    ([50, 50], r"the start must be before the end"),
])
def test_check_window_refuses_bad_config_values_naming_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        check_window(value, "subject.response_window_ms")


def test_check_window_accepts_two_numbers_and_negative_times():
    assert check_window([50, 200], "w") == (50.0, 200.0)
    assert check_window((-50.0, 0), "w") == (-50.0, 0.0)  # a baseline before image onset


def test_objective_still_re_exports_the_moved_names():
    assert objective.RESPONSE_WINDOW_MS is responses.RESPONSE_WINDOW_MS
    assert objective.BASELINE_WINDOW_MS is responses.BASELINE_WINDOW_MS
    assert objective.evoked_response is responses.evoked_response
    assert objective._window_mask is responses.window_mask
