"""Speed and memory of the DeePSim and BigGAN-deep generators for one generation of images.

Each configuration runs in a fresh subprocess (so its peak resident memory is its own), on weights
of the real architecture with random values, written to a temporary folder and loaded by the real
loader (or on real weights: ``--deepsim-weights FILE``, ``--biggan-weights FOLDER``). Reported: the
median over ``--repeats`` runs of seconds per image when generating ``--n`` images in chunks of
``batch_size``, and the peak RSS. The same run measures the machine's float32 matmul throughput, so
figures from a busy machine can be read against it.

Run with tcmalloc, as the CLI does::

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/generator_speed.py
    python benchmarks/generator_speed.py --generator biggan --tail-batch-sizes 40,10,5 --reference
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    folder = Path(spec["folder"])
    if spec["generator"] == "deepsim":
        from latentopt_deepsim import DeePSimGenerator

        weights = spec.get("weights") or str(folder / "upconvGAN_fc6.pt")
        gen: Any = DeePSimGenerator(variant="fc6", weights=weights, device="cpu", batch_size=spec["batch_size"])
    elif spec.get("reference"):
        return _reference_worker(spec)
    else:
        from latentopt_biggan import BigGANGenerator

        weights = spec.get("weights") or str(folder / "biggan")
        gen = BigGANGenerator(model=spec["model"], weights=weights, device="cpu", batch_size=spec["n"],
                              tail_batch_size=spec["batch_size"], download=False)
    codes = gen.initial_codes(spec["n"], rng=np.random.default_rng(0))
    gen.generate(codes[: spec["batch_size"]])  # warm-up: oneDNN picks its kernels on first use
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        images = gen.generate(codes)
        times.append((time.perf_counter() - start) / spec["n"])
    assert torch.isfinite(images).all()
    return {"s_per_image": float(np.median(times)), "all": times,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def _reference_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The library's own forward, unmodified (spectral-norm hooks, five-pass batch norm, 128-channel
    ``conv_to_rgb``): the baseline the prepared network is compared with."""
    import numpy as np
    import torch

    from latentopt_biggan import loading

    folder = Path(spec.get("weights") or Path(spec["folder"]) / "biggan")
    network = loading.load_model(folder / "config.json", folder / "pytorch_model.bin", spec["model"]).eval()
    codes = torch.randn(spec["n"], 256) * 0.5
    times = []
    with torch.inference_mode():
        network.generator(codes[: spec["batch_size"]], 0.7)
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            for part in codes.split(spec["batch_size"]):
                network.generator(part, 0.7)
            times.append((time.perf_counter() - start) / spec["n"])
    return {"s_per_image": float(np.median(times)), "all": times,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def matmul_gflops() -> float:
    """float32 2048x2048 matmul throughput on this machine now (median of 5)."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / sorted(times)[2] / 1e9


def _prepare(folder: Path, generators: list[str], model: str, args: argparse.Namespace) -> None:
    if "deepsim" in generators and not args.deepsim_weights:
        from latentopt_deepsim.testing import write_random_weights

        write_random_weights(folder / "upconvGAN_fc6.pt", "fc6")
    if "biggan" in generators and not args.biggan_weights:
        from latentopt_biggan.loading import RESOLUTIONS
        from latentopt_biggan.testing import official_config, write_random_model

        write_random_model(folder / "biggan", official_config(RESOLUTIONS[model]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=["deepsim", "biggan", "all"], default="all")
    parser.add_argument("--model", default="biggan-deep-256")
    parser.add_argument("--n", type=int, default=40, help="images per generation")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--deepsim-batch-sizes", default="40,20")
    parser.add_argument("--tail-batch-sizes", default="40,20,10,5",
                        help="BigGAN: images per pass through the layers at 64x64 and above (the low-resolution "
                        "layers take the whole generation)")
    parser.add_argument("--reference", action="store_true", help="also time the library's own BigGAN forward")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--deepsim-weights", help="a real upconvGAN_fc6.pt")
    parser.add_argument("--biggan-weights", help="a real folder with config.json + pytorch_model.bin")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        print(json.dumps(_worker(json.loads(args._worker))))
        return

    import torch

    generators = ["deepsim", "biggan"] if args.generator == "all" else [args.generator]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="latentopt-bench-") as tmp:
        _prepare(Path(tmp), generators, args.model, args)
        jobs: list[dict[str, Any]] = []
        for name in generators:
            sizes = args.deepsim_batch_sizes if name == "deepsim" else args.tail_batch_sizes
            for size in (int(s) for s in sizes.split(",")):
                jobs.append({"generator": name, "batch_size": size})
            if name == "biggan" and args.reference:
                jobs.append({"generator": name, "batch_size": args.n, "reference": True})
        for job in jobs:
            spec = {**job, "folder": tmp, "n": args.n, "repeats": args.repeats, "model": args.model,
                    "threads": args.threads,
                    "weights": args.deepsim_weights if job["generator"] == "deepsim" else args.biggan_weights}
            out = subprocess.run([sys.executable, __file__, "--_worker", json.dumps(spec)], capture_output=True,
                                 text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            label = "deepsim fc6" if job["generator"] == "deepsim" else args.model
            if job.get("reference"):
                label += " (library forward)"
            elif job["generator"] == "biggan":
                label += " (tail chunks)"
            row = {"generator": label, "batch_size": job["batch_size"], "s_per_image": result["s_per_image"],
                   "ms_per_image": 1000 * result["s_per_image"], "peak_rss_gb": result["peak_rss_gb"],
                   "runs_s_per_image": " ".join(f"{t:.4f}" for t in result["all"])}
            rows.append(row)
            print(f"{label:38s} batch {job['batch_size']:3d}: {row['ms_per_image']:8.1f} ms/image (median of "
                  f"{args.repeats}), peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)
    print(f"\ntorch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
          f"tcmalloc {'tcmalloc' in os.environ.get('LD_PRELOAD', '')}, load average {os.getloadavg()[0]:.2f}, "
          f"float32 matmul {matmul_gflops():.0f} GFLOPS now, generation of {args.n}")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
