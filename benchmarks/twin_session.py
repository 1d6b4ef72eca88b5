"""A twin of 64 channels fitted from a recorded run of 5000 images, as a user fits one: ``latentopt-twin fit``.

    python benchmarks/twin_session.py [--out runs/twin_session] [--generations 125] [--layers _blocks.5]

1. ``latentopt``: an evolution of ``--generations`` x 40 images (Fourier images, the in-silico monkey's V4
   layer, 64 channels recorded, no references);
2. ``latentopt-twin fit`` of that run, twice, with an empty feature cache and then with the cache it filled.
   The first fit's time includes rebuilding the 5000 images from the records, their features (computed once),
   the cross-validated ridge fit of 64 channels and the split-half reliability; the second reads the features
   from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cli_steps import console_script, run_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/twin_session"))
    parser.add_argument("--generations", type=int, default=125)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--layers", nargs="+", default=["_blocks.5"])
    parser.add_argument("--pooling", default="avg")
    args = parser.parse_args()
    out = args.out.absolute()
    if out.exists():
        raise SystemExit(f"{out} exists: choose another --out")
    os.environ["LATENTOPT_CACHE"] = str(out / "cache")  # an empty cache: the first fit computes the features
    channels = "[" + ",".join(map(str, range(args.channels))) + "]"
    _, evolution_s = run_step([console_script("latentopt"), f"experiment.generations={args.generations}",
                               "subject.layer=V4", f"subject.channels={channels}", "experiment.references=null",
                               "progress=false", f"hydra.run.dir={out / 'evolution'}"])
    fits = {}
    for name in ("fresh", "cached"):
        line, fits[name] = run_step([console_script("latentopt-twin"), "fit", str(out / "evolution"), "--out",
                                     str(out / f"twin_{name}"), "--layers", *args.layers, "--pooling", args.pooling])
        fits[f"{name}_line"] = line  # type: ignore[assignment]
    result = {"settings": vars(args) | {"out": str(out)}, "evolution_s": evolution_s, "fit_s": fits}
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"fit of {args.channels} channels from {args.generations * 40} images: {fits['fresh']:.0f} s "
          f"(features cached: {fits['cached']:.0f} s); result: {out / 'result.json'}")


if __name__ == "__main__":
    main()
