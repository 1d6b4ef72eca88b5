"""Built-in objectives: a channel beyond the subject's channels is a ConfigError naming the key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentopt.builtins.objectives import MeanUnits, SingleUnit
from latentopt.checks import ConfigError


def test_units_beyond_the_subjects_channels_name_the_key_when_built_and_when_scoring():
    responses = np.array([[1.0, 2.0], [3.0, 5.0]])  # 2 images x 2 channels
    with pytest.raises(ConfigError, match=r"^objective\.channel=2 but the subject has 2 channel\(s\) \(0 \.\.\. 1\)$"):
        SingleUnit(channel=2).check_channels(2)
    with pytest.raises(ConfigError, match=r"^objective\.channel=2 but the subject has 2 channel\(s\)$"):
        SingleUnit(channel=2).score(responses)  # used without check_channels (a library caller)
    with pytest.raises(ConfigError, match=r"^objective\.channels=\[0, 3\] but the subject has 2 channel\(s\)$"):
        MeanUnits(channels=[0, 3]).score(torch.as_tensor(responses))
    np.testing.assert_array_equal(SingleUnit(channel=1).score(responses), [2.0, 5.0])
    np.testing.assert_array_equal(MeanUnits(channels=[0, 1]).score(responses), [1.5, 4.0])


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SingleUnit(channel=-1), r"^objective\.channel must be >= 0, got -1$"),
    (lambda: SingleUnit(channel=1.5), r"^objective\.channel must be an integer, got 1\.5$"),
    (lambda: MeanUnits(channels="0,1"), r"^objective\.channels must be a list of channel indices or null"),
    (lambda: MeanUnits(channels=[]), r"^objective\.channels: give at least one channel"),
])
def test_bad_objective_values_are_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
