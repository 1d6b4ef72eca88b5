"""Kent-function fits of manifold tuning maps (Wang & Ponce, Cell Reports 2022).

A tuning map is the response to images whose codes lie on a sphere in latent space (see
:mod:`latentopt.analysis.sphere`). Each image is a unit direction ``z`` in the sphere's own coordinates
(x = e1 = PC1, y = e2, z = e3), and the map is fitted by the unnormalised Kent function

    f(z) = A · exp(κ μ1·z + β[(μ2·z)² − (μ3·z)²]) + baseline,

with the orthonormal frame (μ1, μ2, μ3) an SO(3) rotation given by three angles (:func:`kent_basis`).

Parametrisation and degeneracies (what :func:`fit_kent` reports):

- Reported parameters always lie in the published MATLAB bounds (Tuning-Manifold-Charting):
  θ ∈ [-π, π], φ ∈ [-π/2, π/2], ψ ∈ [0, π), β ≥ 0, A ≥ 0, κ free; the baseline is kept within
  [min − 2 · range, max] of the responses (:data:`BASELINE_RANGES`, not a published bound). Inside the optimiser the
  three angles and β are free (no walls): θ is periodic, going over a pole is a change of (θ, φ, ψ), ψ has
  period π and β < 0 equals β > 0 with ψ + π/2. Walls at θ = ±π or ψ ∈ {0, π} would trap fits whose true
  value lies just across them (a peak at θ = 170° approached from θ = -170°); the model family is the same.
- κ < 0 with μ1 is the same function as κ > 0 with −μ1; the fit is reported with κ ≥ 0 (μ1 flipped,
  θ → θ + π, φ → −φ, ψ → π − ψ). κ is then the sharpness of the peak at μ1.
- β ≤ κ/2 is not imposed (the published bounds do not). When β > κ/2 the fitted function has two maxima
  in the (μ1, μ2) plane at ±arccos(κ / 2β) from μ1; ``bimodal`` is then True and ``peak_direction`` is the
  one towards +μ2 (the other is its mirror image across μ1).
- When β = 0, ψ does not change the function; near a pole (|φ| → π/2), θ and ψ rotate about the same axis.
  Their standard errors are NaN where the jacobian has an exact null direction, and large near one.
- κ is bounded to |κ| ≤ MAX_KAPPA = 500 inside the optimiser (a numerical guard, not a published bound): a
  peak that narrow is a spike on one direction. Such fits (at most one sampled direction above half the
  fitted peak's height) carry a "spike: ..." message even when they converge.

Fitting: the responses are standardised; every sampled direction and 26 spread directions (cube faces, edges
and corners, so also the unsampled back of the sphere) are screened as μ1 with κ ∈ {0.5, 2, 5, 12}, β = 0 and
(A, baseline) in closed form; the best 4 candidates at least 25° apart start a bounded trust-region least-squares
fit (scipy.optimize.least_squares, analytic jacobian) of 40 evaluations each, and the best continues to
convergence (≤ 400). Inside the optimiser the amplitude is the height A·e^κ at μ1, so a narrowing peak does not
drive A towards 0 along a curved valley. About 0.02-0.1 s for an 11 x 11 map (benchmarks/kent_fit.py).

Standard errors come from the jacobian at the optimum, cov = s² (JᵀJ)⁻¹ with s² = SSE / (n − p); the 95 %
intervals are Wald intervals with the t quantile on n − p degrees of freedom (as MATLAB's ``nlparci``) and
are not clipped to the bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

PARAM_NAMES = ("theta", "phi", "psi", "kappa", "beta", "amplitude", "baseline")
# Published MATLAB bounds (Tuning-Manifold-Charting), in PARAM_NAMES order; the ranges reported parameters obey.
LOWER_BOUNDS = (-math.pi, -math.pi / 2, 0.0, -math.inf, 0.0, 0.0, -math.inf)
UPPER_BOUNDS = (math.pi, math.pi / 2, math.pi, math.inf, math.inf, math.inf, math.inf)
_THETA, _PHI, _PSI, _KAPPA, _BETA, _AMP, _BASE = range(7)
_MAX_EXPONENT = 700.0  # exp(700) ~ 1e304: the exponent is clipped here so a runaway κ cannot overflow
_SCREEN_KAPPAS = (0.5, 2.0, 5.0, 12.0)  # κ values tried for each candidate peak before the full fits
_N_STARTS = 4  # full least-squares fits run from the best-screened, mutually distinct peak candidates
_MIN_START_SEPARATION = math.radians(25.0)
_SHORT_NFEV = 40
_MAX_NFEV = 400
_FTOL = 1e-8
_RANK_RTOL = 1e-9  # singular values of the column-scaled jacobian below this fraction of the largest are null
# |κ| is capped inside the optimiser: a peak with κ = 500 is 3° wide at half height, narrower than any grid, and
# the published amplitude A = height·e^(−κ) would near float64's underflow beyond it. Such a narrow fit is a spike
# on a single direction (flagged in KentFit.message).
MAX_KAPPA = 500.0
BASELINE_RANGES = 2.0
"""The fitted baseline lies in [min − 2 · range, max] of the responses (not a published bound). Without it a
near-linear (cosine-like) map is fitted best in the limit κ → 0, A → ∞, baseline → −∞ (A·e^{κ μ·z} ≈ A + Aκ μ·z),
a fit that never converges and whose κ says nothing; with it such maps get the sharpest Kent peak the data allow,
and the fit says so (``message`` starts with "baseline at its bound")."""


def _frame(theta: float, phi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The peak direction μ1 and the two tangent directions (towards +θ, towards +φ) there, each (3,)."""
    ct, st, cp, sp = math.cos(theta), math.sin(theta), math.cos(phi), math.sin(phi)
    mu1 = np.array([cp * ct, cp * st, sp])
    e_theta = np.array([-st, ct, 0.0])
    e_phi = np.array([-sp * ct, -sp * st, cp])
    return mu1, e_theta, e_phi


def kent_basis(theta: float, phi: float, psi: float) -> np.ndarray:
    """The Kent frame (μ1, μ2, μ3) as the rows of a (3, 3) float64 rotation matrix (det +1).

    Args:
        theta: azimuth of μ1 in radians, [-π, π]: μ1 = (cos φ cos θ, cos φ sin θ, sin φ).
        phi: elevation of μ1 in radians, [-π/2, π/2].
        psi: rotation of μ2, μ3 about μ1 in radians, [0, π]. ψ = 0 puts μ2 along increasing θ and μ3 along
            increasing φ (towards +e3 on the equator).
    """
    mu1, e_theta, e_phi = _frame(theta, phi)
    c, s = math.cos(psi), math.sin(psi)
    return np.stack([mu1, c * e_theta + s * e_phi, -s * e_theta + c * e_phi])


def _basis_derivatives(theta: float, phi: float, psi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d(kent_basis)/dθ, /dφ, /dψ, each (3, 3) (rows: derivatives of μ1, μ2, μ3)."""
    mu1, e_theta, e_phi = _frame(theta, phi)
    c, s = math.cos(psi), math.sin(psi)
    cp, sp = math.cos(phi), math.sin(phi)
    d_etheta = np.array([-math.cos(theta), -math.sin(theta), 0.0])  # d e_theta / dθ; d e_phi / dθ = -sin φ e_theta
    d_ephi = -sp * e_theta
    mu2, mu3 = c * e_theta + s * e_phi, -s * e_theta + c * e_phi
    d_theta = np.stack([cp * e_theta, c * d_etheta + s * d_ephi, -s * d_etheta + c * d_ephi])
    d_phi = np.stack([e_phi, -s * mu1, -c * mu1])  # d e_theta / dφ = 0, d e_phi / dφ = -μ1
    d_psi = np.stack([np.zeros(3), mu3, -mu2])
    return d_theta, d_phi, d_psi


def _exponent(directions: np.ndarray, basis: np.ndarray, kappa: float, beta: float,
              offset: float = 0.0) -> tuple[np.ndarray, ...]:
    """Projections u = z·μ (n, 3), u2² − u3² (n,) and the clipped exponent κ (u1 − offset) + β(u2² − u3²) (n,)."""
    u = directions @ basis.T
    shape = u[:, 1] ** 2 - u[:, 2] ** 2
    return u, shape, np.clip(kappa * (u[:, 0] - offset) + beta * shape, -_MAX_EXPONENT, _MAX_EXPONENT)


def kent_function(directions: np.ndarray, theta: float, phi: float, psi: float, kappa: float, beta: float,
                  amplitude: float, baseline: float = 0.0) -> np.ndarray:
    """The unnormalised Kent function A·exp(κ μ1·z + β[(μ2·z)² − (μ3·z)²]) + baseline.

    Args:
        directions: (n, 3) unit vectors z in the sphere's coordinates.
        theta, phi, psi: the frame's angles in radians (see :func:`kent_basis`).
        kappa: concentration (sharpness) κ; beta: ellipticity β; amplitude: A; baseline: additive offset.

    Returns:
        (n,) float64 values.
    """
    z = np.asarray(directions, dtype=float).reshape(-1, 3)
    _, _, exponent = _exponent(z, kent_basis(theta, phi, psi), kappa, beta)
    return amplitude * np.exp(exponent) + baseline


def _model(params: np.ndarray, z: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """The model at ``params`` (6 or 7 entries, PARAM_NAMES order; the 7th is the baseline) for (n, 3) z.

    ``offset=1`` is the optimiser's form: its amplitude is the height A·e^κ at μ1, which keeps the A-κ valley of a
    narrow peak (A → 0 as κ grows) straight; ``offset=0`` is the published form.
    """
    theta, phi, psi, kappa, beta, amplitude = params[:_BASE]
    _, _, exponent = _exponent(z, kent_basis(theta, phi, psi), kappa, beta, offset)
    return amplitude * np.exp(exponent) + (params[_BASE] if params.size > _BASE else 0.0)


def _jacobian(params: np.ndarray, z: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """d model / d params, (n, len(params)), analytic (``offset`` as in :func:`_model`)."""
    theta, phi, psi, kappa, beta, amplitude = params[:_BASE]
    basis = kent_basis(theta, phi, psi)
    u, shape, exponent = _exponent(z, basis, kappa, beta, offset)
    g = np.exp(exponent)
    scaled = amplitude * g
    jac = np.empty((z.shape[0], params.size))
    for column, d_basis in enumerate(_basis_derivatives(theta, phi, psi)):
        du = z @ d_basis.T
        jac[:, column] = scaled * (kappa * du[:, 0] + 2.0 * beta * (u[:, 1] * du[:, 1] - u[:, 2] * du[:, 2]))
    jac[:, _KAPPA] = scaled * (u[:, 0] - offset)
    jac[:, _BETA] = scaled * shape
    jac[:, _AMP] = g
    if params.size > _BASE:
        jac[:, _BASE] = 1.0
    return jac


def _angles(mu1: np.ndarray, mu2: np.ndarray) -> tuple[float, float, float]:
    """(θ, φ, ψ) in the published ranges for a frame with these μ1 and μ2 (μ2 up to sign)."""
    mu1 = mu1 / np.linalg.norm(mu1)
    theta = math.atan2(mu1[1], mu1[0])
    phi = math.asin(float(np.clip(mu1[2], -1.0, 1.0)))
    _, e_theta, e_phi = _frame(theta, phi)
    psi = math.atan2(float(mu2 @ e_phi), float(mu2 @ e_theta)) % math.pi  # μ2 and −μ2 give the same function
    return theta, phi, (0.0 if psi >= math.pi else psi)


def _canonical(params: np.ndarray) -> np.ndarray:
    """The same function with angles in the published ranges, κ ≥ 0 and β ≥ 0."""
    out = params.copy()
    basis = kent_basis(*params[:3])
    mu1, mu2 = basis[0], basis[1]
    if out[_BETA] < 0:  # β < 0 with (μ2, μ3) equals −β with (μ3, −μ2)
        mu2, out[_BETA] = basis[2], -out[_BETA]
    if out[_KAPPA] < 0:  # κ < 0 with μ1 equals −κ with −μ1
        mu1, out[_KAPPA] = -mu1, -out[_KAPPA]
    out[:3] = _angles(mu1, mu2)
    return out


@dataclass(frozen=True, eq=False)
class KentFit:
    """One Kent fit of a tuning map. Angles in radians; ``amplitude`` and ``baseline`` in response units.

    Attributes:
        theta, phi, psi, kappa, beta, amplitude, baseline: fitted parameters (module docstring: ranges and
            canonical form); NaN where not meaningful (angles of a flat map, everything without data).
            ``baseline`` is 0.0 when fitted without one.
        r2: coefficient of determination on the finite responses (0 for a flat map, NaN without data).
        adj_r2: 1 − (SSE / (n − p)) / (SST / (n − 1)) (MATLAB ``fit``'s adjrsquare); 0 for a flat map.
        stderr: parameter name -> standard error (NaN when the parameter is not identifiable).
        ci95: parameter name -> (low, high) 95 % Wald interval with the t quantile on n − p dof.
        fitted: (N,) the fitted function at every input direction (also where the response was NaN).
        peak_direction: (3,) unit vector of the fitted function's maximum (μ1 unless ``bimodal``), NaN when
            the fitted function is flat.
        bimodal: True when β > κ/2 (two maxima; see the module docstring).
        n: number of finite responses used; n_params: parameters fitted (7 with a baseline, else 6).
        ok: the fit ran and converged. ok=True says nothing of quality: filter by ``r2`` (the published
            analysis keeps maps with R² > 0.5; pure noise on the 11 x 11 grid gives R² ≈ 0.05-0.18).
        message: why not ok ("no finite responses", "too few finite responses ...", "flat map", "fit did not
            converge ..."), or a warning when ok ("spike: ..." when at most one sampled direction lies above half
            the fitted peak's height: the fit explains one outlying response, not a tuning peak); "" otherwise.
        params: the fitted parameters in PARAM_NAMES order (6 without a baseline), so
            ``kent_function(directions, *fit.params)`` evaluates the fit.
    """

    theta: float
    phi: float
    psi: float
    kappa: float
    beta: float
    amplitude: float
    baseline: float
    r2: float
    adj_r2: float
    stderr: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    fitted: np.ndarray
    peak_direction: np.ndarray
    bimodal: bool
    n: int
    n_params: int
    ok: bool
    message: str = ""
    params: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats (None for NaN or infinity), lists for arrays, ``[lo, hi]`` for intervals."""
        def number(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        out: dict[str, Any] = {name: number(getattr(self, name)) for name in PARAM_NAMES}
        out.update(r2=number(self.r2), adj_r2=number(self.adj_r2), n=self.n, n_params=self.n_params,
                   ok=self.ok, message=self.message, bimodal=self.bimodal)
        out["stderr"] = {k: number(v) for k, v in self.stderr.items()}
        out["ci95"] = {k: [number(lo), number(hi)] for k, (lo, hi) in self.ci95.items()}
        out["fitted"] = [number(v) for v in self.fitted]
        out["peak_direction"] = [number(v) for v in self.peak_direction]
        return out


def _result(params: np.ndarray, n_params: int, fitted: np.ndarray, *, r2: float, adj_r2: float, n: int,
            ok: bool, message: str, stderr: np.ndarray | None = None) -> KentFit:
    """A KentFit from a full (7,) parameter vector (NaN where not meaningful)."""
    names = PARAM_NAMES[:n_params]
    se = np.full(n_params, np.nan) if stderr is None else stderr
    half = stats.t.ppf(0.975, n - n_params) * se if n > n_params else np.full(n_params, np.nan)
    peak, bimodal = _peak(params)
    values = {name: float(v) for name, v in zip(PARAM_NAMES, params, strict=True)}
    fitted_params = params[:n_params]
    return KentFit(**values, r2=float(r2), adj_r2=float(adj_r2),
                   stderr={k: float(v) for k, v in zip(names, se, strict=True)},
                   ci95={k: (float(p - h), float(p + h)) for k, p, h in zip(names, fitted_params, half, strict=True)},
                   fitted=fitted, peak_direction=peak, bimodal=bimodal, n=n, n_params=n_params, ok=ok,
                   message=message, params=tuple(float(v) for v in fitted_params))


def _peak(params: np.ndarray) -> tuple[np.ndarray, bool]:
    """The maximum of the (canonical, κ ≥ 0, β ≥ 0) fitted function on the sphere, and whether it is bimodal."""
    theta, phi, psi, kappa, beta, amplitude = params[:_BASE]
    if not np.all(np.isfinite(params[:_BASE])) or amplitude <= 0 or (kappa == 0 and beta == 0):
        return np.full(3, np.nan), False
    basis = kent_basis(theta, phi, psi)
    if 2.0 * beta <= kappa:
        return basis[0], False
    # On the (μ1, μ2) great circle the exponent is κ cos t + β sin² t, largest at cos t = κ / 2β.
    angle = math.acos(kappa / (2.0 * beta))
    return math.cos(angle) * basis[0] + math.sin(angle) * basis[1], True


_SPREAD = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)],
                   dtype=float)
_SPREAD /= np.linalg.norm(_SPREAD, axis=1, keepdims=True)  # 26 directions: cube faces, edges and corners


def _linear_fit(g: np.ndarray, y: np.ndarray, with_baseline: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best A ≥ 0 (and baseline) for each column of g (n, m) by linear least squares: (A, b, SSE), each (m,)."""
    if with_baseline:
        g_mean = g.mean(axis=0)
        centred = g - g_mean
        amplitude = np.maximum((centred.T @ (y - y.mean())) / np.maximum((centred**2).sum(axis=0), 1e-300), 0.0)
        baseline = y.mean() - amplitude * g_mean
    else:
        amplitude = np.maximum((g.T @ y) / np.maximum((g**2).sum(axis=0), 1e-300), 0.0)
        baseline = np.zeros_like(amplitude)
    sse = ((g * amplitude + baseline - y[:, None]) ** 2).sum(axis=0)
    return amplitude, baseline, sse


def _starts(z: np.ndarray, y: np.ndarray, with_baseline: bool) -> list[np.ndarray]:
    """Start vectors: the best isotropic (β = 0) fits with μ1 at a sampled or a spread direction, κ on a grid.

    The candidates are screened by closed-form (A, baseline); the best ``_N_STARTS`` whose μ1 are at least
    25° apart become starts, so a peak anywhere on the sphere (also outside the sampled region) has a start.
    """
    candidates = np.vstack([z, _SPREAD])
    cosines = z @ candidates.T
    rows = []
    for kappa in _SCREEN_KAPPAS:
        amplitude, baseline, sse = _linear_fit(np.exp(kappa * (cosines - 1.0)), y, with_baseline)
        rows.append(np.stack([sse, np.arange(len(candidates)), np.full(len(sse), kappa), amplitude, baseline], 1))
    table = np.concatenate(rows)
    chosen: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    for _, index, kappa, amplitude, baseline in table[np.argsort(table[:, 0], kind="stable")]:
        mu1 = candidates[int(index)]
        if any(float(mu1 @ c) > math.cos(_MIN_START_SEPARATION) for c in chosen):
            continue
        chosen.append(mu1)
        theta, phi = math.atan2(mu1[1], mu1[0]), math.asin(float(np.clip(mu1[2], -1.0, 1.0)))
        start = [theta, phi, math.pi / 4, kappa, 0.05 * kappa, max(amplitude, 1e-6)]
        starts.append(np.array(start + ([baseline] if with_baseline else [])))
        if len(starts) == _N_STARTS:
            break
    return starts


def _standard_errors(params: np.ndarray, z: np.ndarray, sse: float) -> np.ndarray:
    """sqrt(diag(s² (JᵀJ)⁻¹)) with s² = SSE / (n − p); NaN for parameters on a null direction of J.

    The columns of J are scaled to unit norm first, so which directions count as null does not depend on the
    response units.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        jac = _jacobian(params, z)
    n, p = jac.shape
    if not np.all(np.isfinite(jac)):
        return np.full(p, np.nan)
    peak = np.abs(jac).max(axis=0)  # scale before the norm: a narrow peak's amplitude column can reach 1e217
    norms = np.linalg.norm(jac / np.where(peak > 0, peak, 1.0), axis=0) * peak
    if not np.any(norms > 0):
        return np.full(p, np.nan)
    scaled = jac / np.where(norms > 0, norms, 1.0)
    _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
    keep = singular > _RANK_RTOL * singular[0]
    variance = (vt[keep].T ** 2 / singular[keep] ** 2).sum(axis=1) * sse / (n - p)
    unidentified = (np.abs(vt[~keep]) > 1e-6).any(axis=0) | (norms == 0)
    return np.where(unidentified, np.nan, np.sqrt(variance) / np.where(norms > 0, norms, 1.0))


def _baseline_bounds(y: np.ndarray) -> tuple[float, float]:
    """``[min(y) − BASELINE_RANGES · ptp(y), max(y)]``: where the fitted baseline may lie."""
    low, high = float(np.min(y)), float(np.max(y))
    return low - BASELINE_RANGES * (high - low), high


def _best_fit(z: np.ndarray, y: np.ndarray, with_baseline: bool) -> optimize.OptimizeResult:
    """The lowest-cost least-squares fit over the screened starts, in the optimiser's form (``_model``)."""
    lower, upper = np.full(7 if with_baseline else 6, -np.inf), np.full(7 if with_baseline else 6, np.inf)
    lower[_AMP] = 0.0  # A ≥ 0 as published; angles and β are free and canonicalised afterwards
    lower[_KAPPA], upper[_KAPPA] = -MAX_KAPPA, MAX_KAPPA
    if with_baseline:  # see BASELINE_RANGES: stops the slide to κ -> 0, A -> ∞, baseline -> -∞ on near-linear maps
        lower[_BASE], upper[_BASE] = _baseline_bounds(y)

    def run(start: np.ndarray, max_nfev: int) -> optimize.OptimizeResult:
        start = start.copy()
        if with_baseline:  # a screened start's closed-form baseline may lie outside its bounds
            margin = 1e-9 * (upper[_BASE] - lower[_BASE])
            start[_BASE] = np.clip(start[_BASE], lower[_BASE] + margin, upper[_BASE] - margin)
        return optimize.least_squares(lambda p: _model(p, z, 1.0) - y, start, jac=lambda p: _jacobian(p, z, 1.0),
                                      bounds=(lower, upper), method="trf", x_scale="jac", ftol=_FTOL,
                                      max_nfev=max_nfev)

    # Every start gets a short run; only the best goes on (a tuned map's fits converge within the short run).
    results = [result for result in (run(start, _SHORT_NFEV) for start in _starts(z, y, with_baseline))
               if np.isfinite(result.cost)]
    best = min(results, key=lambda result: result.cost)  # a start's own cost is finite: its exponent is clipped
    return best if best.status != 0 else run(best.x, _MAX_NFEV)


def _validated(directions: Any, responses: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) unit directions, (N,) responses and the (N,) mask of usable rows."""
    z = np.asarray(directions, dtype=float)
    y = np.asarray(responses, dtype=float)
    if z.ndim != 2 or z.shape[1] != 3:
        raise ValueError(f"directions must have shape (n, 3), got {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"responses must have shape ({z.shape[0]},) to match directions, got {y.shape}")
    norms = np.linalg.norm(z, axis=1)
    usable = np.isfinite(y) & np.isfinite(norms) & (norms > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = z / norms[:, None]
    return z, y, usable


def fit_kent(directions: Any, responses: Any, *, baseline: bool = True) -> KentFit:
    """Fit the Kent function to a tuning map by least squares from several starts; never raises on data.

    Args:
        directions: (N, 3) unit vectors in the sphere's coordinates (rows are normalised here), e.g.
            ``grid_directions(thetas, phis).reshape(-1, 3)``.
        responses: (N,) responses (any units); NaN entries (images not shown) are dropped. For a grid,
            apply :func:`~latentopt.analysis.sphere.average_poles` first, as the published analysis does.
        baseline: fit an additive baseline (7 parameters) or not (6).

    Returns:
        A :class:`KentFit`. ``ok`` is False, with a message, for no finite responses (r2 NaN), fewer finite
        responses than parameters + 1 (r2 NaN), a flat map (r2 = 0, κ = β = 0, angles NaN) or a fit that did
        not converge (parameters kept). A pure-noise map gives a low R² (median 0.09, 0.05-0.18 over 30 maps on
        the 11 x 11 grid; ``ok`` True for 27 of them, "fit did not converge" for 3): ``ok`` does not mean a
        peak was found; filter by R² (published: > 0.5) and the ANOVA across images.

    Raises:
        ValueError: only for arrays of the wrong shape (a caller's bug, not the data's).
    """
    z, y, usable = _validated(directions, responses)
    n_params, n = (7 if baseline else 6), int(usable.sum())
    zs, ys = z[usable], y[usable]
    unfit = _unfittable(ys, np.isfinite(z).all(axis=1), n_params, baseline)
    if unfit is not None:
        return unfit
    scale = float(np.std(ys) if baseline else np.sqrt(np.mean(ys**2)))
    offset = float(np.mean(ys)) if baseline else 0.0
    best = _best_fit(zs, (ys - offset) / scale, baseline)
    params = _published(best.x, scale, offset)
    residual = _model(params[:n_params], zs) - ys
    sse, sst = float(residual @ residual), float(((ys - ys.mean()) ** 2).sum())
    converged = bool(best.status > 0) and bool(np.all(np.isfinite(params)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        fitted = np.where(np.isfinite(z).all(axis=1), _model(params[:n_params], np.nan_to_num(z)), np.nan)
    message = "" if converged else f"fit did not converge: {best.message}"
    if baseline and converged and abs(best.x[_BASE] - _baseline_bounds((ys - offset) / scale)[0]) < 1e-6:
        message = ("baseline at its bound: the map is near-linear in the direction (cosine-like); κ reflects the "
                   "bound, not a measured sharpness")
    if converged and _above_half_height(params, zs) <= 1:
        message = "spike: at most one sampled direction is above half the peak's height (not a tuning peak)"
    return _result(params, n_params, fitted, r2=1.0 - sse / sst,
                   adj_r2=1.0 - (sse / (n - n_params)) / (sst / (n - 1)), n=n, ok=converged, message=message,
                   stderr=_standard_errors(params[:n_params], zs, sse))


def _above_half_height(params: np.ndarray, z: np.ndarray) -> int:
    """How many distinct directions of z (n, 3) have a fitted response above baseline + half the peak's height.

    Distinct: a grid's pole is one direction however many θ columns repeat it.
    """
    peak, _ = _peak(params)
    if not np.all(np.isfinite(peak)):
        return 0
    with np.errstate(over="ignore", invalid="ignore"):
        tuning = _model(params[:_BASE], z) - 0.5 * _model(params[:_BASE], peak[None])[0]
    return len(np.unique(np.round(z[tuning > 0], 9), axis=0))


def _unfittable(ys: np.ndarray, has_direction: np.ndarray, n_params: int, baseline: bool) -> KentFit | None:
    """The KentFit for no data, too few data or a flat map (finite responses ``ys``); None when fittable."""
    n, nan_params = ys.size, np.full(7, np.nan)
    if n == 0 or n <= n_params:
        message = "no finite responses" if n == 0 else (
            f"too few finite responses: {n} (need at least {n_params + 1} for {n_params} parameters)")
        return _result(nan_params, n_params, np.full(has_direction.shape, np.nan), r2=np.nan, adj_r2=np.nan, n=n,
                       ok=False, message=message)
    if np.ptp(ys) > 1e-12 * max(float(np.abs(ys).max()), np.finfo(float).tiny):
        return None
    level = float(ys.mean())
    nan_params[_KAPPA:] = (0.0, 0.0, 0.0, level) if baseline else (0.0, 0.0, level, 0.0)
    return _result(nan_params, n_params, np.where(has_direction, level, np.nan), r2=0.0, adj_r2=0.0, n=n, ok=False,
                   message="flat map")


def _published(internal: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """(7,) published-form canonical parameters in response units from the optimiser's (6 or 7,) solution."""
    n_params = internal.size
    params = np.zeros(7)
    params[:n_params] = internal
    params[_AMP] *= scale * math.exp(-float(np.clip(internal[_KAPPA], -_MAX_EXPONENT, _MAX_EXPONENT)))
    params[:n_params] = _canonical(params[:n_params])
    params[_BASE] = params[_BASE] * scale + offset if n_params > _BASE else 0.0
    return params
