"""How long the one-page run report (``report.html``) takes for a long session (target: <= 5 s for 250 generations).

Makes a 250-generation evolution with fast components (a 64-px Fourier generator, the analytic Gabor V1 cell,
a GA of 20, the four default natural references in every block) in a temporary folder, or uses ``--run`` if
given, then times :func:`latentopt.html_report.write_html_report` ``--repeats`` times in this process and
prints the median, beside the first call in a fresh process (the command ``latentopt-report``, imports included).

    .venv/bin/python benchmarks/report_speed.py [--generations 250] [--repeats 3] [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latentopt.runtime import maybe_reexec_with_tcmalloc, runtime_info


def session_config(generations: int) -> dict:
    return {"seed": 0, "device": "cpu", "progress": False,
            "generator": {"name": "fourier", "image_size": 64, "max_frequency": 3, "device": "cpu"},
            "subject": {"name": "gabor_v1", "size": 64, "device": "cpu"},
            "objective": {"name": "single_unit"},
            "optimizer": {"name": "ga", "population_size": 20, "n_elite": 5},
            "experiment": {"name": "evolve", "generations": generations,
                           "references": ["astronaut", "chelsea", "coffee", "rocket"]}}


def make_session(folder: Path, generations: int) -> float:
    """Run the session into ``folder``; the seconds it took (its end writes report.html once as well)."""
    from latentopt.launch import run_experiment

    config = session_config(generations)
    t0 = time.perf_counter()
    run_experiment(config, folder, config_yaml=json.dumps(config))
    return time.perf_counter() - t0


def main() -> None:
    maybe_reexec_with_tcmalloc()
    parser = argparse.ArgumentParser()
    parser.add_argument("--generations", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", type=Path, default=None, help="time this run folder instead of a new session")
    args = parser.parse_args()
    from latentopt.html_report import write_html_report

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or Path(tmp) / "session"
        session_s = None if args.run else make_session(run, args.generations)
        out = Path(tmp) / "page"
        out.mkdir()
        times = []
        for k in range(args.repeats):
            t0 = time.perf_counter()
            path = write_html_report(run, out=out / f"report_{k}.html")
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from latentopt.html_report.cli import main; main()", str(run),
                        "--out", str(out / "cli.html")], check=True, capture_output=True)
        command_s = time.perf_counter() - t0
        from latentopt.run_record import load_run

        print(json.dumps({"run": str(args.run or "a new session"), "generations": load_run(run).generations,
                          "session_s": session_s, "report_s": times, "median_report_s": statistics.median(times),
                          "command_s_with_imports": command_s, "page_bytes": path.stat().st_size,
                          "runtime": runtime_info()}, indent=2, default=str))


if __name__ == "__main__":
    main()
