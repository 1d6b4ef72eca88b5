"""Read a natural-set or control session back and report it (``summary.json``, ``control.json``, a CSV, a figure).

Responses per presentation are the recorded ones; time-binned responses are reduced to the evoked response
(mean over 50-200 ms minus the 0-45 ms baseline, :func:`latentopt.responses.evoked_response`). Aborted trials
(NaN) are left out of every mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.analysis import control as analysis
from latentopt.records import RecordError, RunWriter


@dataclass
class SessionRecord:
    """A natural-set or control session: its items and every trial.

    Attributes:
        item_ids: one per item (controllers first, then natural images).
        n_controllers: ``K``.
        trials: per item its trials ``(r_i, C)`` (evoked responses; aborted trials dropped).
        channel_names: the subject's channels.
        design: the recorded design tree (controllers' kinds, channels, twin predictions for a control run).
        generations: blocks recorded; planned: presentations planned.
    """

    item_ids: list[str]
    n_controllers: int
    trials: list[np.ndarray]
    channel_names: list[str]
    design: dict[str, Any]
    generations: int
    planned: int

    def means(self) -> np.ndarray:
        """``(items, C)`` per-item means (NaN for an item never shown)."""
        width = len(self.channel_names)
        return np.stack([t.mean(axis=0) if len(t) else np.full(width, np.nan) for t in self.trials])


def _evoked(responses: np.ndarray, edges: np.ndarray | None) -> np.ndarray:
    if responses.ndim == 2:
        return responses
    from latentopt.responses import evoked_response

    if edges is None:
        return np.nanmean(responses, axis=2)
    return np.asarray(evoked_response(responses, edges))


def read_session(run_dir: Path | str) -> SessionRecord:
    """Read a ``natural`` or ``control`` run folder (see :class:`SessionRecord`).

    Raises:
        RecordError: the folder is no such run, holds another experiment, or is damaged (one line naming it).
    """
    from latentopt.run_record import load_run

    record = load_run(run_dir)
    if record.experiment not in ("natural", "control"):
        raise RecordError(f"{run_dir} holds a {record.experiment!r} run, not a natural-set or control session")
    design = RunWriter(run_dir).read_design()
    try:
        show = design["show"]
        item_ids = [str(i) for i in np.asarray(show["item_ids"]).tolist()]
        n_controllers = int(show["n_controllers"])
        planned = len(np.asarray(show["order"]))
    except (KeyError, TypeError) as err:
        raise RecordError(f"{run_dir}/design.npz is damaged or not a session design ({err})") from err
    rows: list[list[np.ndarray]] = [[] for _ in item_ids]
    width = None
    for g in range(record.generations):
        block = record.block(g)
        items = np.asarray(block.design.get("item", []), dtype=np.int64)
        if len(items) != len(block.responses):
            raise RecordError(f"{run_dir}: block {g} records {len(items)} items for {len(block.responses)} responses")
        values = _evoked(np.asarray(block.responses, dtype=np.float64), block.time_bins_ms)
        width = values.shape[1]
        for item, row in zip(items.tolist(), values, strict=True):
            if not 0 <= item < len(item_ids):
                raise RecordError(f"{run_dir}: block {g} names item {item} outside the design")
            if np.isfinite(row).all():
                rows[item].append(row)
    provenance = json.loads((Path(run_dir) / "provenance.json").read_text())
    names = provenance.get("channel_names") or [f"ch{i}" for i in range(width or 0)]
    width = len(names)
    trials = [np.asarray(r) if r else np.zeros((0, width)) for r in rows]
    return SessionRecord(item_ids, n_controllers, trials, list(names), design, record.generations, planned)


def natural_statistics(session: SessionRecord) -> dict[str, Any]:
    """Per channel the natural set's max, mean and std over per-image means, and the split-half reliability."""
    k = session.n_controllers
    natural = session.means()[k:]
    shown = np.isfinite(natural).all(axis=1)
    trials = session.trials[k:]
    reliability = analysis.split_half(trials) if trials else np.zeros(0)
    return {"images": int(shown.sum()), "max": np.nanmax(natural, axis=0).tolist(),
            "mean": np.nanmean(natural, axis=0).tolist(), "std": np.nanstd(natural, axis=0).tolist(),
            "best_image": [session.item_ids[k + int(i)] for i in np.nanargmax(natural, axis=0)],
            "reliability": reliability.tolist(),
            "reliability_definition": "split-half over repeats, Spearman-Brown corrected, mean of 100 splits"}


def write_natural_report(run_dir: Path | str) -> dict[str, Any]:
    """``summary.json`` of a natural-set session: the per-channel statistics."""
    session = read_session(run_dir)
    stats = natural_statistics(session)
    trials = sum(len(t) for t in session.trials)
    summary = {"experiment": "natural", "generations": session.generations, "trials_shown": trials,
               "trials_planned": session.planned, "channels": session.channel_names, "natural": stats,
               "headline": f"natural: {stats['images']} images, {trials}/{session.planned} trials, median "
                           f"reliability {_fmt(np.nanmedian(stats['reliability']) if stats['reliability'] else None)}"}
    RunWriter(run_dir).write_json("summary.json", summary)
    return summary


def analyze_control(session: SessionRecord) -> dict[str, Any]:
    """Stretch, one-hot and twin-prediction results of a control session (:mod:`latentopt.analysis.control`)."""
    k = session.n_controllers
    if not k or "controllers" not in session.design:
        raise RecordError("the session holds no controllers (a natural-set session): nothing to analyse as control")
    ctl = session.design["controllers"]
    kinds = [str(x) for x in np.asarray(ctl["kind"]).tolist()]
    channels = np.asarray(ctl["channel"], dtype=np.int64)
    means = session.means()
    natural, natural_trials = means[k:], session.trials[k:]
    shown = np.isfinite(natural).all(axis=1)
    if shown.sum() < 2:
        raise RecordError("the session holds responses to fewer than 2 natural images: nothing to compare against")
    out: dict[str, Any] = {"natural": natural_statistics(session)}
    try:
        temperature = float(json.loads(str(np.asarray(session.design["inputs"])))["temperature"])
    except (KeyError, ValueError, TypeError) as err:
        raise RecordError(f"the control design records no softmax temperature ({err})") from err
    for kind in ("stretch", "one_hot"):
        index = [i for i, x in enumerate(kinds) if x == kind and np.isfinite(means[i]).all()]
        missing = [int(channels[i]) for i, x in enumerate(kinds) if x == kind and i not in index]
        if not index:
            out[kind] = {"summary": None, "not_shown": missing}
            continue
        targets = [int(channels[i]) for i in index]
        if kind == "stretch":
            result: Any = analysis.stretch(natural[shown], means[index], targets,
                                           natural_trials=[t for t, s in zip(natural_trials, shown, strict=True)
                                                           if s],
                                           controller_trials=[session.trials[i] for i in index])
            per = {"channel": targets, "controller": result.controller.tolist(),
                   "natural_max": result.natural_max.tolist(), "success": result.success.tolist(),
                   "p": result.p_values.tolist()}
        else:
            result = analysis.one_hot(natural[shown], means[index], targets, temperature=temperature)
            per = {"channel": targets, "controller": result.controller.tolist(),
                   "natural_best": result.natural_best.tolist(), "success": result.success.tolist()}
        out[kind] = {"summary": result.summary, "per_target": per, "not_shown": missing}
    usable = [i for i in range(k) if np.isfinite(means[i]).all()]
    if usable:
        out["twin"] = analysis.twin_prediction(
            np.asarray(ctl["twin_responses"])[usable], means[usable],
            natural_observed=natural[shown], natural_predicted=np.asarray(ctl["twin_natural"])[shown],
            trials=[session.trials[i] for i in usable])
    return out


def _fmt(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3g}"


def write_control_report(run_dir: Path | str, *, out: Path | str | None = None) -> dict[str, Any]:
    """Analyse a control session: ``control.json``, ``control_channels.csv``, ``control.png`` and ``summary.json``."""
    session = read_session(run_dir)
    result = analyze_control(session)
    target = Path(out) if out is not None else Path(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    writer = RunWriter(target)
    writer.write_json("control.json", result)
    writer.write_text("control_channels.csv", _csv(session, result))
    writer.write_figure("control.png", lambda fig: _figure(fig, result), size=(10, 4))
    parts = []
    for kind in ("stretch", "one_hot"):
        s = (result.get(kind) or {}).get("summary")
        if s:
            parts.append(f"{kind} {s['succeeded']}/{s.get('channels', s.get('targets'))} "
                         f"({100 * s['fraction']:.0f} %, chance {100 * s['chance_permutation']:.1f} %)"
                         if np.isfinite(s["chance_permutation"]) else
                         f"{kind} {s['succeeded']}/{s.get('channels', s.get('targets'))}")
    twin = result.get("twin") or {}
    if twin:
        parts.append(f"twin median r {_fmt(twin.get('median_r'))}, EV {_fmt(twin.get('explained_variance_fraction'))}")
    summary = {"experiment": "control", "generations": session.generations,
               "trials_shown": int(sum(len(t) for t in session.trials)), "trials_planned": session.planned,
               "stretch": (result.get("stretch") or {}).get("summary"),
               "one_hot": (result.get("one_hot") or {}).get("summary"),
               "twin": {k: twin.get(k) for k in ("median_r", "pattern_r", "explained_variance_fraction")},
               "headline": "control: " + " | ".join(parts)}
    writer.write_json("summary.json", summary)
    return summary


def _csv(session: SessionRecord, result: dict[str, Any]) -> str:
    lines = ["kind,channel,channel_name,controller,natural_reference,success,p"]
    for kind in ("stretch", "one_hot"):
        per = (result.get(kind) or {}).get("per_target")
        if not per:
            continue
        reference = per.get("natural_max", per.get("natural_best"))
        for j, channel in enumerate(per["channel"]):
            p = per.get("p", [float("nan")] * len(per["channel"]))[j]
            lines.append(f"{kind},{channel},{session.channel_names[channel]},{per['controller'][j]:.6g},"
                         f"{reference[j]:.6g},{int(per['success'][j])},{p:.4g}")
    return "\n".join(lines) + "\n"


def _figure(fig: Any, result: dict[str, Any]) -> None:
    axes = fig.subplots(1, 3)
    stretch = (result.get("stretch") or {}).get("per_target")
    if stretch:
        ratio = np.asarray(stretch["controller"]) / np.asarray(stretch["natural_max"])
        axes[0].bar(range(len(ratio)), ratio, color=["tab:green" if s else "tab:grey" for s in stretch["success"]])
        axes[0].axhline(1.0, color="k", lw=0.8)
        axes[0].set(title="stretch: controller / natural max", xlabel="channel (in order)")
    one_hot = (result.get("one_hot") or {}).get("per_target")
    if one_hot:
        axes[1].scatter(one_hot["natural_best"], one_hot["controller"],
                        c=["tab:green" if s else "tab:grey" for s in one_hot["success"]])
        top = max(max(one_hot["natural_best"]), max(one_hot["controller"]), 1e-3)
        axes[1].plot([0, top], [0, top], "k", lw=0.8)
        axes[1].set(title="one-hot score", xlabel="best natural image", ylabel="controller")
    twin = result.get("twin")
    if twin:
        r = np.asarray(twin["r_per_channel"], dtype=float)
        axes[2].hist(r[np.isfinite(r)], bins=10, color="tab:blue")
        axes[2].set(title="twin vs subject on controllers", xlabel="r per channel")
    fig.tight_layout()
