"""The metric of a generator's code space (latentopt.geometry), against answers known exactly.

Ground truth: at ``z0`` the Hessian of a squared image distance is the Gauss-Newton matrix
``2 JᵀJ / P`` for pixel MSE, whatever the generator, because the residual ``G(z) − G(z0)`` is 0
there. The Fourier generator is linear in its code before its sigmoid; ``J`` is built explicitly
with ``torch.autograd.functional.jacobian`` at 32 px (d = 168), so the reference is exact.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentopt import geometry as geo
from latentopt.builtins.generators import FourierGenerator, PixelGenerator
from latentopt.checks import ConfigError
from latentopt.generator import FixedSubspace


@pytest.fixture(scope="module")
def fourier() -> FourierGenerator:
    return FourierGenerator(image_size=32, max_frequency=3, device="cpu")  # d = 6 * 7 * 4 = 168


@pytest.fixture(scope="module")
def z0(fourier) -> np.ndarray:
    return fourier.initial_codes(1, rng=np.random.default_rng(0))[0]


@pytest.fixture(scope="module")
def analytic(fourier, z0) -> np.ndarray:
    """``2 JᵀJ / P`` in float64 from the explicit Jacobian ``(P, d)`` at ``z0``."""
    jac = torch.autograd.functional.jacobian(lambda z: fourier._generate(z).flatten(), torch.from_numpy(z0)[None],
                                             vectorize=True)
    jac = jac[:, 0].double().numpy()
    return 2.0 * jac.T @ jac / jac.shape[0]


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_fourier_is_linear_before_its_sigmoid_and_not_after(fourier):
    rng = np.random.default_rng(1)
    a, b = (torch.from_numpy(fourier.initial_codes(1, rng=rng)) for _ in range(2))
    zero = torch.zeros_like(a)
    with torch.no_grad():
        images = {name: fourier._generate(code) for name, code in {"ab": a + b, "a": a, "b": b, "0": zero}.items()}
    pre = {name: torch.logit(x.double()) for name, x in images.items()}
    assert (pre["ab"] - pre["a"] - pre["b"] + pre["0"]).abs().max() < 1e-4
    # after the sigmoid it is not linear: the reference must be the Jacobian at z0, not a global J
    assert (images["ab"] - images["a"] - images["b"] + images["0"]).abs().max() > 1e-2


def test_full_hessian_is_the_gauss_newton_matrix(fourier, z0, analytic):
    assert _relative(geo.full_hessian(fourier, z0, geo.pixel_mse), analytic) < 1e-4


def _gap_index(spectrum: np.ndarray, k: int) -> int:
    """The ``j`` in [k/2, k) with the largest relative gap λ_j / λ_(j+1): subspaces are defined there
    (the Fourier spectrum has near-degenerate pairs: real and imaginary parts of a coefficient)."""
    ratios = spectrum[: k - 1] / spectrum[1:k]
    return int(np.argmax(ratios[k // 2 - 1 :]) + k // 2)


@pytest.mark.parametrize("solver", ["lanczos", "block"])
def test_lanczos_matches_the_analytic_spectrum_and_subspace(fourier, z0, analytic, solver):
    k = min(50, fourier.latent_dim // 4)
    values, vectors = np.linalg.eigh(analytic)
    values, vectors = values[::-1], vectors[:, ::-1]
    metric = geo.top_eigenpairs(fourier, z0, k, geo.pixel_mse, solver=solver)
    assert metric.eigvals.shape == (k,) and metric.eigvecs.shape == (fourier.latent_dim, k)
    assert np.all(np.diff(metric.eigvals) <= 0)
    assert np.abs(metric.eigvals - values[:k]).max() / values[k - 1] < 1e-4
    assert np.abs(metric.eigvecs.T @ metric.eigvecs - np.eye(k)).max() < 1e-6
    j = _gap_index(values, k)
    overlap = np.linalg.norm(metric.eigvecs[:, :j].T @ vectors[:, :j]) ** 2  # Σ cos² of principal angles
    assert overlap >= j - 1e-3
    assert metric.provenance["distance"] == "pixel_mse" and metric.provenance["solver"] == solver


def test_autograd_and_finite_difference_hvps_agree_on_fourier(fourier, z0, analytic):
    """Against ``v @ 2JᵀJ/P``, relative per row; central differences at ε = 1e-2 on a smooth generator."""
    vectors = np.random.default_rng(2).standard_normal((6, fourier.latent_dim))
    exact = vectors @ analytic
    autograd = geo.hvp(fourier, z0, vectors, geo.pixel_mse)
    fd = geo.hvp(fourier, z0, vectors, geo.pixel_mse, method="fd", eps=1e-2)
    errors = {name: np.linalg.norm(rows - exact, axis=1) / np.linalg.norm(exact, axis=1)
              for name, rows in {"autograd": autograd, "fd": fd}.items()}
    assert errors["autograd"].max() < 1e-5  # measured 1e-7
    assert errors["fd"].max() < 1e-3  # measured 2.3e-5


def _signal_preserving_fc6(path) -> object:
    """DeePSim fc6 (4096-d, 256 px) with random weights, written and loaded by the real loader.

    torch's default initialisation shrinks the signal about 1e-5-fold over the 12 layers: the image
    then hardly depends on the code (‖J v‖ ~ 1e-7) and a finite-difference HVP drowns in float32
    rounding. Each layer's weights are rescaled so its output has unit std on N(0, 1) codes (biases
    0; the last layer std 40 raw units, so pixels spread around the mean colour, ~1 % clamped).
    """
    from latentopt_deepsim.architecture import LEAKY_SLOPE, DeePSimNetwork, get_variant
    from latentopt_deepsim.generator import DeePSimGenerator
    from latentopt_deepsim.testing import write_state_dict

    torch.manual_seed(0)
    variant = get_variant("fc6")
    network = DeePSimNetwork(variant)
    x = torch.randn(8, variant.latent_dim)
    with torch.no_grad():
        for layer in variant.layers:
            module = getattr(network.G, layer.name)
            module.bias.zero_()
            y = module(x)
            scale = (1.0 if layer.activation else 40.0) / y.std()
            module.weight.mul_(scale)
            x = F.leaky_relu(y * scale, LEAKY_SLOPE) if layer.activation else y * scale
            if layer.name == variant.reshape_after:
                x = x.reshape(x.shape[0], 256, 4, 4)
    write_state_dict(path, network.G.state_dict())
    generator = DeePSimGenerator(variant="fc6", weights=path, device="cpu")
    path.unlink()  # 224 MB, loaded
    return generator


@pytest.fixture(scope="module")
def deepsim(tmp_path_factory):
    return _signal_preserving_fc6(tmp_path_factory.mktemp("fc6") / "upconvGAN_fc6.pt")


def test_autograd_and_finite_difference_hvps_agree_on_deepsim(deepsim):
    """Full 4096-d fc6 at 256 px, three directions. ε = 1e-2 measured 1.1-2.9 % off: LeakyReLU kinks
    and clamped pixels crossed within ±ε (float64 gives the same 2.9 %; at ε = 1e-3 float64 is 0.08 %)."""
    code = deepsim.initial_codes(1, rng=np.random.default_rng(0))[0]
    vectors = np.random.default_rng(1).standard_normal((3, deepsim.latent_dim))
    autograd = geo.hvp(deepsim, code, vectors, "mse")
    fd = geo.hvp(deepsim, code, vectors, "mse", method="fd", eps=1e-2)
    assert np.all(np.einsum("md,md->m", vectors, autograd) > 0)
    assert (np.linalg.norm(fd - autograd, axis=1) / np.linalg.norm(autograd, axis=1)).max() < 5e-2


def test_full_and_lanczos_agree_on_a_deepsim_subspace(deepsim):
    """Reduced setting: 16 free coordinates of the fc6 code (FixedSubspace), the rest held at z0,
    so the full Hessian costs 16 HVPs; Lanczos top 3 against eigh of it."""
    code = deepsim.initial_codes(1, rng=np.random.default_rng(0))[0]
    sub = FixedSubspace(deepsim, free=list(range(16)), fixed=code)
    start = code[:16]
    spectrum = geo.spectrum_from_full(geo.full_hessian(sub, start, "mse"), 3)
    metric = geo.top_eigenpairs(sub, start, 3, "mse")
    assert np.abs(metric.eigvals - spectrum.eigvals).max() / spectrum.eigvals[-1] < 1e-4


def test_averaged_operator_is_the_mean_of_the_hessians(fourier):
    codes = fourier.initial_codes(3, rng=np.random.default_rng(3))
    mean = np.mean([geo.full_hessian(fourier, c, "mse") for c in codes], axis=0)
    vectors = np.random.default_rng(4).standard_normal((5, fourier.latent_dim))
    assert _relative(geo.HessianOperator(fourier, codes, "mse", batch=4).apply(vectors), vectors @ mean) < 1e-5
    averaged = geo.average_top_eigenpairs(fourier, codes, 10, "mse")
    reference = geo.spectrum_from_full(mean, 10)
    assert np.abs(averaged.eigvals - reference.eigvals).max() / reference.eigvals[-1] < 1e-4
    assert averaged.provenance["n_codes"] == 3


def test_variance_captured_exact_and_by_hutchinson(fourier, z0, analytic):
    full = geo.spectrum_from_full(analytic)
    trace = float(np.trace(analytic))
    assert full.provenance["trace"] == pytest.approx(trace)
    assert full.provenance["variance_captured"] == pytest.approx(1.0, abs=1e-9)
    top = geo.spectrum_from_full(analytic, 20)
    assert top.provenance["variance_captured"] == pytest.approx(full.eigvals[:20].sum() / trace)
    estimate, error = geo.hutchinson_trace(geo.HessianOperator(fourier, z0, "mse"), probes=128, seed=0)
    assert abs(estimate - trace) < 4 * error and error < 0.05 * trace
    metric = geo.top_eigenpairs(fourier, z0, 20, "mse", trace_probes=128, seed=0)
    assert metric.provenance["trace"] == pytest.approx(estimate)
    assert metric.provenance["variance_captured"] == pytest.approx(geo.variance_captured(metric.eigvals, estimate))


def test_metric_round_trip_and_the_hessian_cma_loader(tmp_path, fourier, z0):
    from latentopt_cmafamily.hessian import load_metric

    metric = geo.top_eigenpairs(fourier, z0, 8, "mse")
    path = metric.save(tmp_path / "metric.npz")
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"eigvecs", "eigvals", "provenance"} and data["provenance"].dtype.kind == "U"
    loaded = geo.Metric.load(path)
    np.testing.assert_array_equal(loaded.eigvecs, metric.eigvecs)
    np.testing.assert_array_equal(loaded.eigvals, metric.eigvals)
    assert loaded.provenance == metric.provenance and loaded.provenance["generator"]["class"] == "FourierGenerator"
    vectors, values = load_metric(path)
    np.testing.assert_array_equal(vectors, metric.eigvecs)
    np.testing.assert_array_equal(values, metric.eigvals)


def test_bad_metric_files_are_one_line_errors_naming_the_file(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, eigvecs=np.array([object(), object()], dtype=object), eigvals=np.ones(2))
    missing = tmp_path / "missing.npz"
    np.savez(missing, eigvecs=np.eye(3))
    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, eigvecs=np.eye(3), eigvals=np.ones(2))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    for path, words in [(pickled, "plain arrays"), (missing, "missing arrays"), (shapes, "eigvecs must be"),
                        (garbage, "plain arrays"), (tmp_path / "absent.npz", "no such")]:
        with pytest.raises(ConfigError, match=words) as caught:
            geo.Metric.load(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def perceptual() -> geo.PerceptualDistance:
    return geo.PerceptualDistance(device="cpu")


def test_perceptual_distance_is_zero_on_identical_images_and_differentiable(perceptual):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(perceptual(images, images), torch.zeros(2))
    other = images.flip(-1).clone().requires_grad_(True)
    value = perceptual(images, other)
    assert value.shape == (2,) and torch.all(value > 0)
    (grad,) = torch.autograd.grad(value.sum(), other)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0


def test_perceptual_hessian_is_positive_semidefinite(perceptual):
    """Fourier at 32 px, max_frequency 1 (d = 36): the whole spectrum of the full Hessian (36 HVPs
    through EfficientNet-Lite0 at 224 px), so the check covers the smallest eigenvalues too."""
    small = FourierGenerator(image_size=32, max_frequency=1, device="cpu")
    code = small.initial_codes(1, rng=np.random.default_rng(5))[0]
    spectrum = np.linalg.eigvalsh(geo.full_hessian(small, code, perceptual, batch=12))
    assert spectrum[0] >= -1e-6 * spectrum[-1] and spectrum[-1] > 0


def test_perceptual_residual_form_equals_double_backward(perceptual):
    """The HVP through ``residuals`` (2 J_rᵀJ_r, forward mode) against double backward of the
    distance itself (a plain callable has no ``residuals``): one direction, 1e-4 relative."""
    small = FourierGenerator(image_size=32, max_frequency=1, device="cpu")
    code = small.initial_codes(1, rng=np.random.default_rng(5))[0]
    vector = np.random.default_rng(6).standard_normal((1, small.latent_dim))
    fast = geo.hvp(small, code, vector, perceptual)
    plain = geo.hvp(small, code, vector, lambda a, b: perceptual(a, b))
    assert _relative(fast, plain) < 1e-4


def test_distance_names_and_bad_settings_are_config_errors(monkeypatch, fourier, z0):
    assert geo.distance_by_name("mse") is geo.pixel_mse
    with pytest.raises(ConfigError, match=r"^distance: unknown distance 'ssim'"):
        geo.distance_by_name("ssim")
    monkeypatch.setitem(sys.modules, "lpips", None)  # importing it fails, installed or not
    with pytest.raises(ConfigError, match="lpips package, which is not installed"):
        geo.distance_by_name("lpips")
    with pytest.raises(ConfigError, match="method"):
        geo.hvp(fourier, z0, np.ones((1, fourier.latent_dim)), method="secant")
    with pytest.raises(ConfigError, match="k must be"):
        geo.top_eigenpairs(fourier, z0, fourier.latent_dim, "mse")
    with pytest.raises(ConfigError, match=r"vectors: expected shape \(m, 168\)"):
        geo.hvp(fourier, z0, np.ones((2, 3)))
    pixel = PixelGenerator(image_size=16, resolution=2, device="cpu")
    pixel.differentiable = False
    with pytest.raises(ConfigError, match="not differentiable"):
        geo.hvp(pixel, np.zeros(12), np.ones((1, 12)))
