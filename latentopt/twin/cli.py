"""Console script ``latentopt-twin``: fit a digital twin from recorded sessions, or describe one.

    latentopt-twin fit RUN_DIR [RUN_DIR ...] --out TWIN [--layers V4 PIT] [--pooling avg|grid|factorised]
                   [--method ridge|pls] [--folds 5] [--components 25] [--images FOLDER --csv RESPONSES.csv]
    latentopt-twin show TWIN
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _fail(message: str) -> None:
    print(f"latentopt: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def _fmt(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="latentopt-twin", description="Digital twins of recorded channels: a "
                                     "backbone layer and a readout fitted to a session's images and responses.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a twin from run folders (and/or a folder of images with a CSV)")
    fit.add_argument("runs", type=Path, nargs="*", help="run folders (any experiment with a stimulus reader)")
    fit.add_argument("--out", type=Path, required=True, help="the twin folder to write (twin.json, readout.npz)")
    fit.add_argument("--layers", nargs="+", default=["PIT"],
                     help="backbone layer(s): V1, V4, PIT or module names such as _blocks.7 (default PIT)")
    fit.add_argument("--pooling", default="avg", choices=["avg", "grid", "factorised"],
                     help="avg: global mean per feature; grid: GRID x GRID means; factorised: spatial x feature")
    fit.add_argument("--grid", type=int, default=2, help="side of the pooling grid (--pooling grid)")
    fit.add_argument("--method", default="ridge", choices=["ridge", "pls"], help="readout regression")
    fit.add_argument("--folds", type=int, default=5, help="cross-validation folds (images never split)")
    fit.add_argument("--components", type=int, default=25, help="PLS components (--method pls)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the folds and split halves")
    fit.add_argument("--size", type=int, default=None, help="resize the sessions' images to SIZE x SIZE")
    fit.add_argument("--images", type=Path, default=None, help="a folder of images (with --csv)")
    fit.add_argument("--csv", type=Path, default=None, help="responses: a header 'image,<channel>...', a row per trial")
    fit.add_argument("--device", default="auto", help="auto, cpu or cuda")
    fit.add_argument("--no-cache", action="store_true", help="compute the features again (not from the cache)")
    fit.add_argument("--overwrite", action="store_true", help="replace a twin already in --out")
    show = sub.add_parser("show", help="print what a twin folder holds")
    show.add_argument("twin", type=Path)
    args = parser.parse_args(argv)
    from latentopt.errors import LatentoptError

    if args.command == "show":
        from latentopt.twin.model import read_twin_meta

        try:
            meta = read_twin_meta(args.twin, "TWIN")
        except LatentoptError as err:
            _fail(str(err))
        r = np.asarray([np.nan if v is None else v for v in meta.get("r") or []], dtype=float)
        print(json.dumps({k: meta.get(k) for k in ("channel_names", "layers", "pooling", "method", "n_images")},
                         default=str))
        print(f"held-out r: median {_fmt(np.nanmedian(r) if np.isfinite(r).any() else None)} over {len(r)} channels")
        return
    if not args.runs and args.csv is None:
        _fail("latentopt-twin fit: give run folders, or --images FOLDER --csv RESPONSES.csv")
    if (args.images is None) != (args.csv is None):
        _fail("latentopt-twin fit: --images and --csv go together")
    from latentopt.twin.session import fit_from_runs

    try:
        report = fit_from_runs(args.runs, args.out, size=args.size, device=args.device,
                               csv=None if args.csv is None else (args.images, args.csv), layers=args.layers,
                               pooling=args.pooling, grid=args.grid, method=args.method, folds=args.folds,
                               n_components=args.components, seed=args.seed, cache=not args.no_cache,
                               overwrite=args.overwrite)
    except LatentoptError as err:
        _fail(str(err))
    ceiling = (f", noise-ceiling normalised {_fmt(report['median_normalised_r'])}"
               if report["median_normalised_r"] is not None else "")
    print(f"twin: {report['path']}  {len(report['channels'])} channels, {report['images']} images "
          f"({report['presentations']} trials), {'+'.join(report['layers'])} {report['pooling']}"
          f"{'' if report['method'] == report['pooling'] else ' ' + report['method']}: "
          f"held-out r median {_fmt(report['median_r'])}{ceiling} "
          f"(features {report['features_s']:.1f} s{' cached' if report['features_reused'] else ''}, "
          f"fit {report['fit_s']:.1f} s)")


if __name__ == "__main__":
    main()
