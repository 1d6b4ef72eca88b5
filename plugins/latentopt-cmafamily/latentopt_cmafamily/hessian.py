"""Hessian-preconditioned CMA-ES (Wang & Ponce, ICLR 2021, "The geometry of deep generative image models").

The Hessian of an image distance with respect to the code is highly anisotropic. Given its top
eigenvectors ``U`` ``(d, k)`` and eigenvalues ``λ`` ``(k,)``, the search runs Cholesky CMA-ES on
coefficients ``u ∈ R^k`` and maps them to codes as

    code = m₀ + (u ⊙ λ^(−exponent)) Uᵀ

so directions that change the image a lot take small steps. Wang & Ponce used exponent 1/2.5 and
σ 0.2 for BigGAN, and the top 500-800 eigenvectors with exponent 1/5 for DeePSim fc6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, finite_number
from latentopt_cmafamily._base import initial_mean
from latentopt_cmafamily.cholesky import CholeskyCMA


def load_metric(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an eigenbasis from an ``.npz`` file with arrays ``eigvecs`` (d, k) and ``eigvals`` (k,).

    Args:
        path: ``.npz`` written with ``np.savez`` (no pickles).

    Returns:
        ``(eigvecs, eigvals)`` as float64.
    """
    with np.load(Path(path), allow_pickle=False) as data:
        missing = {"eigvecs", "eigvals"} - set(data.files)
        if missing:
            raise ConfigError(f"{path}: missing arrays {sorted(missing)} (found {sorted(data.files)})")
        return np.asarray(data["eigvecs"], dtype=np.float64), np.asarray(data["eigvals"], dtype=np.float64)


class HessianCMA(CholeskyCMA):
    """Cholesky CMA-ES in the eigenframe of the generator's metric, steps scaled by ``λ^(−exponent)``.

    Args:
        initial_codes: ``(n, d)`` float32; ``n`` is the default population size.
        seed: seed of the optimizer's random stream.
        nan_policy: ``"worst"`` or ``"drop"``.
        metric: path of an ``.npz`` holding ``eigvecs`` ``(d, k)`` and ``eigvals`` ``(k,)``.
        eigvecs: ``(d, k)`` orthonormal columns, instead of ``metric``.
        eigvals: ``(k,)`` eigenvalues, instead of ``metric``.
        rank: keep only the top ``rank`` eigenpairs (by eigenvalue), default all.
        exponent: eigenvalue exponent (1/2.5 BigGAN, 1/5 DeePSim fc6).
        eigval_floor: eigenvalues are clipped below at ``eigval_floor · max(λ)`` so near-null
            directions do not get unbounded steps.
        sigma0: initial step size in the scaled coefficient space (0.2 for BigGAN in the paper).
        step_rms: when given, replaces ``sigma0`` by ``step_rms / RMS(λ^(−exponent))``: the initial step
            per eigendirection is ``step_rms`` in RMS, whatever the metric's scale (so one setting fits the
            metrics of several generators; e.g. 1.5 = ``bench_sep_cma``'s σ0).
        population_size, mu, init_mean, a_update_every: as :class:`CholeskyCMA`.
    """

    def __init__(
        self,
        initial_codes: np.ndarray,
        *,
        seed: int = 0,
        nan_policy: str = "worst",
        metric: str | None = None,
        eigvecs: np.ndarray | None = None,
        eigvals: np.ndarray | None = None,
        rank: int | None = None,
        exponent: float = 1 / 2.5,
        eigval_floor: float = 1e-6,
        sigma0: float = 0.2,
        step_rms: float | None = None,
        population_size: int | None = None,
        mu: int | None = None,
        init_mean: str = "zero",
        a_update_every: int = 10,
    ) -> None:
        codes = np.asarray(initial_codes)
        basis, spectrum = self._resolve_metric(metric, eigvecs, eigvals, codes.shape[1])
        top = np.argsort(-spectrum, kind="stable")[: rank or spectrum.shape[0]]
        self.basis, self.spectrum = np.ascontiguousarray(basis[:, top]), spectrum[top]
        self.metric_path = metric or ""
        self.exponent = float(exponent)
        clipped = np.maximum(self.spectrum, eigval_floor * float(self.spectrum.max()))
        self.step_scale = clipped ** (-self.exponent)
        self.offset = initial_mean(codes, init_mean)
        self.step_rms = None if step_rms is None else finite_number(step_rms, "optimizer.step_rms", minimum=0)
        if self.step_rms is not None:  # σ0 such that the RMS initial step per direction is step_rms
            sigma0 = self.step_rms / float(np.sqrt(np.mean(self.step_scale**2)))
        super().__init__(
            initial_codes,
            seed=seed,
            nan_policy=nan_policy,
            population_size=population_size,
            mu=mu,
            sigma0=sigma0,
            init_mean=init_mean,
            a_update_every=a_update_every,
        )

    @classmethod
    def contract_kwargs(cls) -> dict[str, Any]:
        """Settings for :func:`latentopt.testing.check_optimizer`: a random metric of the test's d."""
        basis, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((16, 16)))
        return {"dim": 16, "kwargs": {"eigvecs": basis, "eigvals": np.logspace(0, -1, 16), "sigma0": 0.5}}

    @staticmethod
    def _resolve_metric(
        metric: str | None, eigvecs: np.ndarray | None, eigvals: np.ndarray | None, dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if (metric is None) == (eigvecs is None or eigvals is None):
            raise ConfigError("HessianCMA: give either metric=<path.npz> or both eigvecs and eigvals")
        if metric is not None:
            basis, spectrum = load_metric(metric)
        else:
            basis, spectrum = np.asarray(eigvecs, np.float64), np.asarray(eigvals, np.float64).reshape(-1)
        if basis.ndim != 2 or basis.shape[0] != dim or basis.shape[1] != spectrum.shape[0]:
            raise ConfigError(
                f"HessianCMA: eigvecs must be (d={dim}, k) and eigvals (k,), got {basis.shape} and {spectrum.shape}"
            )
        if not np.all(spectrum > 0):
            raise ConfigError("HessianCMA: eigenvalues must be positive (use the top of the spectrum)")
        gram_error = np.abs(basis.T @ basis - np.eye(basis.shape[1])).max()
        if gram_error > 1e-3:
            raise ConfigError(f"HessianCMA: eigvecs columns not orthonormal (|UᵀU − I| = {gram_error:.2g})")
        return basis, spectrum

    def _to_points(self, codes: np.ndarray) -> np.ndarray:
        return ((codes - self.offset) @ self.basis) / self.step_scale

    def _to_codes(self, points: np.ndarray) -> np.ndarray:
        return self.offset + (points * self.step_scale) @ self.basis.T

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "algorithm": "Hessian-preconditioned Cholesky CMA-ES (Wang & Ponce 2021)",
            "rank": int(self.spectrum.shape[0]),
            "exponent": self.exponent,
            "metric": self.metric_path,
            "step_scale_range": [float(self.step_scale.min()), float(self.step_scale.max())],
            "step_rms": self.step_rms,
        }
