"""PCA spheres and tuning grids (latentopt.analysis.sphere): geometry with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from latentopt.analysis import average_poles, grid_angles, grid_directions, pca_sphere_bases, sphere_codes


def test_grid_angles_are_the_published_steps() -> None:
    np.testing.assert_allclose(grid_angles(), np.arange(-90.0, 90.1, 18.0))
    np.testing.assert_allclose(grid_angles(21), np.arange(-90.0, 90.1, 9.0))
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        grid_angles(1)
    with pytest.raises(ValueError, match="span_deg must be a positive"):
        grid_angles(11, 0.0)


def test_grid_directions_are_unit_vectors_with_poles_shared_across_theta() -> None:
    angles = grid_angles()
    z = grid_directions(angles, angles)
    assert z.shape == (11, 11, 3)
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0)
    np.testing.assert_allclose(z[:, 5], np.stack([np.cos(np.radians(angles)), np.sin(np.radians(angles)),
                                                   np.zeros(11)], axis=1), atol=1e-15)  # the equator, φ = 0
    np.testing.assert_allclose(z[:, -1], np.tile([0.0, 0.0, 1.0], (11, 1)), atol=1e-15)
    np.testing.assert_allclose(z[:, 0], np.tile([0.0, 0.0, -1.0], (11, 1)), atol=1e-15)
    np.testing.assert_allclose(z[5, 5], [1.0, 0.0, 0.0])  # the centre of the grid is e1


def planted_codes(seed: int = 0, n: int = 400, d: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes drifting along a planted direction (an evolution's main axis), plus isotropic spread."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    progress = np.linspace(0.0, 10.0, n)[:, None]
    codes = progress * direction + rng.normal(0.0, 0.3, (n, d))
    return codes, codes[-40:], direction


def test_pca_recovers_the_planted_direction_signed_towards_the_last_generation() -> None:
    codes, last, direction = planted_codes()
    bases = pca_sphere_bases(codes, last)
    assert abs(bases.pcs[0] @ direction) > 0.99 and bases.pcs[0] @ direction > 0
    assert last.mean(axis=0) @ bases.pcs[0] > 0
    flipped = pca_sphere_bases(codes, -last)  # PC1 follows the last generation's side
    np.testing.assert_allclose(flipped.pcs[0], -bases.pcs[0])
    assert bases.radius == pytest.approx(np.linalg.norm(last, axis=1).mean())
    expected = np.linalg.svd(codes - codes.mean(axis=0), compute_uv=False)[:50] ** 2 / (len(codes) - 1)
    np.testing.assert_allclose(bases.explained_variance, expected, rtol=1e-10)
    assert np.all(np.diff(bases.explained_variance) <= 0)


def test_pcs_and_random_directions_are_orthonormal() -> None:
    codes, last, _ = planted_codes(1)
    bases = pca_sphere_bases(codes, last, seed=3)
    assert bases.pcs.shape == (50, 80)
    np.testing.assert_allclose(bases.pcs @ bases.pcs.T, np.eye(50), atol=1e-12)
    assert set(bases.bases) == {"PC1_PC2_PC3", "PC1_PC49_PC50", "PC1_RND1_RND2"}
    for basis in bases.bases.values():
        assert basis.shape == (3, 80)
        np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(basis[0], bases.pcs[0])
    np.testing.assert_allclose(bases.bases["PC1_PC49_PC50"][1:], bases.pcs[[48, 49]])
    random = bases.bases["PC1_RND1_RND2"][1:]
    assert np.abs(random @ bases.pcs.T).max() < 1e-12  # outside the span of all 50 PCs
    again = pca_sphere_bases(codes, last, seed=3)
    np.testing.assert_array_equal(again.bases["PC1_RND1_RND2"], bases.bases["PC1_RND1_RND2"])
    other = pca_sphere_bases(codes, last, seed=4)
    assert not np.allclose(other.bases["PC1_RND1_RND2"][1:], random)


def test_pca_refuses_too_few_codes_or_dimensions() -> None:
    codes, last, _ = planted_codes(2, n=60, d=52)
    pca_sphere_bases(codes[:50], last)  # exactly enough codes and dimensions
    with pytest.raises(ValueError, match="too few codes: 49 codes for 50 components"):
        pca_sphere_bases(codes[:49], last)
    with pytest.raises(ValueError, match="code dimension 51 too small"):
        pca_sphere_bases(codes[:, :51], last[:, :51])
    with pytest.raises(ValueError, match=r"last_codes must have shape \(m >= 1, 52\)"):
        pca_sphere_bases(codes, last[:, :10])
    with pytest.raises(ValueError, match="codes has non-finite values"):
        pca_sphere_bases(np.full((60, 52), np.nan), last)


def test_sphere_codes_lie_on_the_sphere_and_match_the_formula() -> None:
    codes, last, _ = planted_codes(3)
    bases = pca_sphere_bases(codes, last)
    basis = bases.bases["PC1_PC2_PC3"]
    angles = grid_angles()
    grid = sphere_codes(basis, bases.radius, angles, angles)
    assert grid.shape == (11, 11, 80) and grid.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(grid, axis=-1), bases.radius, rtol=1e-6)
    np.testing.assert_allclose(grid[5, 5], bases.radius * basis[0], rtol=1e-5, atol=1e-6)  # (0°, 0°) is PC1
    theta, phi = np.radians(36.0), np.radians(-54.0)
    expected = bases.radius * (np.cos(theta) * np.cos(phi) * basis[0] + np.sin(theta) * np.cos(phi) * basis[1]
                               + np.sin(phi) * basis[2])
    np.testing.assert_allclose(grid[7, 2], expected, rtol=1e-5, atol=1e-5)
    for pole in (0, 10):  # every θ at φ = ±90° is the same code
        np.testing.assert_allclose(grid[:, pole], np.tile(grid[0, pole], (11, 1)), atol=1e-5)
    with pytest.raises(ValueError, match="radius must be a positive"):
        sphere_codes(basis, 0.0, angles, angles)
    with pytest.raises(ValueError, match=r"basis must be a finite \(3, d\)"):
        sphere_codes(basis[:2], 1.0, angles, angles)


def test_average_poles_replaces_the_pole_columns_by_their_mean() -> None:
    rng = np.random.default_rng(4)
    tuning_map = rng.normal(size=(11, 11))
    tuning_map[3, 0] = np.nan
    averaged = average_poles(tuning_map)
    np.testing.assert_allclose(averaged[:, 0], np.nanmean(tuning_map[:, 0]))
    np.testing.assert_allclose(averaged[:, 10], tuning_map[:, 10].mean())
    np.testing.assert_array_equal(averaged[:, 1:10], tuning_map[:, 1:10])
    assert np.isnan(tuning_map[3, 0])  # the input is not modified
    channels = rng.normal(size=(11, 11, 4))  # trailing axes are averaged elementwise
    np.testing.assert_allclose(average_poles(channels)[2, 10], channels[:, 10].mean(axis=0))


def test_average_poles_with_explicit_phis_and_all_nan_pole() -> None:
    phis = np.array([-45.0, 0.0, 45.0, 90.0])
    tuning_map = np.arange(12.0).reshape(3, 4)
    tuning_map[:, 3] = np.nan
    averaged = average_poles(tuning_map, phis_deg=phis)
    np.testing.assert_array_equal(averaged[:, :3], tuning_map[:, :3])  # -45° is not a pole
    assert np.all(np.isnan(averaged[:, 3]))
    with pytest.raises(ValueError, match="3 phis_deg for a map with 4 phi columns"):
        average_poles(tuning_map, phis_deg=phis[:3])
