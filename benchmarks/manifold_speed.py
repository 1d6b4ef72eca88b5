"""A whole manifold experiment vs the generator + subject forward passes of its images alone.

    python benchmarks/manifold_speed.py [--repeats 3] [--grid 11] [--references]

First a short evolution of the default run (in-silico monkey, PIT unit, Fourier generator) is recorded; then,
``--repeats`` times and alternating in one process: (a) the forward passes alone — the design's images, in the
experiment's blocks of 40, through the generator and the subject, nothing else; (b) ``run_experiment`` of the
manifold into a fresh folder, everything included (building the components, PCA, design, blocks, records, the
Kent fits, figures, ``manifold.json``). Prints the medians and the ratio (b) / (a) per repeat and its median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _config(overrides: list[str]) -> dict[str, Any]:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="latentopt.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return data


def forward_only(config: dict[str, Any]) -> float:
    """Seconds of the generator + subject forward passes of the manifold's images, in its blocks."""
    from latentopt.assembly import build_experiment
    from latentopt.blocks import fit_images, noise_rng

    experiment = build_experiment(config)
    try:
        design = experiment.design_  # type: ignore[attr-defined]
        size = experiment.generator.image_size  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for block in range(design.blocks):
            index = design.order[block * design.block_size:(block + 1) * design.block_size, 0]
            images = fit_images(experiment.generator.generate(design.codes[index]), size)  # type: ignore[attr-defined]
            experiment.subject.respond(images, image_ids=[str(i) for i in index], rng=noise_rng(0, block))
        return time.perf_counter() - t0
    finally:
        experiment.close()


def whole(config: dict[str, Any], folder: Path) -> float:
    from latentopt.launch import run_experiment

    t0 = time.perf_counter()
    run_experiment(config, folder, config_yaml=json.dumps(config))
    return time.perf_counter() - t0


def main() -> None:
    from latentopt.launch import run_experiment
    from latentopt.records import library_versions
    from latentopt.run_record import load_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grid", type=int, default=11)
    parser.add_argument("--references", action="store_true", help="show the default 4 references per block")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="manifold_speed_"))
    source = root / "evolution"
    evolve = _config(["experiment.generations=5", "progress=false", "device=cpu"])
    run_experiment(evolve, source, config_yaml=json.dumps(evolve))
    refs = [] if args.references else ["experiment.references=[]"]
    config = _config(["experiment=manifold", f"experiment.source={source}", f"experiment.grid={args.grid}",
                      "progress=false", "device=cpu", *refs])
    forward_s, whole_s = [], []
    for k in range(args.repeats):
        forward_s.append(forward_only(config))
        whole_s.append(whole(config, root / f"manifold_{k}"))
        timings = load_run(root / f"manifold_{k}").timings
        inside = float((timings["generator_s"] + timings["subject_s"]).sum())
        print(f"repeat {k}: forward passes {forward_s[-1]:.2f} s, whole experiment {whole_s[-1]:.2f} s "
              f"(generator + subject inside it {inside:.2f} s; everything else {whole_s[-1] - inside:.2f} s), "
              f"ratio {whole_s[-1] / forward_s[-1]:.3f}", flush=True)
    ratios = [w / f for w, f in zip(whole_s, forward_s, strict=True)]
    images = json.loads((root / "manifold_0" / "provenance.json").read_text())["experiment"]["presentations"]
    print(f"grid {args.grid}x{args.grid}, 3 spheres, {images} grid images"
          f"{' + references' if args.references else ''}; versions {library_versions()}")
    print(f"median forward passes {statistics.median(forward_s):.2f} s, median whole experiment "
          f"{statistics.median(whole_s):.2f} s, median ratio {statistics.median(ratios):.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
