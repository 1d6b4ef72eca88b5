"""Speed and memory of the DeePSim and BigGAN-deep generators for one generation of images.

Weights have the real architecture and random values, written to a temporary folder and loaded by
the real loader (or real weights: ``--deepsim-weights FILE``, ``--biggan-weights FOLDER``).

* Time: for each generator, one process generates a generation of ``--n`` images ``--repeats``
  times with every batch configuration in turn (round robin), so a busy machine slows all of them
  alike; reported is the median seconds per image of each configuration, and its ratio to the
  first one. ``--reference`` adds the library's own BigGAN forward to the rotation.
* Memory: each configuration generates one generation in a fresh process; reported is its peak RSS.
* The machine: load average and float32 matmul throughput, measured in the same run.

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


def _build(spec: dict[str, Any]) -> Any:
    folder = Path(spec["folder"])
    if spec["generator"] == "deepsim":
        from latentopt_deepsim import DeePSimGenerator

        weights = spec.get("weights") or str(folder / "upconvGAN_fc6.pt")
        return DeePSimGenerator(variant="fc6", weights=weights, device="cpu")
    from latentopt_biggan import BigGANGenerator

    weights = spec.get("weights") or str(folder / "biggan")
    return BigGANGenerator(model=spec["model"], weights=weights, device="cpu", batch_size=spec["n"], download=False)


def _configure(gen: Any, spec: dict[str, Any], size: int) -> None:
    """DeePSim: images per pass; BigGAN: images per pass through the high-resolution layers."""
    if spec["generator"] == "deepsim":
        gen.batch_size = size
    else:
        gen.network.tail_batch_size = size


def _reference(spec: dict[str, Any]) -> Any:
    """The library's own forward, unmodified (spectral-norm hooks, five-pass batch norm, 128-channel
    ``conv_to_rgb``), on the whole generation: the baseline."""
    import torch
    from latentopt_biggan import loading

    folder = Path(spec.get("weights") or Path(spec["folder"]) / "biggan")
    network = loading.load_model(folder / "config.json", folder / "pytorch_model.bin", spec["model"]).eval()

    def run(codes: Any) -> Any:
        with torch.inference_mode():
            return network.generator(torch.as_tensor(codes), 0.7)

    return run


def _time_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    gen = _build(spec)
    codes = gen.initial_codes(spec["n"], rng=np.random.default_rng(0))
    runs: dict[str, Any] = {}
    for size in spec["sizes"]:
        _configure(gen, spec, size)
        runs[str(size)] = lambda: gen.generate(codes)
    if spec.get("reference"):
        forward = _reference(spec)
        runs["library"] = lambda: forward(codes)
    times: dict[str, list[float]] = {key: [] for key in runs}
    for key, run in runs.items():  # warm-up: oneDNN picks its kernels on first use of a shape
        if key != "library":
            _configure(gen, spec, int(key))
        run()
    for _ in range(spec["repeats"]):
        for key, run in runs.items():
            if key != "library":
                _configure(gen, spec, int(key))
            start = time.perf_counter()
            images = run()
            times[key].append((time.perf_counter() - start) / spec["n"])
            assert torch.isfinite(images).all()
    return {key: {"median": float(np.median(values)), "all": values} for key, values in times.items()}


def _memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    if spec.get("library"):
        forward = _reference(spec)
        forward(np.random.default_rng(0).standard_normal((spec["n"], 256)).astype(np.float32) * 0.5)
    else:
        gen = _build(spec)
        _configure(gen, spec, spec["size"])
        gen.generate(gen.initial_codes(spec["n"], rng=np.random.default_rng(0)))
    return {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


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


def _subprocess(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, f"--_{mode}", json.dumps(spec)], capture_output=True,
                         text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=["deepsim", "biggan", "all"], default="all")
    parser.add_argument("--model", default="biggan-deep-256")
    parser.add_argument("--n", type=int, default=40, help="images per generation")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--deepsim-batch-sizes", default="40,20,10")
    parser.add_argument("--tail-batch-sizes", default="20,10,40,5",
                        help="BigGAN: images per pass through the layers at 64x64 and above (the low-resolution "
                        "layers take the whole generation)")
    parser.add_argument("--reference", action="store_true", help="also time the library's own BigGAN forward")
    parser.add_argument("--deepsim-weights", help="a real upconvGAN_fc6.pt")
    parser.add_argument("--biggan-weights", help="a real folder with config.json + pytorch_model.bin")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    parser.add_argument("--_time", help=argparse.SUPPRESS)
    parser.add_argument("--_memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._time or args._memory:
        worker = _time_worker if args._time else _memory_worker
        print(json.dumps(worker(json.loads(args._time or args._memory))))
        return

    import torch

    generators = ["deepsim", "biggan"] if args.generator == "all" else [args.generator]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="latentopt-bench-") as tmp:
        _prepare(Path(tmp), generators, args.model, args)
        for name in generators:
            listed = args.deepsim_batch_sizes if name == "deepsim" else args.tail_batch_sizes
            sizes = [int(s) for s in listed.split(",")]
            spec = {"generator": name, "folder": tmp, "n": args.n, "repeats": args.repeats, "model": args.model,
                    "sizes": sizes, "reference": args.reference and name == "biggan",
                    "weights": args.deepsim_weights if name == "deepsim" else args.biggan_weights}
            timed = _subprocess("time", spec)
            first = timed[str(sizes[0])]["median"]
            for key, result in timed.items():
                memory = _subprocess("memory", {**spec, "size": 0 if key == "library" else int(key),
                                                "library": key == "library"})
                label = "deepsim fc6" if name == "deepsim" else args.model
                what = ("library forward, whole batch" if key == "library" else
                        f"batch {key}" if name == "deepsim" else f"whole batch, tail chunks of {key}")
                row = {"generator": label, "configuration": what, "ms_per_image": 1000 * result["median"],
                       "ratio_to_first": result["median"] / first, "peak_rss_gb": memory["peak_rss_gb"],
                       "runs_ms_per_image": " ".join(f"{1000 * t:.1f}" for t in result["all"])}
                rows.append(row)
                print(f"{label:16s} {what:34s} {row['ms_per_image']:8.1f} ms/image (median of {args.repeats}; "
                      f"x{row['ratio_to_first']:.2f} of the first)  peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"tcmalloc {'tcmalloc' in os.environ.get('LD_PRELOAD', '')}, load average {os.getloadavg()[0]:.2f}, "
          f"float32 matmul {matmul_gflops():.0f} GFLOPS now, generation of {args.n}")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
