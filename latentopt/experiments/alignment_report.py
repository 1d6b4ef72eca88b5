"""Alignment analysis of recorded paired-generator sessions (Wang & Ponce 2026): one session or a whole study.

Reads run folders (an ``alignment`` run, or any evolution with two or more threads) and applies the pure
statistics of :mod:`latentopt.analysis.alignment`. Each image shown is a trial; its evoked response is the
thread's recorded score (the objective: e.g. the unit's 50-200 ms rate minus its 0-45 ms baseline). The time
bins of the scored channel, when the subject records them, give the dynamics.

Outputs of :func:`write_alignment_report`: ``alignment.csv`` (one row per session x thread), ``summary.md``
(per area: successes / sessions per generator with 90 % Clopper-Pearson intervals, paired t of the last- and
first-block normalised activation), ``trajectories.png``, ``success.png`` and, with time bins, ``dynamics.png``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.records import RUN_MARKER, RecordError, RunWriter
from latentopt.run_record import load_run


@dataclass
class Session:
    """One paired-generator session read back.

    Attributes:
        path: the run folder.
        area: the recorded channel's area (the subject's ``area``, or the rig's channel map), or ``unknown``.
        threads: thread names (one per generator).
        trials: per thread, per block: ``(images,)`` evoked responses (the thread's scores; NaN: not shown).
        psth: per thread, per block: ``(images, time_bins)`` of the scored channel, or None without time bins.
        time_bins_ms: ``(time_bins + 1,)`` bin edges, or None.
    """

    path: Path
    area: str
    threads: list[str]
    trials: dict[str, list[np.ndarray]]
    psth: dict[str, list[np.ndarray]] | None
    time_bins_ms: np.ndarray | None


def _area(provenance: dict[str, Any]) -> str:
    subject = provenance.get("subject") or {}
    if subject.get("area"):
        return str(subject["area"])
    areas, channels = subject.get("areas") or {}, subject.get("channels")
    channel = channels[0] if isinstance(channels, list) and len(channels) == 1 else None
    return str(areas.get(str(channel), "unknown")) if channel is not None else "unknown"


_THREAD_OF_TRIAL = re.compile(r"_g\d{5}_(?P<thread>[A-Za-z0-9][A-Za-z0-9_-]*)_\d{3}(?:\.png)?$")


def _file_channel(provenance: dict[str, Any]) -> int | None:
    """The channel of a rig's response file that the objective scored (``subject.channels``[objective.channel])."""
    channel = (provenance.get("objective") or {}).get("channel")
    chosen = (provenance.get("subject") or {}).get("channels")
    if not isinstance(channel, int):
        return None
    return int(chosen[channel]) if isinstance(chosen, list) and channel < len(chosen) else channel


def _rig_trials(run: Any, threads: Sequence[str], channel: int | None) -> tuple[dict[str, list[np.ndarray]],
                                                                                 dict[str, list[np.ndarray]],
                                                                                 np.ndarray] | None:
    """Per-trial responses from a rig's raw response files (repeats of an image are separate trials), or None.

    Returns per thread and block the evoked response of every trial (50-200 ms minus 0-45 ms of the rates) and its
    rates per bin, with the bin edges; None when the records hold no time-binned trials of the scored channel.
    """
    from latentopt.responses import evoked_response

    trials: dict[str, list[np.ndarray]] = {t: [] for t in threads}
    psth: dict[str, list[np.ndarray]] = {t: [] for t in threads}
    edges: np.ndarray | None = None
    for g in range(run.generations):
        per: dict[str, list[np.ndarray]] = {t: [] for t in threads}
        for key, attempt in sorted(run.block(g).subject.items()):
            recorded = attempt.get("trials") if key.startswith("attempt_") and isinstance(attempt, dict) else None
            if not recorded or "bin_edges_ms" not in recorded or channel is None:
                continue
            edges = np.asarray(recorded["bin_edges_ms"], dtype=np.float64)
            values = np.asarray(recorded["values"], dtype=np.float64)
            if values.ndim != 3 or channel >= values.shape[1]:
                return None
            rates = values[:, channel, :] / (np.diff(edges) / 1000.0)
            for image_id, row in zip(map(str, recorded["image_ids"]), rates, strict=True):
                match = _THREAD_OF_TRIAL.search(image_id)
                if match and match["thread"] in per:
                    per[match["thread"]].append(row)
        if edges is None:
            return None
        for t in threads:
            block = np.asarray(per[t]).reshape(-1, len(edges) - 1)
            psth[t].append(block)
            trials[t].append(evoked_response(block[:, None, :], edges)[:, 0] if len(block) else np.zeros(0))
    return (trials, psth, edges) if edges is not None else None


def load_session(run_dir: Path | str) -> Session:
    """A session from its run folder.

    Raises:
        RecordError: the folder holds no run with at least two optimizer threads.
    """
    run = load_run(run_dir)
    threads = run.threads
    if len(threads) < 2:
        raise RecordError(f"{run.path} is no paired-generator session (threads: {', '.join(threads) or 'none'})")
    trials = {name: [np.asarray(row, dtype=np.float64) for row in thread.scores] for name, thread in threads.items()}
    edges = run.block(0).time_bins_ms if run.generations else None
    channel = (run.provenance.get("objective") or {}).get("channel")
    psth = None
    first = next(iter(threads.values())).responses
    if edges is not None and first.ndim == 4 and isinstance(channel, int) and channel < first.shape[2]:
        psth = {name: [np.asarray(block[:, channel, :], dtype=np.float64) for block in thread.responses]
                for name, thread in threads.items()}
    rig = _rig_trials(run, list(threads), _file_channel(run.provenance))
    if rig is not None:  # a rig's raw files: every repeat of an image is a trial
        trials, psth, edges = rig
    return Session(run.path, _area(run.provenance), list(threads), trials, psth, edges)


def find_sessions(paths: Iterable[Path | str]) -> list[Path]:
    """Run folders under ``paths`` (each a run folder, or a folder of them such as a multirun) with 2+ threads."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise RecordError(f"{path}: no such folder")
        candidates = [path] if (path / RUN_MARKER).is_file() else sorted(p.parent for p in path.rglob(RUN_MARKER))
        for candidate in candidates:
            run = load_run(candidate)
            if run.generations and len(run.block(0).thread_names) >= 2:
                found.append(candidate)
    if not found:
        raise RecordError(f"no paired-generator session (a run with 2+ threads) under {', '.join(map(str, paths))}")
    return found


def session_rows(session: Session, **options: Any) -> list[dict[str, Any]]:
    """One row per thread: area, generator, success, t, p, normalised first / last block, time constant."""
    from latentopt.analysis.alignment import session_summary

    summary = session_summary(session.trials, **options)
    return [{"session": str(session.path), "area": session.area, "generator": name, "success": s.success,
             "t": s.t, "p": s.p, "first_norm": s.first_norm, "last_norm": s.last_norm,
             "time_constant": s.time_constant, "blocks": s.blocks, "valid": s.valid}
            for name, s in summary.items()]


def write_session_report(run_dir: Path | str) -> dict[str, Any]:
    """``alignment.json`` of one session (the rows of :func:`session_rows`); returns ``{"alignment": rows}``."""
    rows = session_rows(load_session(run_dir))
    RunWriter(run_dir).write_json("alignment.json", {"threads": rows})
    headline = " | ".join(f"{r['generator']} {'success' if r['success'] else 'no success'} (p {_fmt(r['p'])})"
                          for r in rows)
    return {"alignment": rows, "headline": f"alignment: {headline}"}


def _fmt(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(float(value)) else f"{float(value):.3g}"


def dynamics(sessions: Sequence[Session], generators: tuple[str, str], *, bin_ms: float = 10.0,
             alpha: float = 0.05) -> dict[str, Any]:
    """Per area: the temporal attribution of the last 2 blocks (per 10-ms bin, A vs B, BH-FDR across bins).

    Every bin of a session is divided by its one universal normaliser (the 50-200 ms evoked maximum over both
    threads and all blocks); sessions without time bins are left out.
    """
    from latentopt.analysis import bin_trajectories, temporal_attribution, universal_normaliser

    out: dict[str, Any] = {}
    for area in sorted({s.area for s in sessions}):
        a_rows, b_rows, centres = [], [], None
        for s in sessions:
            if s.area != area or s.psth is None or s.time_bins_ms is None or not set(generators) <= set(s.threads):
                continue
            binned = bin_trajectories({g: s.psth[g] for g in generators}, s.time_bins_ms, bin_ms=bin_ms)
            scale = universal_normaliser({g: s.psth[g] for g in generators}, s.time_bins_ms)
            a_rows.append(np.nanmean(binned[generators[0]][-2:], axis=0) / scale)
            b_rows.append(np.nanmean(binned[generators[1]][-2:], axis=0) / scale)
            centres = np.arange(binned[generators[0]].shape[1])
        if len(a_rows) < 2 or centres is None:
            continue
        edges = np.arange(len(centres) + 1) * bin_ms
        result = temporal_attribution(np.stack(a_rows), np.stack(b_rows), edges, alpha=alpha)
        out[area] = {"sessions": len(a_rows), "bin_edges_ms": edges.tolist(), "t": np.asarray(result.t).tolist(),
                     "p": np.asarray(result.p).tolist(), "significant": np.asarray(result.rejected).tolist(),
                     f"{generators[0]}_ahead_ms": result.advantage_a_ms,
                     f"{generators[1]}_ahead_ms": result.advantage_b_ms,
                     "mean_a": np.nanmean(np.stack(a_rows), axis=0).tolist(),
                     "mean_b": np.nanmean(np.stack(b_rows), axis=0).tolist()}
    return out


def write_alignment_report(paths: Iterable[Path | str], out: Path | str, *,
                           generators: tuple[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """Analyse every session under ``paths`` into ``out``; return the summary (per-area table, dynamics)."""
    from latentopt.analysis.alignment import area_table

    sessions = [load_session(p) for p in find_sessions(paths)]
    rows = [row for s in sessions for row in session_rows(s, **options)]
    names = generators or tuple(sessions[0].threads[:2])
    if len(names) != 2:
        raise RecordError("the alignment table compares two generators; give --generators A B")
    table = area_table([r for r in rows if r["valid"]], generators=names)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    writer = RunWriter(folder)
    buffer = io.StringIO()
    fields = list(rows[0])
    csv_writer = csv.DictWriter(buffer, fieldnames=fields)
    csv_writer.writeheader()
    csv_writer.writerows(rows)
    writer.write_text("alignment.csv", buffer.getvalue())
    dyn = dynamics(sessions, names) if any(s.psth is not None for s in sessions) else {}
    writer.write_text("summary.md", _markdown(table, names, dyn, len(sessions)))
    writer.write_json("alignment_summary.json", {"generators": list(names), "areas": table, "dynamics": dyn})
    from latentopt.experiments.alignment_figures import draw_dynamics, draw_success, draw_trajectories

    writer.write_figure("trajectories.png", draw_trajectories(sessions, names, **options), size=(10, 3.6))
    writer.write_figure("success.png", draw_success(table, names), size=(6, 3.6))
    if dyn:
        writer.write_figure("dynamics.png", draw_dynamics(dyn, names), size=(10, 3.6))
    return {"sessions": len(sessions), "areas": table, "dynamics": dyn}


def _markdown(table: list[dict[str, Any]], names: tuple[str, str], dyn: dict[str, Any], sessions: int) -> str:
    a, b = names
    lines = [f"# Alignment: {a} vs {b} ({sessions} sessions)", "",
             f"| area | {a} successes | {a} 90 % CI | {b} successes | {b} 90 % CI | last block t ({a} − {b}) | p | "
             f"first block t | p | pairs (either succeeded) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        lines.append(f"| {row['area']} | {row[f'{a}_successes']}/{row[f'{a}_sessions']} | {_ci(row, a)} | "
                     f"{row[f'{b}_successes']}/{row[f'{b}_sessions']} | {_ci(row, b)} | {_fmt(row['last_t'])} | "
                     f"{_fmt(row['last_p'])} | {_fmt(row['first_t'])} | {_fmt(row['first_p'])} | {row['last_n']} |")
    if dyn:
        lines += ["", "Temporal attribution (last 2 blocks, 10-ms bins, two-sided paired t per bin, BH-FDR 0.05):", ""]
        for area, d in dyn.items():
            lines.append(f"- {area} ({d['sessions']} sessions): {a} ahead {d[f'{a}_ahead_ms'] or 'nowhere'}; "
                         f"{b} ahead {d[f'{b}_ahead_ms'] or 'nowhere'} (ms)")
    return "\n".join(lines) + "\n"


def _ci(row: dict[str, Any], generator: str) -> str:
    return f"{row[f'{generator}_ci_lo']:.2f}-{row[f'{generator}_ci_hi']:.2f}"
