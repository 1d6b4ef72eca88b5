"""The alignment study in silico: paired-generator sessions for units of the V1, V4 and PIT presets, then the analysis.

    python benchmarks/alignment_study.py --profile quick --out bench_out/alignment   # 30 sessions, ~9 min on 2 cores
    python benchmarks/alignment_study.py --profile full --launcher submitit_slurm --out /scratch/alignment

One Hydra multirun (``latentopt -m experiment=alignment subject.layer=V1,V4,PIT subject.channels=... seed=...``)
runs every session, through the basic launcher (one after another), the joblib launcher (``--launcher joblib
--workers N``) or submitit on a cluster (``--launcher submitit_slurm``): the same command, no code change.
Then ``latentopt-analyze alignment`` tables the sessions per area (``summary.md``, ``alignment.csv``, figures).
The multirun command is printed first, so it can be pasted and run by hand.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

PROFILES = {
    # units per area (channels 0, 7, 14, ...), seeds, blocks; the analysis needs more than 14 blocks
    "quick": {"units": 5, "seeds": 2, "generations": 16},
    "full": {"units": 10, "seeds": 3, "generations": 40},
}


def multirun_command(profile: dict[str, int], args: argparse.Namespace) -> list[str]:
    channels = ",".join(f"[{7 * k}]" for k in range(profile["units"]))
    seeds = ",".join(str(s) for s in range(profile["seeds"]))
    command = [sys.executable, "-m", "latentopt.cli", "-m", "experiment=alignment",
               f"experiment.generators=[{','.join(args.generators)}]", f"subject={args.subject}",
               "subject.layer=V1,V4,PIT", f"subject.channels={channels}", f"seed={seeds}",
               f"experiment.generations={profile['generations']}", "progress=false",
               f"hydra.sweep.dir={args.out / 'sessions'}"]
    if args.launcher == "joblib":
        command += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.workers}"]
    elif args.launcher.startswith("submitit"):
        command += [f"hydra/launcher={args.launcher}", "hydra.launcher.timeout_min=120"]
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, default=Path("bench_out/alignment"))
    parser.add_argument("--launcher", choices=("basic", "joblib", "submitit_local", "submitit_slurm"), default="basic")
    parser.add_argument("--workers", type=int, default=2, help="joblib: parallel sessions")
    parser.add_argument("--subject", default="insilico_dynamic", help="a subject with area presets (subject.layer)")
    parser.add_argument("--generators", nargs=2, default=["fourier", "pixel"])
    args = parser.parse_args()
    command = multirun_command(PROFILES[args.profile], args)
    print(" ".join(command[2:]).replace("latentopt.cli", "latentopt", 1), flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit("the multirun failed (its sessions so far are in the sweep folder)")
    analyze = [sys.executable, "-c", "from latentopt.cli import analyze_main; analyze_main()", "alignment",
               str(args.out / "sessions"), "--out", str(args.out / "analysis"), "--generators", *args.generators]
    if subprocess.run(analyze).returncode != 0:
        raise SystemExit("the analysis failed")
    print((args.out / "analysis" / "summary.md").read_text())


if __name__ == "__main__":
    main()
