"""Time of one Kent fit of a manifold tuning map (latentopt.analysis.fit_kent, all its starts included).

Maps are drawn from the Kent function on the published grids (11 x 11 in vivo, 21 x 21 in silico) with peaks
at varied orientations (near e1, oblique, behind the sampled hemisphere, near a pole), noise-free and with
Gaussian noise of 10 % of the map's standard deviation; pure-noise maps are timed too (they are the slowest:
the fit creeps towards a spike). Prints the median, 90th percentile and worst time per case, the median
R², and the numpy and scipy versions; ``--csv`` writes the table.

    python benchmarks/kent_fit.py [--fits 24] [--csv benchmarks/results/kent_fit.csv]

Target: median <= 0.2 s for one 11 x 11 map (noise-free and noisy).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import scipy

from latentopt.analysis import average_poles, fit_kent, grid_angles, grid_directions, kent_function

TARGET_MEDIAN_S = 0.2
PEAKS = [(0.0, 0.0), (60.0, 30.0), (150.0, 20.0), (-150.0, -40.0), (30.0, 80.0), (-90.0, 10.0)]  # (θ, φ) degrees
KAPPAS = (0.5, 2.0, 5.0)


def maps(n_grid: int, kind: str, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` (n_grid², ) response maps, pole columns averaged: kind 'noise-free', 'noisy' or 'pure noise'."""
    angles = grid_angles(n_grid)
    directions = grid_directions(angles, angles).reshape(-1, 3)
    out = []
    for i in range(count):
        if kind == "pure noise":
            values = rng.standard_normal(directions.shape[0])
        else:
            theta, phi = PEAKS[i % len(PEAKS)]
            kappa = KAPPAS[i % len(KAPPAS)]
            values = kent_function(directions, math.radians(theta), math.radians(phi), 0.7, kappa, 0.3 * kappa,
                                   2.0, 0.5)
            if kind == "noisy":
                values = values + rng.normal(0.0, 0.1 * values.std(), values.shape)
        out.append(average_poles(values.reshape(n_grid, n_grid)).reshape(-1))
    return out


def time_case(n_grid: int, kind: str, fits: int, seed: int) -> dict[str, object]:
    """Median, 90th percentile and worst seconds of ``fits`` fits, and their median R²."""
    angles = grid_angles(n_grid)
    directions = grid_directions(angles, angles).reshape(-1, 3)
    seconds, r2 = [], []
    for responses in maps(n_grid, kind, fits, np.random.default_rng(seed)):
        start = time.perf_counter()
        fit = fit_kent(directions, responses)
        seconds.append(time.perf_counter() - start)
        r2.append(fit.r2)
    return {"grid": f"{n_grid}x{n_grid}", "maps": kind, "fits": fits, "median_s": float(np.median(seconds)),
            "p90_s": float(np.percentile(seconds, 90)), "worst_s": float(np.max(seconds)),
            "median_r2": float(np.median(r2))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=24, help="fits per case (>= 20 for the reported median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=None, help="write the table here")
    args = parser.parse_args()
    fit_kent(*_warm_up())  # import-time and first-call costs are not the fit's
    rows = [time_case(n_grid, kind, args.fits, args.seed)
            for n_grid in (11, 21) for kind in ("noise-free", "noisy", "pure noise")]
    print(f"numpy {np.__version__}, scipy {scipy.__version__}; target: median <= {TARGET_MEDIAN_S} s (11x11)")
    print(f"{'grid':>6} {'maps':>11} {'fits':>5} {'median s':>9} {'p90 s':>7} {'worst s':>8} {'median R2':>10}")
    for row in rows:
        print(f"{row['grid']:>6} {row['maps']:>11} {row['fits']:>5} {row['median_s']:>9.3f} {row['p90_s']:>7.3f} "
              f"{row['worst_s']:>8.3f} {row['median_r2']:>10.3f}")
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")


def _warm_up() -> tuple[np.ndarray, np.ndarray]:
    angles = grid_angles(11)
    directions = grid_directions(angles, angles).reshape(-1, 3)
    return directions, kent_function(directions, 0.0, 0.0, 0.0, 2.0, 0.5, 1.0)


if __name__ == "__main__":
    main()
