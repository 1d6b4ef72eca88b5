"""Run a benchmark profile as Hydra multiruns of the ``latentopt`` CLI, then summarise it.

A profile (``profiles/<name>.yaml``) lists overrides common to every run and one or more sweeps
(``key: comma,separated,values``); each sweep is one ``latentopt -m`` call with this folder's
``conf/`` on Hydra's search path (unit, noise and optimizer presets). Runs land in ``OUT/runs/``,
each a normal latentopt run folder; ``summarize.py`` turns them into CSV, a markdown table and plots.

    python benchmarks/suite/run.py --profile quick                 # 2 joblib workers, local
    python benchmarks/suite/run.py --profile quick --workers 1     # the serial baseline
    python benchmarks/suite/run.py --profile full --launcher submitit_local --limit ...  # cluster config, locally
    python benchmarks/suite/run.py --profile full                  # SLURM via submitit

Torch threads per run are ``cpu_count // workers`` (set through ``OMP_NUM_THREADS``) so parallel
runs do not oversubscribe the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
LAUNCHERS = ("basic", "joblib", "submitit_local", "slurm_cluster")


def load_profile(name: str) -> dict[str, Any]:
    path = HERE / "profiles" / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in (HERE / "profiles").glob("*.yaml")))
        raise SystemExit(f"run.py: no profile {name!r} (known: {known})")
    return dict(yaml.safe_load(path.read_text()))


def sweep_commands(
    profile: dict[str, Any], *, launcher: str, workers: int, out: Path, extra: list[str]
) -> list[list[str]]:
    """One ``latentopt -m`` command per sweep of the profile."""
    cli = str(Path(sys.executable).with_name("latentopt"))
    commands = []
    for index, sweep in enumerate(profile["sweeps"]):
        launch = [f"hydra/launcher={launcher}"] if launcher != "basic" else []
        if launcher == "joblib":
            launch.append(f"hydra.launcher.n_jobs={workers}")
        if launcher == "submitit_local":
            launch += [
                f"hydra.launcher.cpus_per_task={max(1, (os.cpu_count() or 1) // workers)}",
                "hydra.launcher.timeout_min=60",
            ]
        commands.append(
            [
                cli,
                "-m",
                f"hydra.searchpath=[file://{HERE / 'conf'}]",
                *launch,
                f"hydra.sweep.dir={out / 'runs' / f'sweep{index}'}",
                "progress=false",
                *profile.get("common", []),
                *(f"{key}={value}" for key, value in sweep.items()),
                *extra,
            ]
        )
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--launcher", choices=LAUNCHERS, default=None, help="default: the profile's")
    parser.add_argument("--workers", type=int, default=None, help="parallel runs (default: the profile's)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<profile>")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--no-summary", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    launcher = args.launcher or profile.get("launcher", "basic")
    workers = int(args.workers or profile.get("workers", 1))
    if launcher == "joblib" and workers == 1:
        launcher = "basic"  # the serial baseline: same runs, one process after another
    out = (args.out or Path("benchmarks/results") / args.profile).resolve()
    commands = sweep_commands(profile, launcher=launcher, workers=workers, out=out, extra=args.overrides)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    for command in commands:
        print(" ".join(command), flush=True)
    if args.dry_run:
        return
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - start
    timing = {
        "profile": args.profile,
        "launcher": launcher,
        "workers": workers,
        "wall_s": wall,
        "omp_num_threads": env["OMP_NUM_THREADS"],
        "cpu_count": os.cpu_count(),
    }
    (out / f"timing_{launcher}_{workers}.json").write_text(json.dumps(timing, indent=1))
    print(f"profile {args.profile}: {wall:.0f} s with {launcher} x {workers}", flush=True)
    if not args.no_summary:
        from summarize import summarize  # type: ignore[import-not-found]

        summarize(out)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
