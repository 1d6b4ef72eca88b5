"""Tuning curves along one axis of code space: ANOVA, Gaussian and linear fits, bell-shaped vs monotonic.

Wang & Ponce (ICLR 2021, Fig. 6) showed neurons images along the top eigenvectors of the generator's metric,
kept the curves whose one-way ANOVA across distances had p < 0.01 and classified them bell-shaped or
monotonic by comparing a Gaussian fit with a linear one. Their exact comparison is not given there; ours is:

1. **flat**: the one-way ANOVA across distances (trials as samples, :func:`latentopt.analysis.anova_oneway`)
   has p ≥ ``alpha`` (0.01). Without an ANOVA (one repeat, or no trial variance as for a noise-free simulated
   neuron) a curve is flat when the range of its means is at most 1e-6 of their largest magnitude (float32
   rounding), and tuned otherwise.
2. **bell-shaped**: tuned, ``ΔAIC = AIC_linear − AIC_gaussian > aic_margin`` (2), the Gaussian's centre lies
   strictly inside the sampled distances (``min < centre < max``), and the fitted Gaussian falls on both sides
   of its peak: from the peak to each end of the sampled range it drops by at least ``min_drop`` (20 %) of its
   amplitude (``flank_drop``, the smaller of the two drops; the ends lie at least 0.67 widths from the centre).
   The last condition keeps a saturating monotonic curve (fitted best by a Gaussian's rising flank with a
   plateau near one end) out of the bell-shaped class.
3. **monotonic**: every other tuned curve (the line is not beaten, or only one flank of the Gaussian was
   sampled).

``AIC = n ln(RSS / n) + 2k`` is the least-squares AIC over the ``n`` distance means (Gaussian errors of equal
variance, whose parameter both models share, so it cancels in ΔAIC), with ``k = 4`` (Gaussian: amplitude,
centre, width, offset) and ``k = 2`` (linear: slope, intercept). The RSS is floored at 1e-12 of the total sum
of squares so that an exact (noise-free) fit compares finitely. Fewer than 5 shown distances: no fits and no
class (None).

The Gaussian is ``offset + amplitude · exp(−(x − centre)² / (2 width²))`` with ``amplitude ≥ 0`` (a peak; a
trough is not bell-shaped), ``centre`` within one sampled range beyond either end and ``width`` between half the
smallest distance step and twice the sampled range; it is fitted by bounded least squares
(scipy.optimize.least_squares, analytic Jacobian) from a start at every sampled distance with two widths, and
the best fit is kept. Pure functions: arrays in, numbers out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize

from latentopt.analysis.statistics import anova_oneway

GAUSSIAN_PARAMETERS = 4
LINEAR_PARAMETERS = 2
MIN_DISTANCES = GAUSSIAN_PARAMETERS + 1
FLAT_RANGE = 1e-6
"""Without an ANOVA, a curve whose means span at most this fraction of their largest magnitude is flat."""
MIN_DROP = 0.2
"""A bell-shaped curve's fitted Gaussian falls by at least this fraction of its amplitude towards both ends."""
CLASSES = ("bell-shaped", "monotonic", "flat")


def gaussian_curve(x: Any, amplitude: float, centre: float, width: float, offset: float) -> np.ndarray:
    """``offset + amplitude · exp(−(x − centre)² / (2 width²))`` at the distances ``x``."""
    x = np.asarray(x, dtype=np.float64)
    return offset + amplitude * np.exp(-0.5 * ((x - centre) / width) ** 2)


def least_squares_aic(rss: float, n: int, k: int) -> float:
    """``n ln(RSS / n) + 2k``: the AIC of a least-squares fit of ``k`` parameters to ``n`` points."""
    return float(n * np.log(rss / n) + 2 * k)


@dataclass(frozen=True)
class GaussianFit:
    """A Gaussian fit of a tuning curve (distances in the curve's units, responses in its units)."""

    amplitude: float
    centre: float
    width: float
    offset: float
    rss: float
    r2: float
    aic: float
    ok: bool
    message: str

    def predict(self, x: Any) -> np.ndarray:
        return gaussian_curve(x, self.amplitude, self.centre, self.width, self.offset)

    def to_dict(self) -> dict[str, Any]:
        return {k: _number(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class LinearFit:
    """A least-squares line ``intercept + slope · x`` through a tuning curve."""

    slope: float
    intercept: float
    rss: float
    r2: float
    aic: float

    def predict(self, x: Any) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(x, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {k: _number(v) for k, v in asdict(self).items()}


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _points(distances: Any, means: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(distances, dtype=np.float64).reshape(-1), np.asarray(means, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"distances {x.shape} and means {y.shape} must have one value per distance")
    keep = np.isfinite(x) & np.isfinite(y)
    if len(np.unique(x[keep])) < MIN_DISTANCES:
        raise ValueError(f"a tuning curve needs at least {MIN_DISTANCES} different distances with a finite mean, "
                         f"got {len(np.unique(x[keep]))}")
    return x[keep], y[keep]


def _rss_floor(y: np.ndarray) -> float:
    tss = float(((y - y.mean()) ** 2).sum())
    return 1e-12 * tss + np.finfo(np.float64).tiny


def fit_linear(distances: Any, means: Any) -> LinearFit:
    """The least-squares line through ``(distances, means)`` (NaN means are left out).

    Raises:
        ValueError: fewer than 5 different distances with a finite mean, or shapes that differ.
    """
    x, y = _points(distances, means)
    slope, intercept = np.polyfit(x, y, 1)
    rss = float(((y - (intercept + slope * x)) ** 2).sum())
    tss = float(((y - y.mean()) ** 2).sum())
    aic = least_squares_aic(max(rss, _rss_floor(y)), len(x), LINEAR_PARAMETERS)
    return LinearFit(float(slope), float(intercept), rss, 1.0 - rss / tss if tss > 0 else float("nan"), aic)


def _gaussian_jacobian(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    amplitude, centre, width, _ = p
    g = np.exp(-0.5 * ((u - centre) / width) ** 2)
    return np.stack([g, amplitude * g * (u - centre) / width**2, amplitude * g * (u - centre) ** 2 / width**3,
                     np.ones_like(u)], axis=1)


def fit_gaussian(distances: Any, means: Any) -> GaussianFit:
    """The best bounded least-squares Gaussian through ``(distances, means)`` (see the module docstring).

    The fit runs on distances mapped to [−1, 1] and standardised responses, then maps back.

    Raises:
        ValueError: fewer than 5 different distances with a finite mean, or shapes that differ.
    """
    x, y = _points(distances, means)
    mid, half = (x.max() + x.min()) / 2, (x.max() - x.min()) / 2
    scale = float(y.std()) or 1.0
    u, v = (x - mid) / half, (y - y.mean()) / scale
    step = float(np.diff(np.unique(u)).min())
    lower = np.array([0.0, -3.0, step / 2, -np.inf])  # amplitude, centre, width, offset (normalised units)
    upper = np.array([np.inf, 3.0, 4.0, np.inf])
    best: Any = None
    for centre in np.unique(u):
        for width in (0.3, 1.0):
            start = np.array([max(float(v.max() - v.min()), 1e-3), centre, max(width, step), float(v.min())])
            fit = optimize.least_squares(
                lambda p: gaussian_curve(u, *p) - v, start, jac=lambda p: _gaussian_jacobian(p, u),
                bounds=(lower, upper), method="trf", x_scale="jac")
            if best is None or fit.cost < best.cost:
                best = fit
    amplitude, centre, width, offset = best.x
    params = (float(amplitude * scale), float(mid + centre * half), float(width * half),
              float(y.mean() + offset * scale))
    rss = float(((y - gaussian_curve(x, *params)) ** 2).sum())
    tss = float(((y - y.mean()) ** 2).sum())
    aic = least_squares_aic(max(rss, _rss_floor(y)), len(x), GAUSSIAN_PARAMETERS)
    at_bound = [name for name, value, lo, hi in zip(("centre", "width"), best.x[1:3], lower[1:3], upper[1:3],
                                                     strict=True) if np.isclose(value, lo) or np.isclose(value, hi)]
    message = str(best.message) + (f"; {' and '.join(at_bound)} at its bound" if at_bound else "")
    return GaussianFit(*params, rss=rss, r2=1.0 - rss / tss if tss > 0 else float("nan"), aic=aic,
                       ok=bool(best.success), message=message)


def is_tuned(anova_p: float | None, means: Any, *, alpha: float = 0.01) -> bool:
    """Whether a curve is tuned: ANOVA ``p < alpha``; without a p, means spanning more than float32 rounding."""
    if anova_p is not None and np.isfinite(anova_p):
        return bool(anova_p < alpha)
    y = np.asarray(means, dtype=np.float64)
    y = y[np.isfinite(y)]
    return bool(y.size >= 2 and np.ptp(y) > FLAT_RANGE * np.abs(y).max())


def flank_drop(distances: Any, gaussian: GaussianFit) -> float:
    """The smaller of the two drops of the fitted Gaussian, from its peak to either end of the sampled range,
    as a fraction of its amplitude (0 when the centre is not strictly inside the range)."""
    x = np.asarray(distances, dtype=np.float64)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    if not lo < gaussian.centre < hi:
        return 0.0
    nearer = min(gaussian.centre - lo, hi - gaussian.centre)
    return float(1.0 - np.exp(-0.5 * (nearer / gaussian.width) ** 2))


def classify_curve(distances: Any, *, tuned: bool, gaussian: GaussianFit, linear: LinearFit,
                   aic_margin: float = 2.0, min_drop: float = MIN_DROP) -> dict[str, Any]:
    """The class of one curve and the criterion's values (see the module docstring).

    Returns:
        ``classification`` (``"flat"``, ``"bell-shaped"`` or ``"monotonic"``), ``delta_aic``
        (``AIC_linear − AIC_gaussian``), ``centre_inside`` (strictly between the smallest and largest distance)
        and ``flank_drop``.
    """
    x = np.asarray(distances, dtype=np.float64)
    delta = float(linear.aic - gaussian.aic)
    inside = bool(np.nanmin(x) < gaussian.centre < np.nanmax(x))
    drop = flank_drop(x, gaussian)
    if not tuned:
        label = "flat"
    elif delta > aic_margin and inside and drop >= min_drop:
        label = "bell-shaped"
    else:
        label = "monotonic"
    return {"classification": label, "delta_aic": _number(delta), "centre_inside": inside, "flank_drop": drop}


def analyze_axis(distances: Any, trials: Any, *, name: str = "", alpha: float = 0.01, aic_margin: float = 2.0,
                 min_drop: float = MIN_DROP) -> dict[str, Any]:
    """Test, fit and classify one tuning curve.

    Args:
        distances: ``(n,)`` the distances along the axis (code units).
        trials: ``(n, repeats)`` single-trial responses at each distance, NaN where a trial is missing.
        name: the axis' name.
        alpha: ANOVA threshold for a tuned curve (Wang & Ponce: 0.01).
        aic_margin: how much lower the Gaussian's AIC must be than the line's for a bell shape.
        min_drop: how far (fraction of its amplitude) the fitted Gaussian must fall towards both ends.

    Returns:
        A JSON-ready dict: ``name``, ``distances``, ``mean``, ``sem`` (None with fewer than 2 trials) and
        ``trials`` (per distance, its finite trials), ``anova_f``, ``anova_p``, ``anova_df`` (between, within;
        F and p None when the ANOVA does not apply), ``tuned``, ``gaussian`` (``amplitude``, ``centre``,
        ``width``, ``offset``, ``rss``, ``r2``, ``aic``, ``ok``, ``message``) and ``linear`` (``slope``,
        ``intercept``, ``rss``, ``r2``, ``aic``), ``delta_aic``, ``centre_inside``, ``flank_drop`` and
        ``classification`` (``flat``, ``bell-shaped``, ``monotonic``; fits and class None with fewer than 5
        shown distances).

    Raises:
        ValueError: ``trials`` is not ``(n, repeats)`` for the ``n`` distances.
    """
    x = np.asarray(distances, dtype=np.float64).reshape(-1)
    values = np.asarray(trials, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != x.shape[0]:
        raise ValueError(f"trials must be (distances={x.shape[0]}, repeats), got shape {values.shape}")
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.where(finite, values, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan)
        squares = np.where(finite, (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
        sem = np.where(counts >= 2, np.sqrt(squares / np.maximum(counts - 1, 1) / np.maximum(counts, 1)), np.nan)
    anova = anova_oneway(list(values))
    anova_p = _number(anova.p)
    tuned = is_tuned(anova_p, mean, alpha=alpha)
    result: dict[str, Any] = {
        "name": name, "distances": x.tolist(), "mean": [_number(m) for m in mean],
        "sem": [_number(s) for s in sem], "trials": [row[np.isfinite(row)].tolist() for row in values],
        "anova_f": _number(anova.f), "anova_p": anova_p, "anova_df": [anova.df_between, anova.df_within],
        "tuned": tuned, "gaussian": None, "linear": None, "delta_aic": None, "centre_inside": None,
        "flank_drop": None, "classification": None,
    }
    shown = np.isfinite(mean)
    if len(np.unique(x[shown])) < MIN_DISTANCES:
        return result
    gaussian, linear = fit_gaussian(x, mean), fit_linear(x, mean)
    result.update(gaussian=gaussian.to_dict(), linear=linear.to_dict(),
                  **classify_curve(x[shown], tuned=tuned, gaussian=gaussian, linear=linear, aic_margin=aic_margin,
                                   min_drop=min_drop))
    return result
