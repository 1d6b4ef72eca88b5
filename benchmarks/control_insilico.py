"""Population control in silico: the three commands a lab runs, on the in-silico monkey standing in for the animal.

    python benchmarks/control_insilico.py [--out runs/control_insilico] [--area V4] [--channels 24]
        [--twin-layers _blocks.5] [--pooling factorised] [--noise 0.3] [--natural 500] [--steps 100]

1. ``latentopt experiment=natural``: the natural set (500 offline images) shown twice to ``--channels`` units of
   the area's preset layer (every third channel at the centre of the map) with multiplicative trial noise;
2. ``latentopt-twin fit``: a twin of those channels through another layer (``--twin-layers``), so the twin is a
   model, not a copy of the readout;
3. ``latentopt experiment=control``: stretch and one-hot controllers for every channel synthesised on the twin
   (gradient ascent, Fourier generator), then shown with the natural set, 4 repeats each, to the noisy "animal".

Prints each command and its closing line, and writes ``<out>/result.json`` (the control summary, the twin's fit,
timings, versions). The Fourier generator's weights are analytic (no pretrained generator is involved).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli_steps import console_script, run_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/control_insilico"))
    parser.add_argument("--area", default="V4")
    parser.add_argument("--channels", type=int, default=24)
    parser.add_argument("--stride", type=int, default=3, help="every STRIDE-th channel of the layer")
    parser.add_argument("--twin-layers", nargs="+", default=["_blocks.5"])
    parser.add_argument("--pooling", default="factorised")
    parser.add_argument("--noise", type=float, default=0.3, help="multiplicative trial noise level")
    parser.add_argument("--natural", type=int, default=500, help="natural images")
    parser.add_argument("--steps", type=int, default=100, help="gradient steps per controller")
    parser.add_argument("--starts", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    latentopt, twin_cli = console_script("latentopt"), console_script("latentopt-twin")
    out = args.out.absolute()
    if out.exists():
        raise SystemExit(f"{out} exists: choose another --out")
    channels = "[" + ",".join(str(args.stride * i) for i in range(args.channels)) + "]"
    subject = [f"subject.layer={args.area}", f"subject.channels={channels}", "subject.noise.kind=multiplicative",
               f"subject.noise.level={args.noise}", f"seed={args.seed}", "progress=false"]
    natural = f"{{set: natural, n: {args.natural}, seed: 0}}"
    timings = {}
    _, timings["natural_s"] = run_step([latentopt, "experiment=natural", f"experiment.natural={natural}", *subject,
                                    f"hydra.run.dir={out / 'natural'}"])
    fit_line, timings["twin_fit_s"] = run_step([twin_cli, "fit", str(out / "natural"), "--out", str(out / "twin"),
                                            "--layers", *args.twin_layers, "--pooling", args.pooling])
    control_line, timings["control_s"] = run_step([
        latentopt, "experiment=control", f"experiment.twin.path={out / 'twin'}", f"experiment.natural={natural}",
        f"experiment.synthesis.steps={args.steps}", f"experiment.synthesis.starts={args.starts}",
        f"experiment.repeats={args.repeats}", "generator=fourier", *subject, f"hydra.run.dir={out / 'control'}"])
    twin = json.loads((out / "twin" / "twin.json").read_text())
    result = {"settings": vars(args) | {"out": str(out)}, "channels": channels,
              "twin": {k: twin.get(k) for k in ("layers", "pooling", "method", "r", "reliability", "normalised_r")},
              "twin_line": fit_line, "control_line": control_line,
              "control": json.loads((out / "control" / "summary.json").read_text()), "timings_s": timings}
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"result: {out / 'result.json'}")


if __name__ == "__main__":
    main()
