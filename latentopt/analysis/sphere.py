"""Geometry of manifold tuning grids (Wang & Ponce, Cell Reports 2022): PCA spheres in latent space.

After an evolution, PCA of all its codes gives the sphere's axes: PC1 points towards the last generation, and
each sphere is spanned by PC1 and two more unit directions (PC2/PC3, the last two PCs, or two random directions
orthogonal to all the PCs). A grid point (θ, φ) in degrees is the unit direction
z = (cos θ cos φ, sin θ cos φ, sin φ) in the sphere's coordinates (e1, e2, e3), and its code is radius · z
mapped into latent space. The published grids are 11 x 11 (18° steps, in vivo) and 21 x 21 (9° steps, in silico),
both angles from -90° to 90°; at φ = ±90° every θ gives the same image (the poles).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def grid_angles(n: int = 11, span_deg: float = 90.0) -> np.ndarray:
    """(n,) float64 angles in degrees, evenly from -span_deg to +span_deg (11 -> 18° steps for 90°).

    Raises:
        ValueError: n < 2 or span_deg not a positive finite number.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"grid_angles: n must be an integer >= 2, got {n!r}")
    if not (math.isfinite(span_deg) and span_deg > 0):
        raise ValueError(f"grid_angles: span_deg must be a positive finite number, got {span_deg!r}")
    return np.linspace(-span_deg, span_deg, int(n))


def grid_directions(thetas_deg: Any, phis_deg: Any) -> np.ndarray:
    """(nθ, nφ, 3) float64 unit directions z = (cos θ cos φ, sin θ cos φ, sin φ) for angles in degrees."""
    theta = np.radians(np.asarray(thetas_deg, dtype=float).reshape(-1))[:, None]
    phi = np.radians(np.asarray(phis_deg, dtype=float).reshape(-1))[None, :]
    return np.stack(np.broadcast_arrays(np.cos(theta) * np.cos(phi), np.sin(theta) * np.cos(phi), np.sin(phi)),
                    axis=-1)


@dataclass(frozen=True, eq=False)
class SphereBases:
    """PCA of an evolution's codes and the three spheres' bases.

    Attributes:
        pcs: (n_components, d) float64 orthonormal rows, by decreasing variance. PC1 is signed so that
            mean(last_codes) · PC1 > 0; every other PC so that its largest-magnitude entry is positive
            (SVD signs are otherwise arbitrary).
        explained_variance: (n_components,) variance along each PC (codes' units squared, ddof 1).
        radius: mean L2 norm of the last generation's codes.
        bases: sphere name -> (3, d) float64 orthonormal rows (e1, e2, e3): "PC1_PC2_PC3",
            "PC1_PC{k-1}_PC{k}" for k = n_components ("PC1_PC49_PC50" by default) and "PC1_RND1_RND2".
    """

    pcs: np.ndarray
    explained_variance: np.ndarray
    radius: float
    bases: dict[str, np.ndarray] = field(default_factory=dict)


def _codes(array: Any, name: str) -> np.ndarray:
    """A finite 2-D float64 array, else a one-line ValueError naming it."""
    codes = np.asarray(array, dtype=float)
    if codes.ndim != 2:
        raise ValueError(f"pca_sphere_bases: {name} must be 2-D (n, d), got shape {codes.shape}")
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"pca_sphere_bases: {name} has non-finite values")
    return codes


def _random_orthogonal(pcs: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, d) random unit rows orthogonal to the rows of ``pcs`` and to each other."""
    rows: list[np.ndarray] = []
    for _ in range(count):
        vector = rng.standard_normal((pcs.shape[1],))
        for _ in range(2):  # Gram-Schmidt twice: once is not enough in float64 against 50 directions
            others = np.vstack([pcs, *rows]) if rows else pcs
            vector = vector - others.T @ (others @ vector)
        rows.append(vector / float(np.linalg.norm(vector)))
    return np.stack(rows)


def pca_sphere_bases(codes: Any, last_codes: Any, *, n_components: int = 50, seed: int = 0) -> SphereBases:
    """PCA of all the codes of an evolution and the bases of its three tuning spheres.

    Args:
        codes: (N, d) every code of the evolution (all generations); centred here before the SVD.
        last_codes: (m, d) the final generation's codes (PC1's sign and the radius).
        n_components: PCs kept (published: 50).
        seed: seed of ``np.random.default_rng`` for RND1 and RND2.

    Raises:
        ValueError: one line naming what is short or malformed: N < n_components, d < n_components + 2 (the
            random directions need room outside the PCs), no last codes, a dimension mismatch, non-finite codes.
    """
    all_codes, last = _codes(codes, "codes"), _codes(last_codes, "last_codes")
    (n, d), k = all_codes.shape, int(n_components)
    if k < 3:
        raise ValueError(f"pca_sphere_bases: n_components must be >= 3, got {n_components}")
    if n < k:
        raise ValueError(f"pca_sphere_bases: too few codes: {n} codes for {k} components (need N >= {k})")
    if d < k + 2:
        raise ValueError(f"pca_sphere_bases: code dimension {d} too small for {k} components and 2 random "
                         f"directions (need d >= {k + 2})")
    if last.shape[0] == 0 or last.shape[1] != d:
        raise ValueError(f"pca_sphere_bases: last_codes must have shape (m >= 1, {d}), got {last.shape}")
    _, singular, vt = np.linalg.svd(all_codes - all_codes.mean(axis=0), full_matrices=False)
    pcs = vt[:k].copy()
    signs = np.sign(pcs[np.arange(k), np.abs(pcs).argmax(axis=1)])
    signs[0] = -1.0 if float(last.mean(axis=0) @ pcs[0]) < 0 else 1.0
    pcs *= signs[:, None]
    rnd = _random_orthogonal(pcs, 2, np.random.default_rng(seed))
    bases = {"PC1_PC2_PC3": pcs[[0, 1, 2]].copy(), f"PC1_PC{k - 1}_PC{k}": pcs[[0, k - 2, k - 1]].copy(),
             "PC1_RND1_RND2": np.vstack([pcs[0], rnd])}
    return SphereBases(pcs=pcs, explained_variance=singular[:k] ** 2 / max(n - 1, 1),
                       radius=float(np.linalg.norm(last, axis=1).mean()), bases=bases)


def sphere_codes(basis: Any, radius: float, thetas_deg: Any, phis_deg: Any) -> np.ndarray:
    """(nθ, nφ, d) float32 codes radius · normalise(cos θ cos φ e1 + sin θ cos φ e2 + sin φ e3).

    Args:
        basis: (3, d) rows e1, e2, e3 (orthonormal for a true sphere; each combination is normalised anyway,
            so every code's norm is ``radius``).
        radius: the sphere's radius in code units (> 0).
        thetas_deg, phis_deg: grid angles in degrees.

    Raises:
        ValueError: basis not (3, d) and finite, radius not positive and finite, or a degenerate combination.
    """
    axes = np.asarray(basis, dtype=float)
    if axes.ndim != 2 or axes.shape[0] != 3 or not np.all(np.isfinite(axes)):
        raise ValueError(f"sphere_codes: basis must be a finite (3, d) array, got shape {axes.shape}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"sphere_codes: radius must be a positive finite number, got {radius!r}")
    combined = grid_directions(thetas_deg, phis_deg) @ axes
    norms = np.linalg.norm(combined, axis=-1, keepdims=True)
    if np.any(norms <= 1e-12 * np.linalg.norm(axes, axis=1).max()):
        raise ValueError("sphere_codes: the basis rows are linearly dependent (a grid point maps to zero)")
    return (radius * combined / norms).astype(np.float32)


def average_poles(tuning_map: Any, *, phis_deg: Any = None) -> np.ndarray:
    """A float64 copy of the map with each pole column replaced by its NaN-aware mean over θ.

    At φ = ±90° every θ shows the same image, so the published analysis averages those columns before a fit.

    Args:
        tuning_map: (nθ, nφ, ...) responses, axis 0 θ, axis 1 φ; trailing axes (channels, time bins) are
            averaged elementwise. NaN entries are ignored; a pole with no finite value stays NaN.
        phis_deg: (nφ,) the φ of each column in degrees; the columns with |φ| = 90° are the poles. Default: the
            first and last columns (the grid of :func:`grid_angles` with span 90°).

    Raises:
        ValueError: the map has fewer than 2 dimensions, or ``phis_deg`` does not match its φ axis.
    """
    values = np.array(tuning_map, dtype=float)
    if values.ndim < 2:
        raise ValueError(f"average_poles: the map must be (n_theta, n_phi, ...), got shape {values.shape}")
    if phis_deg is None:
        poles = [0, values.shape[1] - 1]
    else:
        phis = np.asarray(phis_deg, dtype=float).reshape(-1)
        if phis.size != values.shape[1]:
            raise ValueError(f"average_poles: {phis.size} phis_deg for a map with {values.shape[1]} phi columns")
        poles = list(np.flatnonzero(np.isclose(np.abs(phis), 90.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN pole: its mean is NaN, as documented
        for column in poles:
            values[:, column] = np.nanmean(values[:, column], axis=0)
    return values
