"""Line charts as inline SVG, written by hand: crisp at any zoom, a few kB, no plotting library.

:func:`score_chart_svg` draws a run's mean and best score per generation with the natural references' best and
mean (the run report page; a live view may call it on every block). :func:`line_chart_svg` draws any series.
NaN values leave gaps (a generation without a finite score; references shown only every few generations are
joined across the generations without them). Every series is one ``<polyline>`` per unbroken stretch with
``data-series`` (its label) and ``data-points`` (its finite points); ``<title>`` elements give values on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latentopt.html_report.fragments import Html, esc

__all__ = ["Series", "line_chart_svg", "score_chart_svg"]

MAX_MARKERS = 100
"""The natural references' points are dotted up to this many generations showing them (a line alone beyond)."""
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


@dataclass(frozen=True)
class Series:
    """One line of a chart.

    Attributes:
        label: the legend's text (escaped).
        x: ``(n,)`` positions (generations, blocks, ms).
        y: ``(n,)`` values; NaN where there is none.
        colour: a CSS colour.
        dash: an SVG ``stroke-dasharray`` (``""``: solid).
        join_gaps: join the finite points across NaN (for values recorded only every few x), instead of breaking.
        markers: draw a dot at every finite point.
    """

    label: str
    x: Sequence[float] | np.ndarray
    y: Sequence[float] | np.ndarray
    colour: str = PALETTE[0]
    dash: str = ""
    join_gaps: bool = False
    markers: bool = False


def _ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]`` (``integer``: whole numbers only)."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count, 1)
    if integer:
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}"


def _stretches(x: np.ndarray, y: np.ndarray, join: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    finite = np.isfinite(x) & np.isfinite(y)
    if join:
        return [(x[finite], y[finite])] if finite.any() else []
    out, start = [], None
    for k, ok in enumerate(np.append(finite, False)):
        if ok and start is None:
            start = k
        elif not ok and start is not None:
            out.append((x[start:k], y[start:k]))
            start = None
    return out


def line_chart_svg(series: Sequence[Series], *, width: int = 720, height: int = 280, title: str = "",
                   x_label: str = "", y_label: str = "") -> Html:
    """An SVG line chart of ``series`` with axes, ticks and a legend (``width`` x ``height`` px)."""
    xs = [np.asarray(s.x, dtype=np.float64) for s in series]
    ys = [np.asarray(s.y, dtype=np.float64) for s in series]
    kept = [np.isfinite(x) & np.isfinite(y) for x, y in zip(xs, ys, strict=True)]
    finite_x = np.concatenate([np.zeros(0)] + [x[k] for x, k in zip(xs, kept, strict=True)])
    finite_y = np.concatenate([np.zeros(0)] + [y[k] for y, k in zip(ys, kept, strict=True)])
    left, right, top, bottom = 64, 16, 28 if title else 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    legend_h = 18 * ((len(series) + 2) // 3)
    total_h = height + legend_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{total_h}" '
           f'viewBox="0 0 {width} {total_h}" role="img" aria-label="{esc(title or y_label or "chart")}">',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#999"/>']
    if title:
        out.append(f'<text x="{left}" y="18" class="title">{esc(title)}</text>')
    if not finite_y.size:
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">no finite values'
                   "</text></svg>")
        return Html("".join(out))
    x0, x1 = float(finite_x.min()), float(finite_x.max())
    y0, y1 = float(finite_y.min()), float(finite_y.max())
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    pad = (y1 - y0) * 0.05 or max(abs(y0) * 0.05, 0.5)
    y0, y1 = y0 - pad, y1 + pad

    def px(x: np.ndarray | float) -> np.ndarray:
        return np.asarray(left + (np.asarray(x) - x0) / (x1 - x0) * plot_w)

    def py(y: np.ndarray | float) -> np.ndarray:
        return np.asarray(top + (1 - (np.asarray(y) - y0) / (y1 - y0)) * plot_h)

    for tick in _ticks(y0, y1):
        yy = float(py(tick))
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    whole = bool(np.all(finite_x == np.round(finite_x)))  # generations, blocks: no tick at 0.25
    for tick in _ticks(x0, x1, 8, integer=whole):
        xx = float(px(tick))
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" stroke="#666"/>'
                   f'<text x="{xx:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{_label(tick)}</text>')
    if x_label:
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" text-anchor="middle">{esc(x_label)}</text>')
    if y_label:
        out.append(f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
                   f"{esc(y_label)}</text>")
    for s, x, y in zip(series, xs, ys, strict=True):
        points = int((np.isfinite(x) & np.isfinite(y)).sum())
        dash = f' stroke-dasharray="{esc(s.dash)}"' if s.dash else ""
        out.append(f'<g class="series" data-series="{esc(s.label)}" data-points="{points}">')
        for sx, sy in _stretches(x, y, s.join_gaps):
            coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(sx), py(sy), strict=True))
            out.append(f'<polyline points="{coords}" fill="none" stroke="{esc(s.colour)}" stroke-width="1.6"{dash}>'
                       f"<title>{esc(s.label)}</title></polyline>")
            if s.markers:
                out.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2" fill="{esc(s.colour)}">'
                           f"<title>{esc(s.label)} at {_label(vx)}: {_label(vy)}</title></circle>"
                           for a, b, vx, vy in zip(px(sx), py(sy), sx, sy, strict=True))
        out.append("</g>")
    for k, s in enumerate(series):
        lx, ly = left + (k % 3) * (plot_w / 3), height + 6 + 18 * (k // 3)
        dash = f' stroke-dasharray="{esc(s.dash)}"' if s.dash else ""
        out.append(f'<line x1="{lx:.1f}" x2="{lx + 22:.1f}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{esc(s.colour)}" '
                   f'stroke-width="2"{dash}/><text x="{lx + 28:.1f}" y="{ly + 4:.1f}" class="legend">'
                   f"{esc(s.label)}</text>")
    out.append("</svg>")
    return Html("".join(out))


def score_chart_svg(scores: np.ndarray | Sequence[Sequence[float]],
                    reference_scores: np.ndarray | Sequence[Sequence[float]] | None = None, *,
                    generations: Sequence[int] | np.ndarray | None = None, title: str = "", width: int = 720,
                    height: int = 280, colour: str = PALETTE[0]) -> Html:
    """The mean and best score per generation, with the natural references' best and mean, as SVG.

    Args:
        scores: ``(generations, population)`` a thread's scores (NaN: not scored); a generation without any
            finite score leaves a gap.
        reference_scores: ``(generations, references)`` the same objective's scores of the natural references,
            NaN in generations that did not show them (their points are joined across those); None: no references.
        generations: ``(generations,)`` the generation numbers (default ``0 .. generations - 1``).
        title: the chart's title (escaped).
        width, height: size of the plot in px (the legend adds a row below).
        colour: the colour of the evolved images' lines (the natural references' are grey and green).

    Returns:
        ``<svg>`` markup (series ``mean``, ``best``, and ``natural best``, ``natural mean`` with references).
    """
    values = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    x = np.arange(len(values)) if generations is None else np.asarray(generations, dtype=np.float64)
    series = [Series("mean", x, _rowwise(values, np.nanmean), colour),
              Series("best", x, _rowwise(values, np.nanmax), colour, dash="5 3")]
    if reference_scores is not None:
        refs = np.asarray(reference_scores, dtype=np.float64).reshape(len(values), -1)
        if refs.size and np.isfinite(refs).any():
            dots = int(np.isfinite(refs).any(axis=1).sum()) <= MAX_MARKERS
            series += [Series("natural best", x, _rowwise(refs, np.nanmax), "#2ca02c", dash="2 2", join_gaps=True,
                              markers=dots),
                       Series("natural mean", x, _rowwise(refs, np.nanmean), "#7f7f7f", dash="2 2", join_gaps=True,
                              markers=dots)]
    return line_chart_svg(series, width=width, height=height, title=title, x_label="generation", y_label="score")


def _rowwise(values: np.ndarray, reduce: object) -> np.ndarray:
    """``reduce`` (nanmean / nanmax) of each row; NaN for a row without a finite value (no warning)."""
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values).any(axis=1) if values.ndim == 2 and values.shape[1] else np.zeros(len(values), bool)
    if finite.any():
        out[finite] = reduce(values[finite], axis=1)  # type: ignore[operator]
    return out
