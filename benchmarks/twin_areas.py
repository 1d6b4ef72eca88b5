"""How well a digital twin predicts in-silico units of V1, V4 and PIT (Malakhova 2019: r = 0.8 for some IT columns).

    python benchmarks/twin_areas.py [--out runs/twin_areas] [--areas V1 V4 PIT] [--channels 8] [--noise 0.3]

Per area: ``--channels`` units of the preset layer (every fifth channel, centre of the map) with multiplicative
trial noise see a natural-set session (500 images, twice) and an evolution (the default: Fourier images, diagonal
CMA-ES, 30 generations for channel 0, the other channels recorded alongside); a twin is fitted from both runs
through the block before the area's layer (a model, not the readout itself), and its held-out r (5 grouped
folds) is reported per channel, raw and normalised by the split-half noise ceiling. Writes
``<out>/twin_areas.csv`` and ``<out>/result.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from cli_steps import console_script, run_step

TWIN_LAYERS = {"V1": "_blocks.3", "V4": "_blocks.5", "PIT": "_blocks.11"}
"""The block before each area's preset layer (V1 _blocks.4, V4 _blocks.6, PIT _blocks.12)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/twin_areas"))
    parser.add_argument("--areas", nargs="+", default=["V1", "V4", "PIT"])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--stride", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--natural", type=int, default=500)
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--pooling", default="factorised")
    args = parser.parse_args()
    latentopt, twin_cli = console_script("latentopt"), console_script("latentopt-twin")
    out = args.out.absolute()
    if out.exists():
        raise SystemExit(f"{out} exists: choose another --out")
    rows, result = ["area,channel,r,reliability,normalised_r"], {}
    for area in args.areas:
        channels = "[" + ",".join(str(args.stride * i) for i in range(args.channels)) + "]"
        subject = [f"subject.layer={area}", f"subject.channels={channels}", "subject.noise.kind=multiplicative",
                   f"subject.noise.level={args.noise}", "progress=false"]
        folder = out / area
        run_step([latentopt, "experiment=natural", f"experiment.natural={{set: natural, n: {args.natural}, seed: 0}}",
              *subject, f"hydra.run.dir={folder / 'natural'}"])
        run_step([latentopt, f"experiment.generations={args.generations}", *subject,
              f"hydra.run.dir={folder / 'evolution'}"])
        line, _ = run_step([twin_cli, "fit", str(folder / "natural"), str(folder / "evolution"), "--out",
                     str(folder / "twin"), "--layers", TWIN_LAYERS[area], "--pooling", args.pooling])
        twin = json.loads((folder / "twin" / "twin.json").read_text())
        r = np.asarray([np.nan if v is None else v for v in twin["r"]], dtype=float)
        rel = np.asarray([np.nan if v is None else v for v in twin.get("reliability") or [None] * len(r)], float)
        norm = np.asarray([np.nan if v is None else v for v in twin.get("normalised_r") or [None] * len(r)], float)
        for k in range(len(r)):
            rows.append(f"{area},{args.stride * k},{r[k]:.4f},{rel[k]:.4f},{norm[k]:.4f}")
        result[area] = {"twin_layer": TWIN_LAYERS[area], "median_r": float(np.nanmedian(r)),
                        "min_r": float(np.nanmin(r)), "max_r": float(np.nanmax(r)),
                        "median_normalised_r": float(np.nanmedian(norm)) if np.isfinite(norm).any() else None,
                        "channels_r_at_least_0.8": int((r >= 0.8).sum()), "channels": len(r),
                        "images": twin.get("n_images"), "line": line}
        print(f"{area}: median r {result[area]['median_r']:.3f} (normalised "
              f"{result[area]['median_normalised_r']}), r >= 0.8 in {result[area]['channels_r_at_least_0.8']}/"
              f"{len(r)} channels", flush=True)
    (out / "twin_areas.csv").write_text("\n".join(rows) + "\n")
    (out / "result.json").write_text(json.dumps({"settings": vars(args) | {"out": str(out)}, "areas": result},
                                                indent=2, default=str))
    print(f"result: {out / 'result.json'}")


if __name__ == "__main__":
    main()
