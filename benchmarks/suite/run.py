"""Run a benchmark profile as Hydra multiruns of the ``latentopt`` CLI, then summarise it.

A profile (``profiles/<name>.yaml``) lists overrides common to every run and one or more sweeps
(``key: comma,separated,values``); each sweep is one ``latentopt -m`` call with this folder's
``conf/`` on Hydra's search path (subject, noise and optimizer presets). Runs land in ``OUT/runs/``,
each a normal latentopt run folder; ``summarize.py`` turns them into CSV, a markdown table and plots.

    python benchmarks/suite/run.py --profile quick                 # workers: auto (see resolve_workers)
    python benchmarks/suite/run.py --profile quick --workers 2     # 2 joblib workers x 1 thread
    python benchmarks/suite/run.py --profile full --launcher submitit_local --workers 2  # cluster config, locally
    python benchmarks/suite/run.py --profile full                  # SLURM via submitit

Sweeps that need real generator weights (``weight_sweeps`` in a profile: DeePSim, BigGAN) run only
when those weights are on this machine (the cache or the library's cache; nothing is downloaded):
random-weight generators prove nothing about optimizers. Which ran and why the others did not is
printed, written to ``OUT/generators.json`` and repeated in ``summary.md``.

A profile's ``metrics`` (name: ``latentopt-geometry compute`` arguments) are computed first, into
``OUT/metrics/<name>.npz`` (reused when present); sweeps name them as ``{metrics}/<name>.npz``
(``optimizer.metric`` of ``bench_hessian_cma``).

Torch threads per run are ``cpu_count // workers`` (``--threads`` to change; set through
``OMP_NUM_THREADS``) so parallel runs do not oversubscribe the cores. ``workers: auto`` (the quick
profile's) is ``cpu_count // 2`` runs of two
threads, and at least two runs on 2 or 3 cores. Measured on 2 cores, quick profile (runs only,
CNN subject's batches of 10): two 1-thread joblib workers 499 s and 494 s against 549 s and 519 s for
one 2-thread run at a time (1.10x, 1.05x; an earlier session: 578 s vs 579 s) and 924 s for one
1-thread run (1.85x). With batches of 40 the threads won (653 s against 772 s): the forward pass
cost 8.1 ms/image with 2 threads, 19.8 ms/image in each of two concurrent 1-thread processes. On 2
cores processes gain little over threads; they pay off with cores to spare, and on a cluster
through submitit.
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
    """A profile by name (``profiles/<name>.yaml``) or by the path of a YAML file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else HERE / "profiles" / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in (HERE / "profiles").glob("*.yaml")))
        raise SystemExit(f"run.py: no profile {name!r} (known: {known})")
    return dict(yaml.safe_load(path.read_text()))


def resolve_workers(value: int | str) -> int:
    """Parallel runs: a number, or ``auto`` = ``cpu_count // 2`` runs of two torch threads each, but at
    least two runs where there are two cores (on 2 cores two 1-thread runs beat one 2-thread run)."""
    if value == "auto":
        cores = os.cpu_count() or 1
        return max(min(2, cores), cores // 2)
    try:
        workers = int(value)
    except (TypeError, ValueError):
        raise SystemExit(f"run.py: workers must be a number or 'auto', got {value!r}") from None
    if workers < 1:
        raise SystemExit(f"run.py: workers must be >= 1, got {workers}")
    return workers


def weights_missing(generator: str) -> str | None:
    """None when the real weights of a generator config (``deepsim_<variant>``, ``biggan_deep_<size>``)
    are on this machine, else why not. Looks in the caches only; never downloads."""
    try:
        if generator.startswith("deepsim_"):
            from latentopt_deepsim import weights as deepsim_weights

            deepsim_weights.resolve(generator.removeprefix("deepsim_"), None, allow_download=False)
        elif generator.startswith("biggan_deep_"):
            from latentopt_biggan import loading

            loading.resolve("biggan-deep-" + generator.removeprefix("biggan_deep_"), None, allow_download=False)
        else:
            return f"{generator}: not a generator with downloadable weights (deepsim_*, biggan_deep_*)"
    except Exception as err:  # WeightsUnavailable, or the plugin is not installed
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def planned_sweeps(profile: dict[str, Any]) -> tuple[list[tuple[list[str], dict[str, Any]]], dict[str, str]]:
    """``[(common overrides, sweep)]`` to run, and the status of every weight-gated generator.

    ``sweeps`` always run with the profile's ``common``. Each ``weight_sweeps`` entry
    (``generator``, ``overrides``, ``sweep``) runs with its own overrides only when the generator's
    real weights are present."""
    planned = [(list(profile.get("common", [])), dict(sweep)) for sweep in profile["sweeps"]]
    status: dict[str, str] = {}
    for entry in profile.get("weight_sweeps", []) or []:
        generator = str(entry["generator"])
        missing = weights_missing(generator)
        if missing is None:
            status[generator] = "included (real weights in the cache)"
            planned.append((list(entry.get("overrides", [])), {"generator": generator, **entry["sweep"]}))
        else:
            status[generator] = f"not run: {missing}"
    return planned, status


def metric_commands(profile: dict[str, Any], out: Path) -> list[tuple[Path, list[str]]]:
    """``(file, latentopt-geometry compute command)`` for each of the profile's ``metrics``.

    A profile's ``metrics`` maps a name to the arguments of ``latentopt-geometry compute`` (generator
    overrides and flags, ``--out`` left out); the file is ``<out>/metrics/<name>.npz``, and ``{metrics}``
    in a sweep's or ``common``'s values is that folder, e.g. ``optimizer.metric: "{metrics}/fourier224.npz"``.
    """
    cli = str(Path(sys.executable).with_name("latentopt-geometry"))
    commands = []
    for name, arguments in (profile.get("metrics") or {}).items():
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            raise SystemExit(f"run.py: metrics.{name} must be a list of latentopt-geometry compute arguments")
        target = out / "metrics" / f"{name}.npz"
        commands.append((target, [cli, "compute", *arguments, "--out", str(target)]))
    return commands


Planned = list[tuple[list[str], dict[str, Any]]]


def with_metrics_folder(planned: Planned, folder: Path) -> Planned:
    """``planned`` with ``{metrics}`` in every override and sweep value replaced by ``folder``."""

    def fill(value: Any) -> Any:
        return value.replace("{metrics}", str(folder)) if isinstance(value, str) else value

    return [([fill(o) for o in common], {key: fill(v) for key, v in sweep.items()}) for common, sweep in planned]


def sweep_commands(
    planned: list[tuple[list[str], dict[str, Any]]], *, launcher: str, workers: int, out: Path, extra: list[str]
) -> list[list[str]]:
    """One ``latentopt -m`` command per planned sweep."""
    cli = str(Path(sys.executable).with_name("latentopt"))
    commands = []
    for index, (common, sweep) in enumerate(planned):
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
                *common,
                *(f"{key}={value}" for key, value in sweep.items()),
                *extra,
            ]
        )
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--launcher", choices=LAUNCHERS, default=None, help="default: the profile's")
    parser.add_argument("--workers", default=None, help="parallel runs, or auto (default: the profile's)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<profile>")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: cpu_count // workers)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--no-summary", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    launcher = args.launcher or profile.get("launcher", "basic")
    workers = resolve_workers(args.workers or profile.get("workers", 1))
    if launcher == "joblib" and workers == 1:
        launcher = "basic"  # the serial baseline: same runs, one process after another
    out = (args.out or Path("benchmarks/results") / Path(args.profile).stem).resolve()
    planned, generators = planned_sweeps(profile)
    planned = with_metrics_folder(planned, out / "metrics")
    metrics = metric_commands(profile, out)
    commands = sweep_commands(planned, launcher=launcher, workers=workers, out=out, extra=args.overrides)
    for generator, status in generators.items():
        print(f"{generator}: {status}", flush=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for _, command in metrics:
        print(" ".join(command), flush=True)
    for command in commands:
        print(" ".join(command), flush=True)
    if args.dry_run:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "generators.json").write_text(json.dumps(generators, indent=1))
    start = time.perf_counter()
    for target, command in metrics:  # the generators' metrics, before the sweeps that read them
        if target.exists():
            print(f"metric {target}: reused (delete it to compute it again)", flush=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(command, check=True, env={**os.environ})
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
    label = f"timing_{launcher}_{workers}x{threads}.json"
    (out / label).write_text(json.dumps(timing, indent=1))
    print(f"profile {args.profile}: {wall:.0f} s with {launcher} x {workers} ({threads} threads each)", flush=True)
    if not args.no_summary:
        # the profile's gradient-reference settings; summarize.py's defaults where it has none
        reference = [f"--{key.replace('_', '-')}={profile[key]}" for key in ("gradient_steps", "gradient_lr")
                     if key in profile]
        subprocess.run([sys.executable, str(HERE / "summarize.py"), str(out), *reference], check=True)
        total = time.perf_counter() - start
        timing["total_with_summary_s"] = total
        (out / label).write_text(json.dumps(timing, indent=1))
        print(f"profile {args.profile}: {total:.0f} s including the summary", flush=True)


if __name__ == "__main__":
    main()
