"""Speed of the digital twin: features once, the cross-validated ridge fit, and the twin as a subject.

    python benchmarks/twin_fit.py [--n 5000] [--layer V4] [--channels 64] [--pooling avg] [--grid 2]

1. Features of ``--n`` seeded random images (224 px, made batch by batch) through ``--layer`` (pooled) and,
   in the same forward passes, V1 avg features for the synthetic channels.
2. 64 synthetic channels: a known random linear readout of the V1 features + noise (one presentation per
   image); ``ridge_cv`` (5 grouped folds, 17 alphas) timed 3 times, median printed with the held-out r.
3. The fitted twin saved and served by the ``twin`` subject: ``respond_torch`` of 200 images (batch 10) vs the
   in-silico monkey's forward to the same layer (``cnn_unit``), alternating, median of 5 runs, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from latentopt.builtins.subjects import CNNUnitSubject
from latentopt.builtins.twin import TwinSubject
from latentopt.runtime import maybe_reexec_with_tcmalloc
from latentopt.twin.features import Backbone, pool
from latentopt.twin.fit import ridge_cv
from latentopt.twin.model import save_twin


def _images(start: int, count: int) -> torch.Tensor:
    return torch.rand(count, 3, 224, 224, generator=torch.Generator().manual_seed(start))


def main() -> None:
    maybe_reexec_with_tcmalloc()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--layer", default="V4")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--pooling", default="avg", choices=["avg", "grid"])
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument("--subject-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    backbone = Backbone([args.layer, "V1"], device="cpu")
    chunk = 100
    feats, other = [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, args.n, chunk):
            images = _images(first, min(chunk, args.n - first))
            for part in torch.split(images, backbone.batch_size):
                maps = backbone.maps_torch(part)
                feats.append(pool(maps[:1], args.pooling, args.grid).double().numpy())
                other.append(pool(maps[1:], "avg").double().numpy())
    t_features = time.perf_counter() - start
    X, V1 = np.concatenate(feats), np.concatenate(other)
    print(f"features: {args.n} images through {backbone.layers[0]} ({args.pooling}, {X.shape[1]} features): "
          f"{t_features:.1f} s ({1000 * t_features / args.n:.1f} ms/image)")

    rng = np.random.default_rng(0)
    clean = V1 @ rng.standard_normal((V1.shape[1], args.channels))
    Y = clean + rng.normal(0, 0.3, clean.shape) * clean.std(0)
    groups = np.arange(args.n)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fit = ridge_cv(X, Y, groups, folds=5)
        times.append(time.perf_counter() - start)
    print(f"ridge_cv: {args.channels} channels x {args.n} images x {X.shape[1]} features, 5 folds, 17 alphas: "
          f"median {statistics.median(times):.2f} s of {[round(t, 2) for t in times]}; "
          f"held-out r median {np.median(fit.r):.3f} (range {fit.r.min():.3f}-{fit.r.max():.3f})")
    print(f"whole fit (features once + one ridge_cv): {t_features + statistics.median(times):.1f} s")

    with tempfile.TemporaryDirectory() as folder:
        path = save_twin(Path(folder) / "twin", fit, layers=backbone.layers[:1], pooling=args.pooling, grid=args.grid,
                         channel_names=[f"ch{c}" for c in range(args.channels)],
                         weights_sha256=backbone.weights_sha256, provenance={"benchmark": "twin_fit"})
        backbone.close()
        twin = TwinSubject(path=str(path), device="cpu")
        monkey = CNNUnitSubject(layer=args.layer, channels=[0], device="cpu")
        images = _images(10**6, args.subject_images)
        t_twin, t_monkey = [], []
        with torch.inference_mode():
            twin.respond_torch(images[:10])
            monkey.respond_torch(images[:10])
            for _ in range(5):
                for subject, out in ((twin, t_twin), (monkey, t_monkey)):
                    start = time.perf_counter()
                    subject.respond_torch(images)
                    out.append(time.perf_counter() - start)
        ratio = statistics.median(a / b for a, b in zip(t_twin, t_monkey, strict=True))
        print(f"subject forward, {args.subject_images} images, batch 10: twin {statistics.median(t_twin):.2f} s, "
              f"cnn_unit {statistics.median(t_monkey):.2f} s; ratio (median of 5) {ratio:.3f}")
        twin.close()
        monkey.close()


if __name__ == "__main__":
    main()
