"""Hessian-preconditioned CMA: sampling in the eigenframe with steps λ^(−exponent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cmafamily_helpers import hessian_basis

from latentopt_cmafamily.hessian import HessianCMA


def test_samples_stay_in_the_span_with_anisotropic_steps(tmp_path: Path) -> None:
    basis, spectrum = hessian_basis(64, 8)
    np.savez(tmp_path / "metric.npz", eigvecs=basis, eigvals=spectrum)
    codes = np.zeros((400, 64), np.float32)
    optimizer = HessianCMA(codes, metric=str(tmp_path / "metric.npz"), exponent=0.5, sigma0=1.0)
    samples = optimizer.ask().astype(np.float64)
    coefficients = samples @ basis
    np.testing.assert_allclose(coefficients @ basis.T, samples, atol=1e-4)  # nothing off the span
    ratio = coefficients.std(0) / spectrum**-0.5
    np.testing.assert_allclose(ratio, 1.0, rtol=0.2)  # std along eigvec i is σ λ_i^(−1/2)
    assert optimizer.provenance()["rank"] == 8


def test_rank_keeps_the_top_eigenpairs() -> None:
    basis, spectrum = hessian_basis(32, 16)
    optimizer = HessianCMA(np.zeros((10, 32), np.float32), eigvecs=basis, eigvals=spectrum[::-1], rank=4)
    np.testing.assert_allclose(optimizer.spectrum, np.sort(spectrum)[::-1][:4])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either metric"),
        ({"eigvecs": np.ones((32, 2)), "eigvals": np.ones(2)}, "orthonormal"),
        ({"eigvecs": np.eye(32)[:, :4], "eigvals": np.ones(3)}, r"\(d=32, k\)"),
    ],
)
def test_bad_metrics_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HessianCMA(np.zeros((10, 32), np.float32), **kwargs)


def test_missing_arrays_in_metric_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", vectors=np.eye(4))
    with pytest.raises(ValueError, match="missing arrays"):
        HessianCMA(np.zeros((10, 4), np.float32), metric=str(tmp_path / "bad.npz"))
