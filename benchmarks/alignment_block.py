"""A paired-generator block vs the two generators' and the subject's forward passes alone.

    python benchmarks/alignment_block.py [--repeats 15] [overrides ...]

Builds the ``alignment`` experiment of the default config (Fourier vs pixel generator, the in-silico monkey's
PIT unit, 4 references) recording into a temporary run folder, then times, per block and alternating, (a) one
whole block (ask, both generators, the subject, scoring, tell, the record) and (b) the two generators' and the
subject's forward passes of a block of the same size alone. Prints the medians and the median ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from latentopt.assembly import build_experiment
from latentopt.blocks import fit_images, noise_rng
from latentopt.records import RunWriter, library_versions
from latentopt.runtime import maybe_reexec_with_tcmalloc, runtime_info


def main() -> None:
    maybe_reexec_with_tcmalloc()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with initialize_config_module(config_module="latentopt.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=alignment", "progress=false", *args.overrides])
        generators = {}
        for option in cfg.experiment.generators:
            node = compose(config_name="config", overrides=[f"generator={option}"]).generator
            generators[str(option)] = OmegaConf.to_container(node, resolve=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    config["experiment"]["generators"] = generators
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(tmp)
        writer.start(config_yaml="benchmark: true\n", provenance={})
        experiment = build_experiment(config)
        experiment.recorder = writer
        threads = experiment.threads  # type: ignore[attr-defined]
        ref_ids, ref_images = experiment.references  # type: ignore[attr-defined]
        size = experiment.block_size  # type: ignore[attr-defined]
        warm = experiment.step(0)  # warm-up; codes of a generation's shape for the forward-only timing
        codes = {t.name: t.generator.initial_codes(len(warm.thread_scores[t.name]), rng=np.random.default_rng(0))
                 for t in threads}
        whole, forward = [], []
        for block in range(1, args.repeats + 1):
            t0 = time.perf_counter()
            experiment.step(block)
            whole.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            images = [fit_images(t.generator.generate(codes[t.name]), size).cpu() for t in threads]
            shown = torch.cat([*images, fit_images(ref_images, size)])
            experiment.subject.respond(shown, image_ids=[str(i) for i in range(len(shown))],
                                       rng=noise_rng(0, block))
            forward.append(time.perf_counter() - t0)
        experiment.close()
    ratios = [a / b for a, b in zip(whole, forward, strict=True)]
    print(json.dumps({
        "block_images": sum(len(c) for c in codes.values()) + len(ref_ids),
        "generators": list(generators),
        "median_block_s": statistics.median(whole),
        "median_forward_only_s": statistics.median(forward),
        "median_ratio_block_over_forward": statistics.median(ratios),
        "runtime": runtime_info(), "versions": library_versions(),
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
