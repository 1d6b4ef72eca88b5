"""The manifold experiment end to end against ground truth: a subject whose response is an exact Kent
function of the code's direction, through the PCA spheres, the grid, the blocks, the records and the fit.

The generator writes each code into the pixels (exactly invertible); the subject reads the code back and
responds ``A · exp(κ μ1·u + β[(μ2·u)² − (μ3·u)²]) + b`` of the code's unit direction ``u``. The truth lives in
code space; the test maps it into the basis the pipeline recorded (PCA signs are the pipeline's choice).
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from latentopt import load_manifold
from latentopt.generator import Generator
from latentopt.launch import run_experiment
from latentopt.plugins import build_registry, get_plugin_manager, hookimpl
from latentopt.subject import Subject

D = 60
SCALE = 40.0  # codes with |c_i| < SCALE / 2 fit in the pixels


class CodeImage(Generator):
    """``(n, D)`` codes written into the first ``D`` pixels of a 16 x 16 image (exactly invertible)."""

    latent_dim = D
    image_size = (16, 16)

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        flat = torch.full((codes.shape[0], 3 * 16 * 16), 0.5)
        flat[:, :D] = 0.5 + codes / SCALE
        return flat.reshape(-1, 3, 16, 16)


class KentNeuron(Subject):
    """Responds with a Kent function of the direction of the code inside a CodeImage image (plus noise)."""

    def __init__(self, *, mu: list[list[float]], kappa: float, beta: float, amplitude: float, baseline: float,
                 noise: float = 0.0) -> None:
        self.channel_names = ["kent"]
        self.mu = np.asarray(mu, dtype=np.float64)  # (3, D) rows mu1, mu2, mu3 in code space
        self.kappa, self.beta, self.amplitude, self.baseline, self.noise = kappa, beta, amplitude, baseline, noise

    def respond(self, images: torch.Tensor, *, image_ids: Any, rng: np.random.Generator) -> np.ndarray:
        codes = (images.reshape(images.shape[0], -1)[:, :D].double().numpy() - 0.5) * SCALE
        u = codes / np.linalg.norm(codes, axis=1, keepdims=True)
        r = self.amplitude * np.exp(self.kappa * (u @ self.mu[0]) + self.beta * ((u @ self.mu[1]) ** 2
                                                                                 - (u @ self.mu[2]) ** 2))
        r = r + self.baseline + self.noise * rng.standard_normal(r.shape)
        return r[:, None]


def _plugin() -> types.ModuleType:
    from latentopt.builtins.objectives import SingleUnit

    module = types.ModuleType("kent_test_plugin")

    def latentopt_register_generators(register):
        register("code_image", lambda: CodeImage())

    def latentopt_register_subjects(register):
        register("kent_neuron", lambda **kw: KentNeuron(**kw))

    def latentopt_register_objectives(register):
        register("first_channel", lambda: SingleUnit())

    for name, fn in list(locals().items()):
        if name.startswith("latentopt_register"):
            setattr(module, name, hookimpl(fn))
    return module


@pytest.fixture(scope="module")
def registry():
    pm = get_plugin_manager(entry_points=False)
    pm.register(_plugin(), name="kent_test_plugin")
    return build_registry(pm)


def _axes(seed: int = 3) -> np.ndarray:
    """Orthonormal directions v1..v55 of code space (the evolution's principal axes, by construction)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((D, D)))
    return q.T


def _codes_file(tmp: Path) -> Path:
    """An 'evolution': codes whose PCs are v1, v2, ... (variances falling), last generation along +v1."""
    v = _axes()
    rng = np.random.default_rng(5)
    sd = np.concatenate([[12.0, 8.0, 5.0], np.linspace(3.0, 0.5, 49)])  # PC1-3 well apart: the sphere is v1-v3
    codes = rng.standard_normal((2000, 52)) * sd @ v[:52]
    last = 8.0 * v[0] + 0.3 * rng.standard_normal((40, 52)) @ v[:52]
    path = tmp / "codes.npz"
    np.savez(path, codes=np.concatenate([codes, last]), last=last)
    return path


def _truth(theta: float, phi: float, psi: float, sphere: tuple[int, int, int] = (0, 1, 2)) -> np.ndarray:
    """Kent axes (3, D) in code space: mu1 at (θ, φ) in the sphere (v_a, v_b, v_c), rotated by ψ about mu1."""
    from latentopt.analysis import kent_basis

    v = _axes()
    return kent_basis(theta, phi, psi) @ v[list(sphere)]


def _config(codes: Path, subject: dict[str, Any], **experiment: Any) -> dict[str, Any]:
    return {
        "seed": 0, "device": "cpu", "progress": False,
        "generator": {"name": "code_image"}, "objective": {"name": "first_channel"},
        "subject": {"name": "kent_neuron", **subject},
        "experiment": {"name": "manifold", "codes": str(codes), "references": [], "block_size": 40,
                       "spheres": ["PC1_PC2_PC3", "PC1_PC49_PC50", "PC1_RND1_RND2"], **experiment},
    }


def _run(tmp: Path, config: dict[str, Any], registry) -> Path:
    out = tmp / "out"
    run_experiment(config, out, config_yaml=json.dumps(config), registry=registry)
    return out


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


@pytest.mark.parametrize(("theta", "phi", "psi", "kappa", "beta"), [
    (0.4, 0.3, 0.7, 2.0, 0.4),
    (-0.9, -0.5, 2.0, 4.0, 1.0),
])
def test_noise_free_kent_neuron_is_recovered_through_the_whole_pipeline(tmp_path, registry, theta, phi, psi,
                                                                         kappa, beta):
    mu = _truth(theta, phi, psi)
    config = _config(_codes_file(tmp_path), {"mu": mu.tolist(), "kappa": kappa, "beta": beta, "amplitude": 2.0,
                                             "baseline": 1.0})
    out = _run(tmp_path, config, registry)
    record = load_manifold(out)
    result = json.loads((out / "manifold.json").read_text())["spheres"][0]
    assert result["name"] == "PC1_PC2_PC3"
    # kappa within 10 %, the peak within 5 degrees (in the basis the pipeline recorded)
    assert abs(result["kappa"] - kappa) / kappa < 0.10, result
    expected_peak = record.bases[0] @ mu[0]
    assert _angle_deg(np.asarray(result["peak_direction"]), expected_peak) < 5.0
    assert result["r2"] > 0.99
    # the recorded map is the truth at every grid point
    assert record.responses.shape == (3, 11, 11, 1)
    assert np.isfinite(record.responses).all()
    # the sphere is the one the 'evolution' defined: PC1 = +v1, PC2, PC3 = ±v2, ±v3 (PCA of 2040 codes: within 0.5 %)
    v = _axes()
    assert np.dot(record.bases[0][0], v[0]) > 0.995
    assert abs(np.dot(record.bases[0][1], v[1])) > 0.995 and abs(np.dot(record.bases[0][2], v[2])) > 0.995
    figure = out / "manifold_PC1_PC2_PC3.png"
    assert figure.stat().st_size > 10_000


def test_noise_widens_the_error_but_keeps_the_peak(tmp_path, registry):
    """With trial noise of 10 % of the peak (sd 0.3 on a 1 + 2·e^2 peak) and 2 repeats, κ stays within 25 %
    and the peak within 10 degrees; the ANOVA is significant and the noise ceiling high."""
    mu = _truth(0.5, 0.2, 1.0)
    peak = 1.0 + 2.0 * np.exp(2.0)
    config = _config(_codes_file(tmp_path), {"mu": mu.tolist(), "kappa": 2.0, "beta": 0.4, "amplitude": 2.0,
                                             "baseline": 1.0, "noise": 0.1 * peak}, repeats=2)
    out = _run(tmp_path, config, registry)
    record = load_manifold(out)
    result = json.loads((out / "manifold.json").read_text())["spheres"][0]
    assert abs(result["kappa"] - 2.0) / 2.0 < 0.25, result
    assert _angle_deg(np.asarray(result["peak_direction"]), record.bases[0] @ mu[0]) < 10.0
    assert result["anova_p"] < 1e-6 and result["noise_ceiling"] > 0.8, result


def test_flat_neuron_gives_r2_near_zero_and_no_peak(tmp_path, registry):
    mu = _truth(0.0, 0.0, 0.0)
    config = _config(_codes_file(tmp_path), {"mu": mu.tolist(), "kappa": 0.0, "beta": 0.0, "amplitude": 0.0,
                                             "baseline": 5.0, "noise": 1.0}, repeats=2)
    out = _run(tmp_path, config, registry)
    for result in json.loads((out / "manifold.json").read_text())["spheres"]:
        assert result["r2"] is None or result["r2"] < 0.15, result
        assert result["anova_p"] is None or result["anova_p"] > 0.001, result


def test_poles_are_shown_once_and_stand_for_their_column(tmp_path, registry):
    mu = _truth(0.2, 0.1, 0.3)
    config = _config(_codes_file(tmp_path), {"mu": mu.tolist(), "kappa": 1.0, "beta": 0.2, "amplitude": 1.0,
                                             "baseline": 0.0}, spheres=["PC1_PC2_PC3"])
    out = _run(tmp_path, config, registry)
    record = load_manifold(out)
    assert len(record.design.image_ids) == 11 * 9 + 2  # 9 columns of 11, one image per pole
    assert record.design.blocks == -(-101 // 40)
    pole_column = record.responses[0, :, -1, 0]
    assert np.all(pole_column == pole_column[0])
