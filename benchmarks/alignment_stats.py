"""Time of the paired-generator alignment statistics over a whole synthetic data set (latentopt.analysis).

Builds 150 sessions x 2 threads (DeePSim, BigGAN) x 40 blocks of ~40 trials (36-44, a few images not shown)
with PSTHs of 20 bins of 10 ms (0-200 ms): a baseline of 5, a response from 50 ms whose amplitude rises over
blocks in one thread and less in the other, Poisson-like noise. Times, per run:

- evoked: single-trial evoked responses of every block (evoked_trials);
- sessions: session_summary of every session (drop a short last block, success, normalisation, time constant);
- binning: bin_trajectories and universal_normaliser of every session;
- per block: per_block_paired_tests for each of the 20 time bins (40 blocks, 150 sessions);
- attribution: temporal_attribution of the last block (20 bins).

Prints the median of ``--runs`` (3) runs per stage and of the total, with the numpy and scipy versions.

    python benchmarks/alignment_stats.py [--runs 3] [--sessions 150] [--csv benchmarks/results/alignment_stats.csv]

Target: total median <= 10 s.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import scipy

from latentopt.analysis import (
    bin_trajectories,
    evoked_trials,
    per_block_paired_tests,
    rebinned_edges,
    session_summary,
    temporal_attribution,
    universal_normaliser,
)

TARGET_TOTAL_S = 10.0
BLOCKS, TIME_BINS, TRIALS = 40, 20, 40
EDGES = np.arange(0.0, 201.0, 10.0)
THREADS = ("DeePSim", "BigGAN")

Session = dict[str, list[np.ndarray]]
T = TypeVar("T")


def synthetic_sessions(count: int, rng: np.random.Generator) -> list[Session]:
    """``count`` sessions of ``{thread: [per block (trials, 20) rates per 10 ms bin]}``."""
    late = (EDGES[:-1] >= 50.0).astype(float)
    sessions = []
    for _ in range(count):
        session: Session = {}
        for gain in rng.uniform(0.0, 1.5, 2):
            amplitude = 10.0 + 10.0 * gain * np.minimum(np.arange(BLOCKS) / 25.0, 1.0)
            blocks = []
            for level in amplitude:
                mean = 5.0 + level * late
                trials = rng.normal(mean, np.sqrt(mean), (int(rng.integers(TRIALS - 4, TRIALS + 5)), TIME_BINS))
                trials[rng.random(trials.shape[0]) < 0.03] = np.nan  # images not shown
                blocks.append(trials)
            session[THREADS[len(session)]] = blocks
        sessions.append(session)
    return sessions


def analyse(sessions: list[Session]) -> dict[str, float]:
    """Seconds of each stage of the analysis of every session."""
    seconds: dict[str, float] = {}

    def timed(stage: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        out = work()
        seconds[stage] = time.perf_counter() - start
        return out

    evoked = timed("evoked", lambda: [{name: [evoked_trials(block, EDGES) for block in blocks]
                                       for name, blocks in session.items()} for session in sessions])
    summaries = timed("sessions", lambda: [session_summary(threads) for threads in evoked])

    def binning() -> np.ndarray:
        binned = np.full((len(sessions), 2, BLOCKS, TIME_BINS), np.nan)
        for i, session in enumerate(sessions):
            trajectories = bin_trajectories(session, EDGES)
            normaliser = universal_normaliser(session, EDGES)
            for j, name in enumerate(THREADS):
                binned[i, j] = trajectories[name] / normaliser
        return binned

    binned = timed("binning", binning)
    assert len(summaries) == len(sessions)
    timed("per block", lambda: [per_block_paired_tests(binned[:, 0, :, k], binned[:, 1, :, k])
                                for k in range(TIME_BINS)])
    timed("attribution", lambda: temporal_attribution(binned[:, 0, -1], binned[:, 1, -1], rebinned_edges()))
    seconds["total"] = sum(seconds.values())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=None, help="write the table here")
    args = parser.parse_args()
    sessions = synthetic_sessions(args.sessions, np.random.default_rng(args.seed))
    analyse(sessions[:2])  # import-time and first-call costs are not the analysis'
    runs = [analyse(sessions) for _ in range(args.runs)]
    rows = [{"stage": stage, "median_s": float(np.median([run[stage] for run in runs])),
             "worst_s": float(np.max([run[stage] for run in runs]))} for stage in runs[0]]
    print(f"numpy {np.__version__}, scipy {scipy.__version__}; {args.sessions} sessions x 2 threads x {BLOCKS} "
          f"blocks x {TIME_BINS} bins, ~{TRIALS} trials; median of {args.runs} runs; target total <= "
          f"{TARGET_TOTAL_S:g} s")
    print(f"{'stage':>12} {'median s':>9} {'worst s':>8}")
    for row in rows:
        print(f"{row['stage']:>12} {row['median_s']:>9.3f} {row['worst_s']:>8.3f}")
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
