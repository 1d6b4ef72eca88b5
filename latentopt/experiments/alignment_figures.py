"""Figures of the alignment analysis: trajectories per area, success rates, per-bin dynamics (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

COLOURS = ("tab:blue", "tab:orange")


def draw_trajectories(sessions: Sequence[Any], names: tuple[str, str], **options: Any) -> Any:
    """Mean (± s.e.m.) normalised activation per block, per area, for both generators."""
    from latentopt.analysis.alignment import normalised_trajectories

    areas = sorted({s.area for s in sessions})
    shared = bool(options.get("shared", True))

    normalised = [normalised_trajectories(s.trials, shared=shared) for s in sessions]  # once per session

    def draw(fig: Any) -> None:
        for k, area in enumerate(areas):
            ax = fig.add_subplot(1, len(areas), k + 1)
            for colour, name in zip(COLOURS, names, strict=True):
                rows = [trajectories[name] for s, trajectories in zip(sessions, normalised, strict=True)
                        if s.area == area and name in s.threads]
                if not rows:
                    continue
                length = min(len(r) for r in rows)
                stack = np.stack([r[:length] for r in rows])
                mean = np.nanmean(stack, axis=0)
                sem = np.nanstd(stack, axis=0) / np.sqrt(max(len(rows), 1))
                blocks = np.arange(length)
                ax.plot(blocks, mean, color=colour, label=f"{name} (n {len(rows)})")
                ax.fill_between(blocks, mean - sem, mean + sem, color=colour, alpha=0.25)
            ax.set_title(area, fontsize=9)
            ax.set_xlabel("block")
            if k == 0:
                ax.set_ylabel("normalised activation")
            ax.legend(fontsize=7)

    return draw


def draw_success(table: Sequence[dict[str, Any]], names: tuple[str, str]) -> Any:
    """Success rates per area and generator with their 90 % Clopper-Pearson intervals."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        x = np.arange(len(table))
        for j, (colour, name) in enumerate(zip(COLOURS, names, strict=True)):
            rates = [row[f"{name}_successes"] / max(row[f"{name}_sessions"], 1) for row in table]
            low = [rate - row[f"{name}_ci_lo"] for rate, row in zip(rates, table, strict=True)]
            high = [row[f"{name}_ci_hi"] - rate for rate, row in zip(rates, table, strict=True)]
            ax.bar(x + (j - 0.5) * 0.38, rates, 0.38, yerr=[low, high], color=colour, label=name, capsize=3)
        ax.set_xticks(x, [row["area"] for row in table])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("success rate (90 % CI)")
        ax.legend(fontsize=8)

    return draw


def draw_dynamics(dyn: dict[str, Any], names: tuple[str, str]) -> Any:
    """Per area: mean normalised rate per time bin of the last blocks, FDR-significant bins marked."""

    def draw(fig: Any) -> None:
        for k, (area, d) in enumerate(dyn.items()):
            ax = fig.add_subplot(1, len(dyn), k + 1)
            edges = np.asarray(d["bin_edges_ms"])
            centres = (edges[:-1] + edges[1:]) / 2
            for colour, key, name in zip(COLOURS, ("mean_a", "mean_b"), names, strict=True):
                ax.plot(centres, d[key], color=colour, label=name)
            top = np.nanmax([np.nanmax(d["mean_a"]), np.nanmax(d["mean_b"])])
            marked = centres[np.asarray(d["significant"], dtype=bool)]
            ax.plot(marked, np.full(len(marked), top * 1.05), "k*", markersize=5, label="FDR < 0.05")
            ax.set_title(f"{area} (n {d['sessions']})", fontsize=9)
            ax.set_xlabel("time from image onset (ms)")
            if k == 0:
                ax.set_ylabel("normalised rate")
            ax.legend(fontsize=7)

    return draw
