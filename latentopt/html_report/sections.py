"""The built-in experiments' sections of the page, made from the files their reports already write.

``manifold``: ``manifold.json`` (the Kent fit of every sphere) as a table and each ``manifold_<sphere>.png``.
``alignment``: ``alignment.json`` as a table, the session's normalised trajectories and, with time bins, its
dynamics (both as SVG), and the study figures when ``latentopt-analyze alignment`` wrote them into the folder.
``control`` and ``natural``: the summaries, ``control_channels.csv`` and ``control.png``. ``axis_tuning``: the
class counts, ``axis_tuning.csv``, ``axis_tuning.png`` and ``axis_tuning_images.png``. A file not written yet
(the run is still going) is a note saying so and how to write it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.html_report.fragments import (
    Html,
    Section,
    cell,
    key_values,
    note,
    png_file,
    row,
    table,
    table_from_csv,
    text,
)
from latentopt.html_report.svg import PALETTE, Series, line_chart_svg


def _json(path: Path) -> dict[str, Any] | None:
    """A report's JSON file, or None when it is not written (yet); a damaged one is a ValueError naming it."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged (not JSON: {err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is damaged (not a JSON object)")
    return value


def _not_yet(name: str, run_dir: Path, command: str) -> Html:
    return note(f"{name} is not written yet: the experiment's report writes it when the run ends "
                f"(again: {command} {run_dir})")


def _figures(run_dir: Path, names: list[str]) -> list[Html]:
    return [png_file(run_dir / n, alt=n, caption=n) for n in names if (run_dir / n).is_file()]


# ---------------------------------------------------------------------------- manifold
MANIFOLD_COLUMNS = (("sphere", "name"), ("R²", "r2"), ("adj. R²", "adj_r2"), ("κ", "kappa"), ("β", "beta"),
                    ("amplitude", "amplitude"), ("baseline", "baseline"), ("ANOVA p", "anova_p"),
                    ("noise ceiling", "noise_ceiling"), ("peak θ (deg)", "peak_theta_deg"),
                    ("peak φ (deg)", "peak_phi_deg"))


def manifold_sections(run_dir: Path) -> list[Section]:
    analysis = _json(run_dir / "manifold.json")
    if analysis is None:
        return [Section("Manifold maps", [_not_yet("manifold.json", run_dir, "latentopt-analyze manifold")],
                        anchor="manifold")]
    spheres = analysis.get("spheres") or []
    parts: list[Html | str] = [
        text(f"analysed: {analysis.get('analysed')}; radius {cell(analysis.get('radius'))}; trials shown "
             f"{analysis.get('trials_shown')} of {analysis.get('trials_planned')}", css="facts"),
        table([c for c, _ in MANIFOLD_COLUMNS], [[s.get(k) for _, k in MANIFOLD_COLUMNS] for s in spheres],
              caption="Kent fit of every sphere (manifold.json)")]
    parts += _figures(run_dir, [f"manifold_{s.get('name')}.png" for s in spheres])
    return [Section("Manifold maps and Kent fits", parts, anchor="manifold")]


# ---------------------------------------------------------------------------- alignment
ALIGNMENT_COLUMNS = (("generator", "generator"), ("area", "area"), ("success", "success"), ("t", "t"), ("p", "p"),
                     ("first block (norm.)", "first_norm"), ("last block (norm.)", "last_norm"),
                     ("time constant (blocks)", "time_constant"), ("blocks", "blocks"), ("valid", "valid"))


def alignment_sections(run_dir: Path) -> list[Section]:
    from latentopt.analysis.alignment import normalised_trajectories
    from latentopt.experiments.alignment_report import load_session

    rows = (_json(run_dir / "alignment.json") or {}).get("threads")
    parts: list[Html | str] = [
        table([c for c, _ in ALIGNMENT_COLUMNS], [[r.get(k) for _, k in ALIGNMENT_COLUMNS] for r in rows],
              caption="Success per generator (alignment.json)") if rows
        else _not_yet("alignment.json", run_dir, "latentopt-resume")]
    session = load_session(run_dir)
    trajectories = normalised_trajectories(session.trials)
    series = [Series(name, np.arange(len(values)), values, PALETTE[k % len(PALETTE)])
              for k, (name, values) in enumerate(trajectories.items())]
    parts.append(Html("<h3>Trajectories</h3>"))
    parts.append(line_chart_svg(series, title="normalised activation per block (one maximum over all threads)",
                                x_label="block", y_label="normalised activation"))
    parts.append(Html("<h3>Dynamics</h3>"))
    parts.append(_dynamics(session))
    study = _figures(run_dir, ["trajectories.png", "success.png", "dynamics.png"])
    if study:
        parts += [Html("<h3>Study figures (latentopt-analyze alignment)</h3>"), row(*study)]
    return [Section("Alignment", parts, anchor="alignment")]


def _dynamics(session: Any) -> Html:
    """Per thread the mean rate per time bin of the first and last two blocks (NaN trials left out)."""
    if session.psth is None or session.time_bins_ms is None:
        return note("the subject recorded no time bins: no dynamics")
    edges = np.asarray(session.time_bins_ms, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    series = []
    for k, name in enumerate(session.threads):
        blocks = session.psth[name]
        for label, chosen, dash in (("first 2 blocks", blocks[:2], "4 3"), ("last 2 blocks", blocks[-2:], "")):
            trials = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, len(centres)) for b in chosen])
            kept = trials[np.isfinite(trials).all(axis=1)]
            mean = kept.mean(axis=0) if len(kept) else np.full(len(centres), np.nan)
            series.append(Series(f"{name}: {label}", centres, mean, PALETTE[k % len(PALETTE)], dash=dash))
    return line_chart_svg(series, title="mean response per time bin of the scored channel",
                          x_label="time from image onset (ms)", y_label="response")


# ---------------------------------------------------------------------------- control and natural
def _natural_table(stats: dict[str, Any], channels: list[str]) -> Html:
    keys = ("max", "mean", "std", "best_image", "reliability")
    columns = [list(stats.get(k) or []) for k in keys]
    rows = [[name, *(c[j] if j < len(c) else None for c in columns)] for j, name in enumerate(channels)]
    return table(["channel", "natural max", "natural mean", "natural std", "best natural image",
                  "split-half reliability"], rows, caption=f"Natural set ({stats.get('images')} images)")


def natural_sections(run_dir: Path) -> list[Section]:
    summary = _json(run_dir / "summary.json")
    if summary is None or "natural" not in summary:
        return [Section("Natural set", [_not_yet("summary.json", run_dir, "latentopt-resume")], anchor="natural")]
    channels = [str(c) for c in summary.get("channels") or []]
    parts: list[Html | str] = [text(f"trials shown {summary.get('trials_shown')} of {summary.get('trials_planned')}",
                                    css="facts"), _natural_table(summary["natural"], channels)]
    return [Section("Natural set", parts, anchor="natural")]


def control_sections(run_dir: Path) -> list[Section]:
    result = _json(run_dir / "control.json")
    if result is None:
        return [Section("Control", [_not_yet("control.json", run_dir, "latentopt-analyze control")],
                        anchor="control")]
    parts: list[Html | str] = []
    summaries = {kind: (result.get(kind) or {}).get("summary") for kind in ("stretch", "one_hot")}
    for kind, values in summaries.items():
        if values:
            parts.append(key_values(values, caption=f"{kind.replace('_', '-')} summary"))
        else:
            parts.append(note(f"no {kind.replace('_', '-')} controller was shown"))
    twin = result.get("twin") or {}
    if twin:
        parts.append(key_values({k: twin.get(k) for k in ("median_r", "pattern_r", "pattern_reliability",
                                                          "explained_variance_fraction")},
                                caption="twin prediction of the subject's responses to the controllers"))
    parts = [row(*[p for p in parts if isinstance(p, Html)], css="tables")]
    if (run_dir / "control_channels.csv").is_file():
        parts.append(table_from_csv(run_dir / "control_channels.csv", caption="per channel (control_channels.csv)"))
    parts += _figures(run_dir, ["control.png"])
    if result.get("natural"):
        provenance = _json(run_dir / "provenance.json") or {}
        count = len(result["natural"].get("max") or [])
        channels = [str(c) for c in provenance.get("channel_names") or [f"ch{j}" for j in range(count)]]
        parts.append(_natural_table(result["natural"], channels))
    return [Section("Control", parts, anchor="control")]


# ---------------------------------------------------------------------------- axis tuning
def axis_tuning_sections(run_dir: Path) -> list[Section]:
    analysis = _json(run_dir / "axis_tuning.json")
    if analysis is None:
        return [Section("Axis tuning", [_not_yet("axis_tuning.json", run_dir, "latentopt-resume")],
                        anchor="axis-tuning")]
    counts: dict[str, dict[str, int]] = analysis.get("counts") or {}
    classes = sorted({c for per in counts.values() for c in per})
    parts: list[Html | str] = [
        text(f"analysed: {analysis.get('analysed')}; trials shown {analysis.get('trials_shown')} of "
             f"{analysis.get('trials_planned')}", css="facts"),
        table(["axes", *classes], [[kind, *(per.get(c, 0) for c in classes)] for kind, per in counts.items()],
              caption="curves per class")]
    if (run_dir / "axis_tuning.csv").is_file():
        parts.append(table_from_csv(run_dir / "axis_tuning.csv", caption="every axis (axis_tuning.csv)"))
    parts += _figures(run_dir, ["axis_tuning.png", "axis_tuning_images.png"])
    return [Section("Axis tuning", parts, anchor="axis-tuning")]
