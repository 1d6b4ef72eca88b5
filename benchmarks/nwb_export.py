"""How long ``latentopt-export nwb`` takes for a long session (issue target: <= 30 s on 2 CPU cores).

Records once (not timed) a 250-generation evolution with 40 evolved images and 4 natural references per block
(11 000 presentations of 10 004 distinct images): the Fourier generator at 64 x 64 (max frequency 3, d = 168),
the analytic Gabor V1 cell, diagonal CMA-ES. Then exports it ``--repeats`` times to a new file each time and
prints the median and every time, the file size and the machine.

    .venv/bin/python benchmarks/nwb_export.py [--generations 250] [--population 40] [--size 64] [--repeats 3]
        [--keep DIR]   (record into DIR and keep it; an existing DIR is reused as it is)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from latentopt.records import library_versions
from latentopt.runtime import maybe_reexec_with_tcmalloc


def session_config(generations: int, population: int, size: int) -> dict[str, Any]:
    return {"seed": 0, "device": "cpu", "progress": False,
            "generator": {"name": "fourier", "image_size": size, "max_frequency": 3, "device": "cpu"},
            "subject": {"name": "gabor_v1", "size": size, "device": "cpu"},
            "objective": {"name": "single_unit"},
            "optimizer": {"name": "cmaes", "population_size": population, "sigma0": 0.5, "diagonal": True},
            "experiment": {"name": "evolve", "generations": generations,
                           "references": ["astronaut", "chelsea", "coffee", "rocket"]}}


def record(run_dir: Path, config: dict[str, Any]) -> float:
    from latentopt.launch import run_experiment

    t0 = time.perf_counter()
    run_experiment(config, run_dir, config_yaml=json.dumps(config))
    return time.perf_counter() - t0


def main() -> None:
    maybe_reexec_with_tcmalloc()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=250)
    parser.add_argument("--population", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    from latentopt.export.nwb import export_nwb

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.keep or Path(tmp) / "session"
        if not (run_dir / "run.json").exists():
            seconds = record(run_dir, session_config(args.generations, args.population, args.size))
            print(f"recorded {run_dir} in {seconds:.1f} s (not timed below)")
        times, size = [], 0
        for k in range(args.repeats):
            out = Path(tmp) / f"export_{k}.nwb"
            t0 = time.perf_counter()
            export_nwb(run_dir, out)
            times.append(time.perf_counter() - t0)
            size = out.stat().st_size
            out.unlink()
        from pynwb import __version__ as pynwb_version

        load = os.getloadavg()[0]
        print(f"nwb export, {args.generations} generations x ({args.population} + 4 references) at "
              f"{args.size} px: median {statistics.median(times):.1f} s over {args.repeats} "
              f"({', '.join(f'{t:.1f}' for t in times)} s); file {size / 1e6:.0f} MB")
        print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f}; pynwb {pynwb_version}; "
              f"{json.dumps(library_versions())}")


if __name__ == "__main__":
    main()
