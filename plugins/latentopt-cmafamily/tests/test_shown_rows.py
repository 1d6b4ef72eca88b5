"""Which told rows are the shown mean or centre (left out of the recombination)."""

from __future__ import annotations

import numpy as np

from latentopt_cmafamily._base import without_rows_at


def test_rows_at_a_mean_are_recognised_by_distance_and_on_a_sphere_by_direction() -> None:
    rng = np.random.default_rng(0)
    mean = rng.standard_normal(50)
    samples = mean + rng.standard_normal((6, 50))
    codes = np.vstack([mean.astype(np.float32), samples, 3.0 * mean])  # float32 rounding; a scaled copy
    scores = np.arange(8.0)
    kept, kept_scores = without_rows_at(codes, scores, mean)
    np.testing.assert_array_equal(kept_scores, [1, 2, 3, 4, 5, 6, 7])  # the scaled copy is far away
    # on a sphere the centre and the average are directions: both the copy and its rescaling go
    average = mean + 1e-3 * rng.standard_normal(50)
    codes = np.vstack([codes, average])
    kept, kept_scores = without_rows_at(codes, np.arange(9.0), np.stack([mean, average]), within_angle=1e-5)
    np.testing.assert_array_equal(kept_scores, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(kept, codes[1:7])
    # nothing else left: all rows are kept rather than none
    only = np.vstack([mean, mean])
    assert without_rows_at(only, np.zeros(2), mean)[0].shape == (2, 50)
