"""Read an axis-tuning run back (:func:`load_axis_tuning`) and write its analysis.

``axis_tuning.json`` holds the settings and, per axis, ``name``, ``kind`` (``top`` or ``random``), ``rank``,
``eigenvalue`` and what :func:`latentopt.analysis.axis_tuning.analyze_axis` returns (mean and trials per
distance, ANOVA, Gaussian and linear fits, the criterion's values, the class). ``axis_tuning.csv`` has one
row per axis (the class, the criterion's values, both fits and the mean at every distance);
``axis_tuning.png`` draws every curve with its fits; ``axis_tuning_images.png`` is the montage of the images
(one row per axis, distances left to right).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.experiments.axis_tuning import AxisDesign
from latentopt.experiments.fixed_design import THUMBNAIL, read_design_run, trial_values
from latentopt.records import RunWriter
from latentopt.run_record import load_run

AXIS_TUNING_FILE = "axis_tuning.json"


@dataclass
class AxisTuningRecord:
    """An axis-tuning run read back.

    Attributes:
        path: the run folder.
        design: what was shown (axes, distances, codes, order).
        trials: ``(images, repeats, channels[, time_bins])`` responses per unique image and repeat; NaN where
            a presentation was not shown.
        trial_scores: ``(images, repeats)`` the run's objective on each trial (NaN likewise).
        thumbnails: ``(images, 48, 48, 3)`` uint8 of the images as shown (white where none was shown).
        reference_ids, reference_responses: the natural references and ``(blocks, references, channels[, bins])``.
    """

    path: Path
    design: AxisDesign
    trials: np.ndarray
    trial_scores: np.ndarray
    thumbnails: np.ndarray
    reference_ids: list[str]
    reference_responses: np.ndarray

    def curves(self, values: np.ndarray) -> np.ndarray:
        """Per-image values ``(images, ...)`` laid out per axis and distance: ``(axes, distances, ...)``."""
        return np.asarray(values)[self.design.grid_index]


def load_axis_tuning(path: Path | str) -> AxisTuningRecord:
    """Read an axis-tuning run folder: its design and every recorded block.

    Raises:
        RecordError: the folder holds no axis-tuning run, or a file is damaged (the message names it).
    """
    run, design, read = read_design_run(path, "axis_tuning", AxisDesign.from_tree,
                                        holds=lambda tree: "directions" in tree)
    return AxisTuningRecord(run.path, design, read.trials, read.trial_scores, read.thumbnails, read.reference_ids,
                            read.reference_responses)


def analyze_axis_tuning(record: AxisTuningRecord, *, channel: int | None = None, alpha: float = 0.01,
                        aic_margin: float = 2.0, min_drop: float = 0.2) -> dict[str, Any]:
    """Every axis' curve tested, fitted and classified: the dict written to ``axis_tuning.json``.

    Args:
        record: the run.
        channel: analyse this channel's (evoked) response instead of the run's objective score.
        alpha, aic_margin, min_drop: the criterion's settings (:mod:`latentopt.analysis.axis_tuning`).
    """
    from latentopt.analysis.axis_tuning import analyze_axis

    d = record.design
    values = trial_values(record.trials, record.trial_scores, d.time_bins_ms, channel)
    curves = record.curves(values)  # (axes, distances, repeats)
    axes = []
    for a, name in enumerate(d.names):
        result = analyze_axis(d.distances, curves[a], name=name, alpha=alpha, aic_margin=aic_margin,
                              min_drop=min_drop)
        eigenvalue = float(d.eigvals[a])
        axes.append({"name": name, "kind": d.kinds[a], "rank": int(d.ranks[a]) or None,
                     "eigenvalue": eigenvalue if np.isfinite(eigenvalue) else None,
                     **{k: v for k, v in result.items() if k != "name"}})
    return {"analysed": "objective score" if channel is None else f"channel {channel}", "channel": channel,
            "criterion": {"alpha": alpha, "aic_margin": aic_margin, "min_drop": min_drop},
            "distances": d.distances.tolist(), "distances_in_scale": (d.distances / d.scale).tolist(),
            "scale": d.scale, "scale_kind": d.scale_kind, "trials_shown": int(np.isfinite(values).sum()),
            "trials_planned": int(values.size), "counts": _counts(axes), "axes": axes}


def _counts(axes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    from latentopt.analysis.axis_tuning import CLASSES

    return {kind: {label: sum(1 for a in axes if a["kind"] == kind and a["classification"] == label)
                   for label in CLASSES} for kind in ("top", "random")}


def write_axis_tuning_report(run_dir: Path | str, *, channel: int | None = None, alpha: float = 0.01,
                             aic_margin: float = 2.0, min_drop: float = 0.2,
                             out: Path | str | None = None) -> dict[str, Any]:
    """Analyse an axis-tuning run and write ``axis_tuning.json``, ``.csv``, ``.png``, ``_images.png``, ``summary.json``.

    Args:
        run_dir: the axis-tuning run folder.
        channel: analyse this channel's response instead of the run's objective score.
        alpha, aic_margin, min_drop: the criterion's settings.
        out: write into this folder instead of ``run_dir`` (it is created).

    Returns:
        The summary (``summary.json``), whose ``headline`` is the closing line of the command.
    """
    record = load_axis_tuning(run_dir)
    analysis = analyze_axis_tuning(record, channel=channel, alpha=alpha, aic_margin=aic_margin, min_drop=min_drop)
    target = Path(out) if out is not None else Path(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    writer = RunWriter(target)
    writer.write_json(AXIS_TUNING_FILE, analysis)
    writer.write_text("axis_tuning.csv", _csv(analysis))
    columns = min(4, len(analysis["axes"]))
    rows = -(-len(analysis["axes"]) // columns)
    writer.write_figure("axis_tuning.png", lambda fig: _figure(fig, analysis), size=(3.2 * columns, 2.6 * rows))
    d = record.design
    from latentopt.report import montage

    tiles = [record.thumbnails[k] for k in d.grid_index.reshape(-1)]
    writer.write_png("axis_tuning_images.png", montage(tiles, columns=d.grid_index.shape[1], tile=THUMBNAIL))
    parts = []
    for kind, label in (("top", "top"), ("random", "random")):
        counts = analysis["counts"][kind]
        total = sum(1 for a in analysis["axes"] if a["kind"] == kind)
        if total:
            parts.append(f"{label} {total}: " + ", ".join(f"{counts[c]} {c}" for c in counts))
    summary = {"experiment": "axis_tuning", "generations": load_run(run_dir).generations,
               "trials_shown": analysis["trials_shown"], "trials_planned": analysis["trials_planned"],
               "counts": analysis["counts"],
               "axes": {a["name"]: {k: a[k] for k in ("kind", "rank", "classification", "anova_p", "delta_aic")}
                        for a in analysis["axes"]},
               "headline": f"axis_tuning: {' | '.join(parts)}"}
    writer.write_json("summary.json", summary)
    return summary


def _flat(value: Any) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _csv(analysis: dict[str, Any]) -> str:
    """One row per axis: the class, the criterion's values, both fits and the mean at every distance."""
    gaussian = ("amplitude", "centre", "width", "offset", "r2", "aic")
    linear = ("slope", "intercept", "r2", "aic")
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(["axis", "kind", "rank", "eigenvalue", "classification", "tuned", "anova_f", "anova_p",
                  "delta_aic", "centre_inside", "flank_drop", *(f"gaussian_{k}" for k in gaussian),
                  *(f"linear_{k}" for k in linear), *(f"mean_at_{t:.6g}" for t in analysis["distances"])])
    for a in analysis["axes"]:
        fits = [(a["gaussian"] or {}).get(k) for k in gaussian] + [(a["linear"] or {}).get(k) for k in linear]
        out.writerow([_flat(v) for v in (a["name"], a["kind"], a["rank"], a["eigenvalue"], a["classification"],
                                         a["tuned"], a["anova_f"], a["anova_p"], a["delta_aic"], a["centre_inside"],
                                         a["flank_drop"], *fits, *a["mean"])])
    return buffer.getvalue()


COLOURS = {"bell-shaped": "tab:red", "monotonic": "tab:blue", "flat": "tab:gray", None: "black"}


def _figure(fig: Any, analysis: dict[str, Any]) -> None:
    """One panel per axis: trials (dots), mean ± s.e.m., the Gaussian (solid) and linear (dashed) fits."""
    from latentopt.analysis.axis_tuning import gaussian_curve

    x = np.asarray(analysis["distances_in_scale"])
    scale = float(analysis["scale"])
    fine = np.linspace(x.min(), x.max(), 200)
    axes = analysis["axes"]
    columns = min(4, len(axes))
    rows = -(-len(axes) // columns)
    unit = "distance (fraction of ‖z0‖)" if analysis["scale_kind"] == "norm" else "distance (code units)"
    for k, a in enumerate(axes):
        ax = fig.add_subplot(rows, columns, k + 1)
        colour = COLOURS.get(a["classification"], "black")
        for j, trials in enumerate(a["trials"]):
            ax.plot(np.full(len(trials), x[j]), trials, ".", color="0.6", markersize=3)
        mean = np.array([np.nan if m is None else m for m in a["mean"]])
        sem = np.array([0.0 if s is None else s for s in a["sem"]])
        ax.errorbar(x, mean, yerr=sem, fmt="o", color=colour, markersize=4, capsize=2)
        if a["gaussian"] is not None:
            g = a["gaussian"]
            ax.plot(fine, gaussian_curve(fine * scale, g["amplitude"], g["centre"], g["width"], g["offset"]),
                    "-", color=colour, lw=1.2)
            line = a["linear"]
            ax.plot(fine, line["intercept"] + line["slope"] * fine * scale, "--", color="0.3", lw=1.0)
        label = f"{a['name']}" + (f" (λ {a['eigenvalue']:.3g})" if a["eigenvalue"] is not None else " (random)")
        p = "p n/a" if a["anova_p"] is None else f"p {a['anova_p']:.2g}"
        ax.set_title(f"{label}\n{a['classification'] or 'not fitted'}, {p}", fontsize=8)
        ax.tick_params(labelsize=7)
        if k // columns == rows - 1:
            ax.set_xlabel(unit, fontsize=7)
        if k % columns == 0:
            ax.set_ylabel("response" if analysis["channel"] is not None else "score", fontsize=7)
    fig.tight_layout()

