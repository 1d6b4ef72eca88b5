"""The metric a generator's code space inherits from an image distance (Wang & Ponce, ICLR 2021).

For a generator ``G`` and a squared image distance ``D(x0, x) = d²(x0, x)``, the metric at a code
``z0`` is the Hessian ``H = ∂²/∂z² D(G(z0), G(z))`` at ``z = z0``, a ``(d, d)`` positive semi-definite
matrix: a few top eigenvectors change the image a lot, most barely do. This module gives squared
distances on image batches, batched Hessian-vector products (HVPs) at ``z0``, the top eigenpairs by
Lanczos, the full Hessian for small ``d``, the Hessian averaged over many codes (what
Hessian-preconditioned CMA-ES uses, :mod:`latentopt_cmafamily.hessian`) and :class:`Metric`, the
``.npz`` file that optimizer reads.

Precision: codes and images stay float32 through the generator (its weights are float32); the
Lanczos side (scipy, Rayleigh-Ritz) works in float64 on the float32 HVPs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.checks import ConfigError, finite_number, integer
from latentopt.generator import ArrayLike, Generator
from latentopt.image_distances import (  # noqa: F401  (re-exported: the distances are part of this API)
    PERCEPTUAL_BLOCKS,
    Distance,
    LpipsDistance,
    PerceptualDistance,
    distance_by_name,
    distance_name,
    pixel_mse,
)

METHODS = ("autograd", "fd")
SOLVERS = ("lanczos", "block")


# ---------------------------------------------------------------------------------------------
# Hessian-vector products
# ---------------------------------------------------------------------------------------------


def _hvp_autograd(generator: Generator, centres: torch.Tensor, vectors: torch.Tensor,
                  distance: Distance) -> torch.Tensor:
    """Rows ``H(z_r) v_r`` as ``Jᵀ (∇²ₓD) J v`` with ``J`` the generator's Jacobian at ``z_r``.

    Exact at ``z_r``, not an approximation: ``∇²f = Jᵀ(∇²ₓD)J + Σ_p (∂D/∂x_p) ∇²G_p`` and ``∂D/∂x``
    vanishes at ``x = G(z_r)``, the minimum of ``D(G(z_r), ·)``. ``J v`` comes from the double-vjp
    trick (``J v = ∂/∂u (Jᵀu) · v``) and ``Jᵀ`` from the same forward graph. ``∇²ₓD`` comes from
    double backward of the distance alone, or, for a distance with ``residuals(images)`` (``D(a, b) =
    ‖r(a) − r(b)‖²``), as ``2 J_rᵀ J_r`` (exact for the same reason) with ``J_r u`` by forward mode.
    Measured, 2 CPU threads: on the Fourier generator (64 px, d = 1386, 50 directions) 0.33 ms per
    HVP, against 0.72 ms for torch.func forward-over-reverse on the whole composition and 13 ms for
    double backprop through it (index_put's double backward is slow); through EfficientNet-Lite0
    the residual form is ~20x faster than double backward, whose depthwise convolutions run one
    convolution per channel group.
    """
    z = centres.detach().clone().requires_grad_(True)
    images = generator._generate(z)
    probe = torch.zeros_like(images, requires_grad=True)
    (transposed,) = torch.autograd.grad(images, z, probe, create_graph=True)
    (jv,) = torch.autograd.grad(transposed, probe, vectors, retain_graph=True)
    residuals = getattr(distance, "residuals", None)
    if residuals is not None:
        tangent = torch.func.jvp(residuals, (images.detach(),), (jv.detach(),))[1]
        (hv,) = torch.autograd.grad(residuals(images), z, 2.0 * tangent)
        return hv
    x = images.detach().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(distance(images.detach(), x).sum(), x, create_graph=True)
    if not grad_x.requires_grad:  # a distance linear in x near x0 has no curvature
        return torch.zeros_like(z)
    (curved,) = torch.autograd.grad(grad_x, x, jv, allow_unused=True)
    if curved is None:
        return torch.zeros_like(z)
    (hv,) = torch.autograd.grad(images, z, curved)
    return hv


def _hvp_fd(generator: Generator, centres: torch.Tensor, vectors: torch.Tensor,
            distance: Distance, eps: float) -> torch.Tensor:
    """Rows ``H(z_r) v_r`` by central differences of the gradient along the unit direction ``v̂``.

    ``H v ≈ ‖v‖ (∇f(z0 + ε v̂) − ∇f(z0 − ε v̂)) / 2ε``. The gradient at ``z0`` is 0 analytically, so a
    forward difference would need one gradient instead of two, but its error is O(ε) and it does not
    cancel the float32 rounding of the reference image ``G(z0)``; the central one is O(ε²) and
    cancels both to first order, for twice the gradients (one batched pass of ``2 m`` codes).
    """
    norms = vectors.norm(dim=1, keepdim=True)
    step = eps * vectors / norms.clamp_min(torch.finfo(vectors.dtype).tiny)
    with torch.no_grad():
        reference = generator._generate(centres)
    z = torch.cat([centres + step, centres - step]).requires_grad_(True)
    f = distance(torch.cat([reference, reference]), generator._generate(z)).sum()
    (grad,) = torch.autograd.grad(f, z)
    m = centres.shape[0]
    return (grad[:m] - grad[m:]) * (norms / (2.0 * eps))


class HessianOperator:
    """The averaged metric ``v -> mean_i H(z_i) v`` as a batched operator.

    Args:
        generator: a differentiable generator (``_generate`` keeps the graph).
        codes: ``(N, d)`` codes ``z_i`` (one code: the metric at that code).
        distance: a :data:`Distance` or its name (built on the generator's device).
        method: ``"autograd"`` (exact, :func:`_hvp_autograd`) or ``"fd"`` (central finite
            differences of autograd gradients, step ``eps`` along each unit direction; Wang & Ponce
            used ε = 1e-2).
        eps: finite-difference step (code units) for ``"fd"``.
        batch: largest number of (code, direction) pairs per pass; default ``generator.batch_size``.

    Attributes:
        hvp_count: (code, direction) products computed so far.
    """

    def __init__(self, generator: Generator, codes: ArrayLike, distance: Distance | str = "mse", *,
                 method: str = "autograd", eps: float = 1e-2, batch: int | None = None) -> None:
        if not generator.differentiable:
            raise ConfigError(f"generator: {type(generator).__name__} is not differentiable; its metric needs autograd")
        if method not in METHODS:
            raise ConfigError(f"method: {method!r} is not one of {', '.join(METHODS)}")
        self.generator, self.method = generator, method
        self.eps = finite_number(eps, "eps", minimum=0.0)
        self.batch = integer(batch if batch is not None else generator.batch_size, "batch", minimum=1)
        self.distance = distance_by_name(distance, generator.device) if isinstance(distance, str) else distance
        self.codes = _as_rows(codes, generator.latent_dim, "codes").to(generator.device)
        self.dim = generator.latent_dim
        self.hvp_count = 0

    def apply(self, vectors: ArrayLike) -> np.ndarray:
        """``(m, d)`` directions -> ``(m, d)`` float64 rows ``mean_i H(z_i) v_j``."""
        v = _as_rows(vectors, self.dim, "vectors").to(self.generator.device)
        n, m = self.codes.shape[0], v.shape[0]
        total = torch.zeros((m, self.dim), dtype=torch.float64)  # on the CPU: MPS has no float64
        pairs = torch.arange(n * m, device=v.device)
        with torch.inference_mode(False), torch.enable_grad():
            for chunk in torch.split(pairs, self.batch):
                code_rows, vector_rows = chunk // m, chunk % m
                centres, directions = self.codes[code_rows], v[vector_rows]
                if self.method == "autograd":
                    rows = _hvp_autograd(self.generator, centres, directions, self.distance)
                else:
                    rows = _hvp_fd(self.generator, centres, directions, self.distance, self.eps)
                total.index_add_(0, vector_rows.cpu(), rows.detach().cpu().double())
        self.hvp_count += n * m
        return total.numpy() / n

    def matmat(self, block: np.ndarray) -> np.ndarray:
        """``(d, m)`` float64 columns -> ``(d, m)`` float64, for the Lanczos side."""
        return self.apply(np.ascontiguousarray(np.asarray(block).T)).T

    def linear_operator(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` (float64). ARPACK (``eigsh``) calls ``matvec``
        one vector at a time; ``matmat`` batches and serves block methods."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.dim, self.dim), matvec=lambda v: self.matmat(np.reshape(v, (-1, 1)))[:, 0],
                              matmat=self.matmat, rmatvec=lambda v: self.matmat(np.reshape(v, (-1, 1)))[:, 0],
                              dtype=np.float64)


def _as_rows(values: ArrayLike, dim: int, key: str) -> torch.Tensor:
    """``(d,)`` or ``(m, d)`` numpy/torch -> ``(m, d)`` float32 torch, finite."""
    tensor = values.detach() if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
    tensor = tensor.reshape(1, -1) if tensor.ndim == 1 else tensor
    if tensor.ndim != 2 or tensor.shape[1] != dim or tensor.shape[0] == 0:
        raise ConfigError(f"{key}: expected shape (m, {dim}), got {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigError(f"{key}: contains NaN or inf")
    return tensor.contiguous()


def hvp(generator: Generator, z0: ArrayLike, vectors: ArrayLike, distance: Distance | str = "mse", *,
        method: str = "autograd", eps: float = 1e-2, batch: int | None = None) -> np.ndarray:
    """Hessian-vector products ``H(z0) v`` for ``m`` directions at once.

    Args:
        generator: differentiable generator.
        z0: ``(d,)`` or ``(1, d)`` code.
        vectors: ``(m, d)`` directions (any norm).
        distance, method, eps, batch: as :class:`HessianOperator`.

    Returns:
        ``(m, d)`` float64.
    """
    return HessianOperator(generator, z0, distance, method=method, eps=eps, batch=batch).apply(vectors)


def full_hessian(generator: Generator, z0: ArrayLike, distance: Distance | str = "mse", *,
                 method: str = "autograd", eps: float = 1e-2, batch: int | None = None) -> np.ndarray:
    """The whole ``(d, d)`` float64 Hessian (averaged when ``z0`` is ``(N, d)``), symmetrised.

    ``d`` HVPs of the identity's columns, ``batch`` per pass: for small ``d`` (a few thousand).
    """
    operator = HessianOperator(generator, z0, distance, method=method, eps=eps, batch=batch)
    columns = operator.apply(np.eye(operator.dim, dtype=np.float32))
    return (columns + columns.T) / 2.0


# ---------------------------------------------------------------------------------------------
# Eigenpairs
# ---------------------------------------------------------------------------------------------


def _ritz(basis: np.ndarray, images: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rayleigh-Ritz on ``span(basis)``: the top ``count`` values, vectors, their images, residual norms."""
    projected = basis.T @ images
    values, coords = np.linalg.eigh((projected + projected.T) / 2.0)
    values, coords = values[::-1][:count], coords[:, ::-1][:, :count]
    vectors, mapped = basis @ coords, images @ coords
    return values, vectors, mapped, np.linalg.norm(mapped - vectors * values, axis=0)


def _extend(basis: np.ndarray, new: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal columns spanning ``new`` outside ``span(basis)`` (two Gram-Schmidt passes)."""
    new = new / np.maximum(np.linalg.norm(new, axis=0), np.finfo(float).tiny)
    for _ in range(2):
        new = new - basis @ (basis.T @ new)
    q, r = np.linalg.qr(new)
    kept = q[:, np.abs(np.diag(r)) > 1e-8]
    if kept.shape[1] == 0:  # the residuals lie in the basis: restart the search from noise
        return _extend(basis, rng.standard_normal(new.shape), rng)
    return kept


def _block_lanczos(operator: HessianOperator, k: int, *, block: int, tol: float, max_iter: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Top ``k`` eigenpairs by block Krylov iteration with full reorthogonalisation.

    Each step applies the operator to one block (one batched HVP pass) and extends the basis with
    the residuals ``H u − θ u`` of the top unconverged Ritz pairs: the block Krylov space of block
    Lanczos, in exact arithmetic. When the basis would exceed ``k + 6 block`` columns it restarts
    from its top ``k + block`` Ritz vectors (their images need no new HVP). A pair has converged
    when ``‖H u − θ u‖ ≤ tol · θ_max``.
    """
    d = operator.dim
    block = min(block, d)
    cap = min(d, k + 6 * block)
    basis = np.linalg.qr(rng.standard_normal((d, block)))[0]
    images = operator.matmat(basis)
    for step in range(1, max_iter + 1):
        values, vectors, mapped, residuals = _ritz(basis, images, min(k + block, basis.shape[1]))
        unconverged = residuals > tol * max(abs(values[0]), np.finfo(float).tiny)
        if not unconverged[:k].any() or basis.shape[1] >= d or step == max_iter:
            break
        pick = [i for i in range(values.size) if unconverged[i] or i >= k][:block]
        new_dirs = mapped[:, pick] - vectors[:, pick] * values[pick]
        if basis.shape[1] + len(pick) > cap:
            basis, images = vectors, mapped
        new = _extend(basis, new_dirs, rng)[:, : d - basis.shape[1]]
        basis, images = np.hstack([basis, new]), np.hstack([images, operator.matmat(new)])
    info = {"iterations": step, "converged": int(k - unconverged[:k].sum()),
            "max_relative_residual": float(residuals[:k].max() / max(abs(values[0]), np.finfo(float).tiny))}
    return values[:k], vectors[:, :k], info


def _arpack(operator: HessianOperator, k: int, *, tol: float, max_iter: int | None,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Top ``k`` eigenpairs by scipy's ``eigsh`` (ARPACK implicitly restarted Lanczos), one HVP per step."""
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    start = rng.standard_normal(operator.dim)
    try:
        values, vectors = eigsh(operator.linear_operator(), k=k, which="LA", tol=tol, maxiter=max_iter, v0=start)
    except ArpackNoConvergence as err:
        raise RuntimeError(f"Lanczos (ARPACK) found {len(err.eigenvalues)} of {k} eigenpairs within max_iter; "
                           "raise max_iter or tol, or use solver='block'") from None
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    residuals = np.linalg.norm(operator.matmat(vectors) - vectors * values, axis=0)
    return values, vectors, {"max_relative_residual": float(residuals.max() / max(abs(values[0]), 1e-300))}


def average_top_eigenpairs(generator: Generator, codes: ArrayLike, k: int, distance: Distance | str = "mse", *,
                           method: str = "autograd", solver: str = "lanczos", tol: float = 1e-6,
                           max_iter: int | None = None, eps: float = 1e-2, batch: int | None = None,
                           block: int | None = None, trace_probes: int = 0, seed: int = 0) -> Metric:
    """Top ``k`` eigenpairs of the metric averaged over codes, ``mean_i H(z_i)`` (Wang & Ponce averaged
    1000 fc6 codes for Hessian-preconditioned CMA-ES).

    Args:
        generator: differentiable generator.
        codes: ``(N, d)`` codes (``(d,)``: one code, as :func:`top_eigenpairs`).
        k: eigenpairs wanted, ``1 <= k < d``.
        distance, method, eps, batch: as :class:`HessianOperator`.
        solver: ``"lanczos"``: scipy ``eigsh`` (ARPACK, implicitly restarted Lanczos) on
            :meth:`HessianOperator.linear_operator`; ARPACK asks for one vector per step, so a step
            is one batched pass over the ``N`` codes. ``"block"``: block Lanczos
            (:func:`_block_lanczos`), ``block`` directions per batched pass: fewer passes, more HVPs.
            Measured on 2 CPU threads (a shared machine; each pair from one run): Fourier (d =
            1386) top 50, ARPACK 204 HVPs in 0.24 s, block 50: 500 in 10 passes, 0.58 s; DeePSim
            fc6 (random weights, 44 ms per batched HVP, 84 ms alone) top 100, ARPACK 461 HVPs in
            68 s, block 20: 840 in 42 passes, 59 s. ARPACK is the default; the block solver pays
            where a batch costs little more than one vector (a GPU).
        tol: relative residual at which a pair has converged (ARPACK: ``‖r‖ ≤ tol · θ``; block:
            ``‖r‖ ≤ tol · θ_max``). ARPACK raises when ``max_iter`` is reached; the block solver
            warns and returns its Ritz pairs (the residual is in the provenance).
        max_iter: ARPACK's ``maxiter`` (default ``10 d``) or the block solver's passes (default
            ``max(50, 4 d / block)``).
        block: block size of ``"block"`` (default ``k``).
        trace_probes: Hutchinson probes for the trace and the variance captured (0: none).
        seed: seed of the start vectors and the probes.

    Returns:
        A :class:`Metric`: eigenvalues descending ``(k,)``, orthonormal eigenvectors ``(d, k)``.
    """
    operator = HessianOperator(generator, codes, distance, method=method, eps=eps, batch=batch)
    k = integer(k, "k", minimum=1, maximum=operator.dim - 1)
    if solver not in SOLVERS:
        raise ConfigError(f"solver: {solver!r} is not one of {', '.join(SOLVERS)}")
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    if solver == "block":
        size = integer(block if block is not None else k, "block", minimum=1)
        passes = max_iter if max_iter is not None else max(50, math.ceil(4 * operator.dim / size))
        values, vectors, info = _block_lanczos(operator, k, block=size, tol=tol, max_iter=passes, rng=rng)
        if info["converged"] < k:
            warnings.warn(f"block Lanczos: {info['converged']} of {k} eigenpairs converged in {passes} passes "
                          f"(relative residual {info['max_relative_residual']:.2g})", RuntimeWarning, stacklevel=2)
    else:
        values, vectors, info = _arpack(operator, k, tol=tol, max_iter=max_iter, rng=rng)
    provenance = {**_settings(operator, solver=solver, tol=tol, seed=seed), **info,
                  "hvps": operator.hvp_count, "seconds": round(time.perf_counter() - began, 3)}
    if trace_probes:
        trace, error = hutchinson_trace(operator, probes=trace_probes, seed=seed)
        provenance.update(trace=trace, trace_stderr=error, trace_probes=trace_probes,
                          variance_captured=variance_captured(values, trace))
    return Metric(eigvecs=vectors, eigvals=values, provenance=provenance)


def top_eigenpairs(generator: Generator, z0: ArrayLike, k: int, distance: Distance | str = "mse",
                   **options: Any) -> Metric:
    """Top ``k`` eigenpairs of the metric at one code ``z0`` ``(d,)``; ``options`` as
    :func:`average_top_eigenpairs` (``method``, ``solver``, ``tol``, ``max_iter``, ...)."""
    code = _as_rows(z0, generator.latent_dim, "z0")
    if code.shape[0] != 1:
        raise ConfigError(f"z0: one code expected, got {code.shape[0]} (see average_top_eigenpairs)")
    return average_top_eigenpairs(generator, code, k, distance, **options)


def _settings(operator: HessianOperator, **extra: Any) -> dict[str, Any]:
    codes = operator.codes.cpu().numpy()
    return {"distance": distance_name(operator.distance), "method": operator.method,
            **({"eps": operator.eps} if operator.method == "fd" else {}), **extra,
            "latent_dim": operator.dim, "n_codes": int(codes.shape[0]),
            "codes_sha256": hashlib.sha256(codes.tobytes()).hexdigest(),
            "mean_code_norm": float(np.linalg.norm(codes, axis=1).mean()),
            "generator": operator.generator.provenance(), "torch": torch.__version__}


def spectrum_from_full(hessian: np.ndarray, k: int | None = None, *,
                       provenance: dict[str, Any] | None = None) -> Metric:
    """Eigenpairs of a full ``(d, d)`` Hessian by ``numpy.linalg.eigh``, descending, the top ``k``
    (default all); the provenance gets its exact trace and the variance the top ``k`` capture."""
    matrix = np.asarray(hessian, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ConfigError(f"hessian: expected a square matrix, got shape {matrix.shape}")
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    count = matrix.shape[0] if k is None else integer(k, "k", minimum=1, maximum=matrix.shape[0])
    values, vectors = values[::-1][:count], vectors[:, ::-1][:, :count]
    trace = float(np.trace(matrix))
    info = {"solver": "eigh", "trace": trace, "variance_captured": variance_captured(values, trace)}
    return Metric(eigvecs=vectors, eigvals=values, provenance={**(provenance or {}), **info})


def hutchinson_trace(operator: HessianOperator, *, probes: int = 64, seed: int = 0) -> tuple[float, float]:
    """Hutchinson's estimate of ``tr(H)``: the mean of ``vᵀHv`` over Rademacher probes ``v``
    (unbiased, since ``E[v vᵀ] = I``), and its standard error (sample std / √probes).

    One batched pass of ``probes`` HVPs per code; ``seed`` draws the probes.
    """
    probes = integer(probes, "trace_probes", minimum=2)
    signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], dtype=np.float32), size=(probes, operator.dim))
    quadratic = np.einsum("pd,pd->p", signs.astype(np.float64), operator.apply(signs))
    return float(quadratic.mean()), float(quadratic.std(ddof=1) / math.sqrt(probes))


def variance_captured(eigvals: np.ndarray, total_trace: float) -> float:
    """Fraction of the trace (the metric's total "variance") held by these eigenvalues."""
    total = finite_number(total_trace, "total_trace", minimum=0.0)
    return float(np.sum(np.asarray(eigvals, dtype=np.float64)) / total)


# ---------------------------------------------------------------------------------------------
# The metric file
# ---------------------------------------------------------------------------------------------


@dataclass
class Metric:
    """An eigenbasis of the metric: what Hessian-preconditioned CMA-ES reads.

    Attributes:
        eigvecs: ``(d, k)`` orthonormal columns, float64 (or float32 when loaded so).
        eigvals: ``(k,)`` eigenvalues, descending.
        provenance: JSON-serialisable settings (distance, method, solver, generator, codes' hash...).
    """

    eigvecs: np.ndarray
    eigvals: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an ``.npz`` at exactly ``path`` (``np.savez``, no pickles): ``eigvecs``, ``eigvals`` and
        ``provenance``, a JSON string as a numpy unicode array. Written to ``<path>.partial``, then
        renamed into place, so a crash never leaves half a file under the name."""
        target = Path(path)
        text = json.dumps(self.provenance, default=_jsonable)
        partial = target.with_name(target.name + ".partial")
        with open(partial, "wb") as handle:
            np.savez(handle, eigvecs=np.asarray(self.eigvecs), eigvals=np.asarray(self.eigvals),
                     provenance=np.array(text, dtype=np.str_))
        os.replace(partial, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Metric:
        """Read a file written by :meth:`save` (``allow_pickle=False``).

        Raises:
            ConfigError: naming the file when it is missing, not an ``.npz``, holds pickled objects,
                lacks ``eigvecs``/``eigvals`` or their shapes disagree.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                missing = sorted({"eigvecs", "eigvals"} - set(data.files))
                if missing:
                    raise ConfigError(f"{path}: missing arrays {missing} (found {sorted(data.files)})")
                arrays = {name: data[name] for name in ("eigvecs", "eigvals", "provenance") if name in data.files}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such metric file") from None
        except ConfigError:
            raise
        except (ValueError, OSError) as err:  # pickled object arrays, not a zip, damaged members
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"{path}: not a metric .npz of plain arrays ({first})") from None
        vectors, values = arrays["eigvecs"], arrays["eigvals"]
        if vectors.dtype.kind != "f" or values.dtype.kind != "f" or vectors.ndim != 2 or values.ndim != 1 \
                or vectors.shape[1] != values.shape[0]:
            raise ConfigError(f"{path}: eigvecs must be (d, k) and eigvals (k,) floats, got "
                              f"{vectors.shape} {vectors.dtype} and {values.shape} {values.dtype}")
        return cls(eigvecs=vectors, eigvals=values, provenance=_read_provenance(arrays.get("provenance"), path))


def _read_provenance(array: np.ndarray | None, path: str | os.PathLike[str]) -> dict[str, Any]:
    if array is None:
        return {}
    try:
        provenance = json.loads(str(array.item())) if array.dtype.kind == "U" and array.ndim == 0 else None
    except json.JSONDecodeError:
        provenance = None
    if not isinstance(provenance, dict):
        raise ConfigError(f"{path}: 'provenance' must be a JSON object stored as a unicode string")
    return provenance


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays in provenance as plain JSON; anything else as its string."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)
