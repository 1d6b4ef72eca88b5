"""The temporal attribution finds a late advantage where the dynamic subject's model puts it.

Sessions of two threads whose evolved images drive the early unit equally, and the late unit only in thread A:
the model (``insilico_dynamic``, late latency 100 ms) puts A's advantage from 100 ms on. Poisson trials of the
model's counts go through the same binning, universal normaliser and per-bin paired tests as recorded sessions;
the first significant bin must start within one bin (10 ms) of the late latency, and no bin before it may be.
"""

from __future__ import annotations

import numpy as np
import pytest

from latentopt.analysis import bin_trajectories, temporal_attribution, universal_normaliser
from latentopt.builtins.dynamic import DynamicCNNSubject


@pytest.fixture(scope="module")
def subject() -> DynamicCNNSubject:
    return DynamicCNNSubject(layer="V4", channels=[0], device="cpu")


def test_the_late_advantage_starts_at_the_late_latency(subject):
    rng = np.random.default_rng(0)
    edges = subject.time_bins_ms
    a_rows, b_rows = [], []
    for _ in range(12):  # sessions
        early = np.full((20, 1), rng.uniform(1.0, 2.0)) * subject.scale["early"]
        late_a = np.full((20, 1), rng.uniform(1.0, 2.0)) * subject.scale["late"]
        psth = {}
        for name, late in (("A", late_a), ("B", np.zeros_like(late_a))):
            expected = subject.counts_from_activations(early, late)[:, 0, :]
            psth[name] = [rng.poisson(expected).astype(float) for _ in range(3)]  # 3 blocks of 20 trials
        binned = bin_trajectories(psth, edges, bin_ms=10.0)
        scale = universal_normaliser(psth, edges)
        a_rows.append(binned["A"][-2:].mean(axis=0) / scale)
        b_rows.append(binned["B"][-2:].mean(axis=0) / scale)
    result = temporal_attribution(np.stack(a_rows), np.stack(b_rows), np.arange(0, 201, 10.0))
    assert result.advantage_b_ms == []
    assert len(result.advantage_a_ms) >= 1
    start, end = result.advantage_a_ms[0]
    assert abs(start - subject.latency_ms["late"]) <= 10.0, result.advantage_a_ms
    assert end == 200.0
    first = np.flatnonzero(np.asarray(result.rejected))[0]
    assert first * 10.0 >= subject.latency_ms["late"] - 10.0
