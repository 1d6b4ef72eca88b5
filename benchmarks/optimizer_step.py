"""Cost of one optimizer generation (ask + tell) at d = 4096, λ = 40, for every optimizer config.

Every ``conf/optimizer/*.yaml`` of the core and of installed plugins is built through the registry,
as the CLI builds it, and runs ``--generations`` generations of ask + tell on a cheap quadratic score.
Each config runs in its own process (so peak RSS is its own). Prints per-generation median, 95th
percentile and worst time, the size of ``state_dict()`` as the run records save it (npz), the peak
RSS of the process, and the versions of torch, cma and nevergrad; writes the table as CSV and the
resolved settings (``provenance()``) as JSON next to it.

    python benchmarks/optimizer_step.py [--dim 4096] [--population-size 40] [--generations 100]
        [--only sep_cma cmaes] [--out benchmarks/results/optimizer_step]

Target for the default optimizer (``sep_cma``, the suite's reference CMA): median <= 10 ms, worst <= 50 ms,
state <= 50 MB.
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CMA = "sep_cma"
TARGET = {"median_ms": 10.0, "worst_ms": 50.0, "state_mb": 50.0}
CONF_PACKAGES = ("latentopt.conf", "latentopt_cmafamily.conf")
EXTRA_CONFIGS = {  # nevergrad optimizers worth comparing beside the config default (DiagonalCMA)
    "nevergrad_NGOpt": {"name": "nevergrad", "ng_name": "NGOpt", "budget": 4000},
    "nevergrad_CMA": {"name": "nevergrad", "ng_name": "CMA", "budget": 3000},
}


def optimizer_configs() -> dict[str, dict[str, Any]]:
    """Every optimizer config shipped by the core and the installed plugins: ``{config: kwargs}``."""
    from omegaconf import OmegaConf

    configs: dict[str, dict[str, Any]] = {}
    for package in CONF_PACKAGES:
        folder = importlib.resources.files(package) / "optimizer"
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                loaded = OmegaConf.to_container(OmegaConf.load(str(entry)), resolve=False)
                configs[entry.name[: -len(".yaml")]] = {str(k): v for k, v in dict(loaded).items()}  # type: ignore[arg-type]
    return {**configs, **EXTRA_CONFIGS}


def synthetic_metric(dim: int, rank: int, folder: Path) -> str:
    """An ``.npz`` eigenbasis ``(dim, rank)`` with a decaying spectrum (stands in for fc6's top 800)."""
    basis, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, rank)))
    path = folder / "metric.npz"
    np.savez(path, eigvecs=basis, eigvals=np.logspace(0, -4, rank))
    return str(path)


def measure(
    config: str, kwargs: dict[str, Any], dim: int, population_size: int, generations: int, metric: str
) -> dict[str, Any]:
    """Build one optimizer and time its generations; runs in a child process."""
    from latentopt.plugins import default_registry
    from latentopt.records import tree_to_npz_bytes

    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    kwargs.pop("population_size", None)  # as the CLI: population_size initial codes are drawn
    if kwargs.get("metric") == "???":
        kwargs["metric"] = metric
    rng = np.random.default_rng(0)
    target = rng.standard_normal(dim)
    initial = rng.standard_normal((population_size, dim)).astype(np.float32)
    t0 = time.perf_counter()
    optimizer = default_registry().build("optimizers", name, initial, seed=0, **kwargs)
    build_s = time.perf_counter() - t0
    if optimizer.needs_white_box:  # gradient ascent: the same quadratic, differentiable
        import torch

        goal = torch.as_tensor(target, dtype=torch.float32)
        optimizer.attach_white_box(lambda codes: -((codes - goal) ** 2).sum(1))
    times = []
    for _ in range(generations):
        t0 = time.perf_counter()
        codes = optimizer.ask()
        scores = -((codes - target) ** 2).sum(1)  # outside the optimizer, but negligible (0.2 ms)
        optimizer.tell(codes, scores)
        times.append(time.perf_counter() - t0)
    state_mb = len(tree_to_npz_bytes({"optimizer": optimizer.state_dict()})) / 1e6
    ms = np.array(times) * 1e3
    return {
        "config": config,
        "registered": name,
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "worst_ms": float(ms.max()),
        "build_s": build_s,
        "state_mb": state_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "best_score": float(optimizer.best[1]) if optimizer.best else float("nan"),
        "provenance": optimizer.provenance(),
    }


def _child(queue: Any, *args: Any) -> None:
    try:
        queue.put(measure(*args))
    except Exception as err:  # reported in the table, not hidden
        queue.put({"config": args[0], "error": f"{type(err).__name__}: {err}"})


def main() -> None:
    from latentopt.records import library_versions

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--population-size", type=int, default=40)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--only", nargs="*", default=None, help="config names to run")
    parser.add_argument("--out", default="benchmarks/results/optimizer_step")
    args = parser.parse_args()
    configs = optimizer_configs()
    names = args.only or list(configs)
    versions = library_versions()
    print("versions:", ", ".join(f"{k} {v}" for k, v in versions.items()), f"| cpus {mp.cpu_count()}")
    print(f"d = {args.dim}, λ = {args.population_size}, {args.generations} generations of ask + tell per config")
    rows = []
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        metric = synthetic_metric(args.dim, min(800, args.dim), Path(tmp))
        for config in names:
            queue = context.Queue()
            child = context.Process(
                target=_child,
                args=(queue, config, configs[config], args.dim, args.population_size, args.generations, metric),
            )
            child.start()
            row = queue.get()
            child.join()
            rows.append(row)
            if "error" in row:
                print(f"{config:18s} ERROR {row['error']}")
                continue
            print(
                f"{config:18s} median {row['median_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
                f"worst {row['worst_ms']:8.1f} ms  state {row['state_mb']:8.2f} MB  "
                f"peak RSS {row['peak_rss_mb']:7.0f} MB"
            )
    report(rows, versions, args)


def report(rows: list[dict[str, Any]], versions: dict[str, str], args: argparse.Namespace) -> None:
    """Markdown table on stdout, CSV + JSON files, and the default CMA's verdict."""
    keys = ["config", "registered", "median_ms", "p95_ms", "worst_ms", "state_mb", "peak_rss_mb", "build_s"]
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        if "error" not in row:
            print("| " + " | ".join(f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*keys, "error"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    settings = {
        "versions": versions,
        "dim": args.dim,
        "population_size": args.population_size,
        "generations": args.generations,
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(settings, indent=1, default=str))
    default = next((r for r in rows if r.get("config") == DEFAULT_CMA and "error" not in r), None)
    if default is not None:
        ok = all(default[k] <= limit for k, limit in TARGET.items())
        print(f"\ndefault optimizer ({DEFAULT_CMA}) target {TARGET}: {'MET' if ok else 'NOT MET'}")
    medians = {r["config"]: r["median_ms"] for r in rows if "error" not in r}
    if DEFAULT_CMA in medians and "cmaes" in medians:
        print(f"pycma full / {DEFAULT_CMA} median ratio (same run): {medians['cmaes'] / medians[DEFAULT_CMA]:.0f}x")
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
