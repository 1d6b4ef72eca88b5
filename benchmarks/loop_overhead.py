"""How much the evolution loop adds to the forward passes, for the default run (issue 2's target: <= 1.1x).

Interleaves, in one process and on the same inputs, (a) a whole generation of the default run (ask,
generate, respond, score, tell, record to a temporary run folder) and (b) the generator's and the
subject's forward passes alone on a block of the same size. Prints medians and their ratio.

    .venv/bin/python benchmarks/loop_overhead.py [--repeats 15] [key=value overrides]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
from hydra import compose, initialize_config_module

from latentopt.blocks import noise_rng
from latentopt.cli import build_evolution
from latentopt.records import RunWriter, library_versions
from latentopt.runtime import maybe_reexec_with_tcmalloc, runtime_info


def main() -> None:
    maybe_reexec_with_tcmalloc()
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with initialize_config_module(config_module="latentopt.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["progress=false", *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(tmp)
        writer.start(config_yaml="benchmark: true\n", provenance={})
        evolution = build_evolution(cfg, recorder=writer)
        thread = evolution.threads[0]
        ref_ids, ref_images = evolution.references
        loop, forward = [], []
        evolution.step(0)  # warm-up
        # codes of a generation's shape for the forward-only timing (not asked of the optimizer: an ask without
        # a tell would change the optimizer's trajectory and state)
        codes = thread.generator.initial_codes(len(evolution.step(1).thread_scores[thread.name]),
                                               rng=np.random.default_rng(0))
        for generation in range(2, args.repeats + 2):
            t0 = time.perf_counter()
            evolution.step(generation)
            loop.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            images = thread.generator.generate(codes)
            if ref_ids:
                import torch

                images = torch.cat([images.cpu(), ref_images])
            evolution.subject.respond(
                images, image_ids=[str(i) for i in range(len(images))], rng=noise_rng(0, generation)
            )
            forward.append(time.perf_counter() - t0)
        evolution.subject.close()
    ratio = [a / b for a, b in zip(loop, forward, strict=True)]
    print(
        json.dumps(
            {
                "block_images": len(codes) + len(ref_ids),
                "median_generation_s": statistics.median(loop),
                "median_forward_only_s": statistics.median(forward),
                "median_ratio_generation_over_forward": statistics.median(ratio),
                "ratio_of_medians": statistics.median(loop) / statistics.median(forward),
                "optimizer": thread.optimizer.provenance(),
                "runtime": runtime_info(),
                "versions": library_versions(),
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
