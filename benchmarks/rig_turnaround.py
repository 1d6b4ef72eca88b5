"""Block turnaround at the rig: from the response file complete to the next block's images written.

A simulated rig (``latentopt-rigsim``, its own process) answers each block with a MATLAB v7.3 file
and logs when the file was complete; latentopt (this process) notes in each block record when the
manifest of the block (the commit point, written after the images) was in place. The turnaround of
block g+1 is ``manifest_written_at(g+1) - response_complete_at(g)``: noticing the file (poll +
settle), reading it, scoring, the optimizer's tell and ask, recording the generation, generating
the images and writing them as PNGs. Population 40 (Ponce et al. 2019), one thread, diagonal CMA:
``sep_cma`` (latentopt_cmafamily) when installed, else pycma's diagonal ``cmaes``, whose pickled
state grows ~2.6 MB per generation at d = 4096 and so slows every record write as a session goes on.

Generator: DeePSim fc6 with random weights (same architecture and cost as the real one) when the
``latentopt_deepsim`` plugin is installed, else the 224-px Fourier generator; ``--generator``
chooses. Prints a table, writes CSV and JSON next to this file (``results/``).

    .venv/bin/python benchmarks/rig_turnaround.py [--generator deepsim|fourier] [--blocks 12] [--png-compression 0]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from latentopt_rig.subject import RigSubject

from latentopt.builtins.objectives import SingleUnit
from latentopt.experiment import Thread
from latentopt.experiments.evolve import Evolution
from latentopt.plugins import default_registry
from latentopt.records import RunWriter, library_versions, load_generation
from latentopt.runtime import maybe_reexec_with_tcmalloc, runtime_info

RESULTS = Path(__file__).resolve().parent / "results"


def make_generator(name: str, tmp: Path) -> Any:
    if name == "deepsim":
        import torch
        from latentopt_deepsim.generator import DeePSimGenerator
        from latentopt_deepsim.testing import random_state_dict

        weights = tmp / "upconvGAN_fc6.pt"
        torch.save(random_state_dict("fc6"), weights)
        return DeePSimGenerator(variant="fc6", weights=str(weights), download=False, device="cpu")
    from latentopt.builtins.generators import FourierGenerator

    return FourierGenerator(image_size=224, max_frequency=10, device="cpu")


def main() -> None:
    maybe_reexec_with_tcmalloc()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "deepsim" if importlib.util.find_spec("latentopt_deepsim") else "fourier"
    parser.add_argument("--generator", choices=("deepsim", "fourier"), default=default)
    optimizers = default_registry().names("optimizers")
    parser.add_argument(
        "--optimizer", choices=("sep_cma", "cmaes"), default="sep_cma" if "sep_cma" in optimizers else "cmaes"
    )
    parser.add_argument("--blocks", type=int, default=12, help="generations; the first 2 are warm-up")
    parser.add_argument("--population-size", type=int, default=40)
    parser.add_argument("--poll-s", type=float, default=0.025, help="subject.poll_s (config default 0.025)")
    parser.add_argument("--settle-s", type=float, default=0.1, help="subject.settle_s (config default 0.1)")
    parser.add_argument("--png-compression", type=int, default=0, help="subject.png_compression (default 0)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        exchange, run_dir, log = tmp / "exchange", tmp / "run", tmp / "rigsim.jsonl"
        exchange.mkdir()
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "latentopt_rig.simcli",
                str(exchange),
                "--quiet",
                "--poll-s",
                "0.01",
                "--log",
                str(log),
                "--subject",
                "gabor_v1",
            ]
        )
        try:
            generator = make_generator(args.generator, tmp)
            initial = generator.initial_codes(args.population_size, rng=np.random.default_rng(0))
            kwargs: dict[str, Any] = {"diagonal": True, "sigma0": 1.0} if args.optimizer == "cmaes" else {}
            optimizer = default_registry().build("optimizers", args.optimizer, initial, seed=0, **kwargs)
            subject = RigSubject(
                exchange=exchange,
                poll_s=args.poll_s,
                settle_s=args.settle_s,
                timeout_s=120,
                png_compression=args.png_compression,
            )
            writer = RunWriter(run_dir)
            writer.start(config_yaml="benchmark: rig_turnaround\n", provenance={})
            Evolution(
                [Thread("main", generator, optimizer, SingleUnit())], subject, generations=args.blocks, recorder=writer
            ).run()
        finally:
            sim.terminate()
            sim.wait()
        complete = {e["label"]: e["complete_at"] for e in map(json.loads, log.read_text().splitlines())}
        rows = []
        for g in range(1, args.blocks):
            record = load_generation(run_dir, g)
            previous = load_generation(run_dir, g - 1)["subject"]
            seen_at = previous[f"attempt_{previous['attempts'] - 1}"]
            rows.append(
                {
                    "block": g,
                    "turnaround_s": record["subject"]["attempt_0"]["manifest_written_at"] - complete[seen_at["label"]],
                    "noticed_s": seen_at["response_read_at"] - complete[seen_at["label"]],
                    "generator_s": record["meta"]["timings"]["generator_s"],
                    "optimizer_s": record["meta"]["timings"]["optimizer_s"],
                }
            )
    measured = rows[1:]  # block 1's turnaround includes first-call warm-up
    median = statistics.median(r["turnaround_s"] for r in measured)
    summary = {
        "generator": args.generator,
        "population_size": args.population_size,
        "blocks_measured": len(measured),
        "poll_s": args.poll_s,
        "settle_s": args.settle_s,
        "png_compression": args.png_compression,
        "median_turnaround_s": median,
        "median_turnaround_minus_generator_s": statistics.median(
            r["turnaround_s"] - r["generator_s"] for r in measured
        ),
        "max_turnaround_s": max(r["turnaround_s"] for r in measured),
        "median_generator_s": statistics.median(r["generator_s"] for r in measured),
        "median_noticed_s": statistics.median(r["noticed_s"] for r in measured),
        "median_optimizer_s": statistics.median(r["optimizer_s"] for r in measured),
        "optimizer": optimizer.provenance(),
        "versions": library_versions(),
        "runtime": runtime_info(),
    }
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"rig_turnaround_{args.generator}.csv", "w", newline="") as handle:
        writer_csv = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer_csv.writeheader()
        writer_csv.writerows(rows)
    (RESULTS / f"rig_turnaround_{args.generator}.json").write_text(json.dumps(summary, indent=2, default=str))
    print("| block | turnaround s | file noticed and read s | generator s | optimizer s |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['block']} | {r['turnaround_s']:.3f} | {r['noticed_s']:.3f} | {r['generator_s']:.3f} | "
            f"{r['optimizer_s']:.3f} |"
        )
    print(
        f"\n{args.generator}, {args.optimizer}, {args.population_size} images, poll {args.poll_s} s, settle "
        f"{args.settle_s} s, png level {args.png_compression}: median turnaround {median:.3f} s over "
        f"{len(measured)} blocks (target <= 1 s); "
        f"without the generator's forward pass {summary['median_turnaround_minus_generator_s']:.3f} s"
    )


if __name__ == "__main__":
    main()
