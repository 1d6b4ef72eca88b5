"""Manifold tuning in silico: evolve units of the in-silico monkey's V1, V4 and PIT presets, map each on the
three spheres, and tabulate R², κ, β and the ANOVA p per area and sphere.

    python benchmarks/manifold_insilico.py --out bench_out/manifold [--units 3] [--grid 21] [--repeats 2]

Every run goes through the command a user types (``latentopt`` then ``latentopt experiment=manifold``), one
process at a time. The generator is the Fourier generator (no learned weights: DeePSim and BigGAN weights are
not reachable on the machine this was written on, and random-weight generators prove nothing). Writes
``runs.csv`` (one row per unit and sphere) and ``table.md`` (means per area and sphere) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AREAS = ("V1", "V4", "PIT")


def _latentopt(*args: str) -> None:
    command = [sys.executable, "-m", "latentopt.cli", *args, "progress=false"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")


def run_unit(out: Path, area: str, channel: int, args: argparse.Namespace) -> list[dict[str, object]]:
    """Evolve one unit, then map it; one row per sphere."""
    evolution = out / f"{area}_ch{channel}" / "evolution"
    manifold = out / f"{area}_ch{channel}" / "manifold"
    noise = [f"subject.noise.kind={args.noise}", f"subject.noise.level={args.noise_level}"]
    if not (evolution / "summary.json").exists():
        _latentopt(f"subject.layer={area}", f"subject.channels=[{channel}]",
                   f"experiment.generations={args.generations}", f"seed={channel}", *noise,
                   f"hydra.run.dir={evolution}")
    t0 = time.perf_counter()
    if (manifold / "manifold.json").exists() and args.reanalyze:
        _analyze(manifold)
    if not (manifold / "manifold.json").exists():
        _latentopt("experiment=manifold", f"experiment.source={evolution}", f"experiment.grid={args.grid}",
                   f"experiment.repeats={args.repeats}", f"seed={channel}", f"hydra.run.dir={manifold}")
    seconds = time.perf_counter() - t0
    analysis = json.loads((manifold / "manifold.json").read_text())
    rows = []
    for sphere in analysis["spheres"]:
        rows.append({"area": area, "channel": channel, "sphere": sphere["name"], "r2": sphere["r2"],
                     "adj_r2": sphere["adj_r2"], "kappa": sphere["kappa"], "beta": sphere["beta"],
                     "anova_p": sphere["anova_p"], "noise_ceiling": sphere["noise_ceiling"],
                     "at_bound": sphere["message"].startswith("baseline at its bound"),
                     "converged": sphere["ok"], "manifold_s": round(seconds, 1)})
    return rows


def _analyze(manifold: Path) -> None:
    """Re-fit a recorded manifold with this checkout's analysis (``latentopt-analyze manifold``)."""
    command = [sys.executable, "-c", "from latentopt.cli import analyze_main; analyze_main()", "manifold",
               str(manifold)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")


def _mean(rows: list[dict[str, object]], key: str) -> str:
    values = np.array([np.nan if r[key] is None else float(r[key]) for r in rows])  # type: ignore[arg-type]
    return "n/a" if not np.isfinite(values).any() else f"{np.nanmean(values):.3g}"


def _median(rows: list[dict[str, object]], key: str) -> str:
    values = np.array([np.nan if r[key] is None else float(r[key]) for r in rows])  # type: ignore[arg-type]
    return "n/a" if not np.isfinite(values).any() else f"{np.nanmedian(values):.2g}"


def table(rows: list[dict[str, object]]) -> str:
    spheres = list(dict.fromkeys(str(r["sphere"]) for r in rows))
    lines = ["| area | sphere | units | mean R² | mean κ | mean β | median ANOVA p | maps R² > 0.5 | κ at the "
             "baseline bound |", "|---|---|---|---|---|---|---|---|---|"]
    for area in AREAS:
        for sphere in spheres:
            mine = [r for r in rows if r["area"] == area and r["sphere"] == sphere]
            if not mine:
                continue
            good = sum(1 for r in mine if r["r2"] is not None and float(r["r2"]) > 0.5)  # type: ignore[arg-type]
            lines.append(f"| {area} | {sphere} | {len(mine)} | {_mean(mine, 'r2')} | {_mean(mine, 'kappa')} | "
                         f"{_mean(mine, 'beta')} | {_median(mine, 'anova_p')} | {good}/{len(mine)} | "
                         f"{sum(1 for r in mine if r['at_bound'])}/{len(mine)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out/manifold"))
    parser.add_argument("--units", type=int, default=3, help="units per area (channels 0, 7, 14, ...)")
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--grid", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--noise", default="multiplicative")
    parser.add_argument("--noise-level", type=float, default=0.2)
    parser.add_argument("--reanalyze", action="store_true",
                        help="re-fit manifolds already recorded in --out (latentopt-analyze) instead of skipping them")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for area in AREAS:
        for k in range(args.units):
            rows += run_unit(args.out, area, 7 * k, args)
            print(f"{area} channel {7 * k}: " + ", ".join(f"{r['sphere']} R² {r['r2']}" for r in rows[-3:]),
                  flush=True)
    with (args.out / "runs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
