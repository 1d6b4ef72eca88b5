"""Read a manifold run back (:func:`load_manifold`) and write its analysis: ``manifold.json`` and one figure per sphere.

``manifold.json`` holds, per sphere, ``name``, ``kappa``, ``beta``, ``amplitude``, ``baseline``, ``r2``,
``adj_r2``, ``anova_p`` (null without repeats), ``noise_ceiling`` and the peak direction
(:func:`latentopt.analysis.tuning.analyze_sphere`). ``manifold_<sphere>.png`` shows the map over θ x φ
beside the montage of the grid's images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.experiments.fixed_design import THUMBNAIL, nanmean, read_design_run, trial_values
from latentopt.experiments.manifold import ManifoldDesign
from latentopt.records import RunWriter
from latentopt.run_record import load_run

MANIFOLD_FILE = "manifold.json"


@dataclass
class ManifoldRecord:
    """A manifold run read back.

    Attributes:
        path: the run folder.
        design: what was shown (sphere names and bases, angles, codes, order).
        trials: ``(images, repeats, channels[, time_bins])`` responses per unique image and repeat; NaN
            where a presentation was not shown (aborted trial, or the run stopped early).
        trial_scores: ``(images, repeats)`` the run's objective on each trial (NaN likewise).
        thumbnails: ``(images, 48, 48, 3)`` uint8 of the images as shown (white where none was shown).
        reference_ids, reference_responses: the natural references and ``(blocks, references, channels[, bins])``.
    """

    path: Path
    design: ManifoldDesign
    trials: np.ndarray
    trial_scores: np.ndarray
    thumbnails: np.ndarray
    reference_ids: list[str]
    reference_responses: np.ndarray

    @property
    def names(self) -> list[str]:
        return self.design.names

    @property
    def thetas_deg(self) -> np.ndarray:
        return self.design.thetas_deg

    @property
    def phis_deg(self) -> np.ndarray:
        return self.design.phis_deg

    @property
    def bases(self) -> np.ndarray:
        """``(spheres, 3, d)`` the spheres' orthonormal axes ``e1, e2, e3``."""
        return self.design.bases

    def on_grid(self, per_image: np.ndarray) -> np.ndarray:
        """Values per unique image ``(images, ...)`` laid out on the grid: ``(spheres, nθ, nφ, ...)``."""
        return np.asarray(per_image)[self.design.grid_index]

    @property
    def responses(self) -> np.ndarray:
        """``(spheres, nθ, nφ, channels[, time_bins])`` the mean over the shown repeats (NaN if none)."""
        return self.on_grid(nanmean(self.trials, axis=1))

    @property
    def scores(self) -> np.ndarray:
        """``(spheres, nθ, nφ)`` the mean objective score over the shown repeats."""
        return self.on_grid(nanmean(self.trial_scores, axis=1))

    def sphere_trials(self, values: np.ndarray, sphere: int) -> np.ndarray:
        """``values`` ``(images, repeats)`` restricted to the unique images of one sphere (a pole once)."""
        unique = np.unique(self.design.grid_index[sphere])
        return np.asarray(values)[unique]


def load_manifold(path: Path | str) -> ManifoldRecord:
    """Read a manifold run folder: its design and every recorded block.

    Raises:
        RecordError: the folder holds no manifold run, or a file is damaged (the message names it).
    """
    run, design, read = read_design_run(path, "manifold", ManifoldDesign.from_tree, absent=", no design.npz")
    return ManifoldRecord(run.path, design, read.trials, read.trial_scores, read.thumbnails, read.reference_ids,
                          read.reference_responses)


def channel_values(record: ManifoldRecord, channel: int | None) -> np.ndarray:
    """``(images, repeats)`` what is analysed: the run's objective scores, or one channel's (evoked) response.

    Raises:
        RecordError: ``channel`` is not one of the recorded channels.
    """
    return trial_values(record.trials, record.trial_scores, record.design.time_bins_ms, channel)


def analyze_manifold(record: ManifoldRecord, *, channel: int | None = None, baseline: bool = True) -> dict[str, Any]:
    """The analysis of every sphere (see the module docstring) as the dict written to ``manifold.json``."""
    from latentopt.analysis.tuning import analyze_sphere

    values = channel_values(record, channel)
    mean = nanmean(values, axis=1)
    spheres = []
    for s, name in enumerate(record.names):
        spheres.append(analyze_sphere(record.on_grid(mean)[s], record.thetas_deg, record.phis_deg,
                                      trials=record.sphere_trials(values, s), name=name, baseline=baseline))
    shown = int(np.isfinite(values).sum())
    return {"analysed": "objective score" if channel is None else f"channel {channel}", "channel": channel,
            "baseline": baseline, "radius": record.design.radius, "thetas_deg": record.thetas_deg.tolist(),
            "phis_deg": record.phis_deg.tolist(), "trials_shown": shown, "trials_planned": int(values.size),
            "spheres": spheres}


def write_manifold_report(run_dir: Path | str, *, channel: int | None = None, baseline: bool = True,
                          out: Path | str | None = None) -> dict[str, Any]:
    """Analyse a manifold run and write ``manifold.json``, ``manifold_<sphere>.png`` and ``summary.json``.

    Args:
        run_dir: the manifold run folder.
        channel: analyse this channel's response instead of the run's objective score.
        baseline: fit a baseline term.
        out: write into this folder instead of ``run_dir`` (it is created).

    Returns:
        The summary (``summary.json``), whose ``headline`` is the closing line of the command.
    """
    record = load_manifold(run_dir)
    analysis = analyze_manifold(record, channel=channel, baseline=baseline)
    target = Path(out) if out is not None else Path(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    writer = RunWriter(target)
    writer.write_json(MANIFOLD_FILE, analysis)
    values = channel_values(record, channel)
    maps = record.on_grid(nanmean(values, axis=1))
    for s, result in enumerate(analysis["spheres"]):
        writer.write_png(f"manifold_{result['name']}.png", _figure(record, maps[s], s, result))
    headline = " | ".join(f"{r['name']} R² {_fmt(r['r2'])} κ {_fmt(r['kappa'])}" for r in analysis["spheres"])
    summary = {"experiment": "manifold", "generations": load_run(run_dir).generations,
               "trials_shown": analysis["trials_shown"], "trials_planned": analysis["trials_planned"],
               "spheres": {r["name"]: {k: r[k] for k in ("r2", "adj_r2", "kappa", "beta", "anova_p")}
                           for r in analysis["spheres"]},
               "headline": f"manifold: {headline}"}
    writer.write_json("summary.json", summary)
    return summary


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _figure(record: ManifoldRecord, tuning_map: np.ndarray, sphere: int, result: dict[str, Any]) -> np.ndarray:
    """``(H, W, 3)`` uint8: the map over θ x φ (matplotlib, fixed layout: one draw) beside the grid's montage."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from PIL import Image

    from latentopt.report import montage

    name, axes = result["name"], result["name"].split("_")
    fig = Figure(figsize=(4.8, 4.4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    left = fig.add_axes((0.14, 0.11, 0.62, 0.8))
    bar = fig.add_axes((0.8, 0.11, 0.03, 0.8))
    t, p = record.thetas_deg, record.phis_deg
    image = left.imshow(tuning_map.T[::-1], extent=(t[0], t[-1], p[0], p[-1]), aspect="auto", cmap="viridis")
    fig.colorbar(image, cax=bar, label=record_label(result))
    if result["peak_theta_deg"] is not None:
        left.plot(result["peak_theta_deg"], result["peak_phi_deg"], "r+", markersize=14, mew=2)
    ticks = [v for v in (-90, -45, 0, 45, 90) if t[0] - 1e-9 <= v <= t[-1] + 1e-9]
    left.set_xticks(ticks)
    left.set_yticks([v for v in (-90, -45, 0, 45, 90) if p[0] - 1e-9 <= v <= p[-1] + 1e-9])
    bar.yaxis.set_major_locator(MaxNLocator(5))
    left.set_xlabel(f"θ (deg, toward {axes[1]})")
    left.set_ylabel(f"φ (deg, toward {axes[2]})")
    left.set_title(f"{name}: R² {_fmt(result['r2'])}, κ {_fmt(result['kappa'])}, β {_fmt(result['beta'])}", fontsize=9)
    canvas.draw()
    plot = np.asarray(canvas.buffer_rgba())[..., :3]
    grid_index = record.design.grid_index[sphere]
    # rows: φ from +90 (top) to -90; columns: θ from -90 to +90, as the map beside it
    tiles = [record.thumbnails[grid_index[i, j]] for j in range(grid_index.shape[1])[::-1]
             for i in range(grid_index.shape[0])]
    sheet = montage(tiles, columns=grid_index.shape[0], tile=THUMBNAIL)
    side = plot.shape[0]
    sheet = np.asarray(Image.fromarray(sheet).resize((side, side), Image.Resampling.BILINEAR))
    return np.concatenate([plot, np.full((side, 8, 3), 255, np.uint8), sheet], axis=1)


def record_label(result: dict[str, Any]) -> str:
    return "mean response" if result.get("anova_p") is None else f"mean response (ANOVA p {result['anova_p']:.2g})"
