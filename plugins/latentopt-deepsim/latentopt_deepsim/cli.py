"""``latentopt-deepsim-weights``: fetch, import and list DeePSim weight files.

Examples::

    latentopt-deepsim-weights fetch fc6                 # download into the cache (resumable)
    latentopt-deepsim-weights import fc6 ~/upconvGAN_fc6.pt   # check a local file, copy it into the cache
    latentopt-deepsim-weights list                      # what the cache holds, with sizes and SHA-256
"""

from __future__ import annotations

import argparse
import sys

from latentopt.weights import WeightsError, sha256_file, weights_dir
from latentopt_deepsim import weights as deepsim_weights
from latentopt_deepsim.architecture import VARIANTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentopt-deepsim-weights",
        description=f"Manage DeePSim weight files in the cache ({weights_dir()}; set $LATENTOPT_WEIGHTS_DIR "
        "to move it).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download weight files into the cache")
    fetch.add_argument("variants", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                       help=f"one or more of {', '.join(VARIANTS)}")
    fetch.add_argument("--force", action="store_true", help="download again even when cached")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    imp = sub.add_parser("import", help="check a local file and copy it into the cache")
    imp.add_argument("variant", choices=list(VARIANTS), metavar="VARIANT")
    imp.add_argument("file", help="a local upconvGAN_<variant>.pt")
    sub.add_parser("list", help="list the cached weight files")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``latentopt-deepsim-weights``; returns the exit status (1 with a one-line error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            for variant in args.variants:
                target = deepsim_weights.cache_path(variant)
                if target.is_file() and not args.force:
                    print(f"{variant}: already cached at {target}")
                    continue
                deepsim_weights.fetch(variant, progress=not args.quiet)
                print(f"{variant}: {target} sha256 {sha256_file(target)}")
        elif args.command == "import":
            target = deepsim_weights.import_file(args.variant, args.file)
            print(f"{args.variant}: {target} sha256 {sha256_file(target)}")
        else:
            print(f"cache: {weights_dir() / 'deepsim'}")
            for variant, path in deepsim_weights.cached():
                if path is None:
                    print(f"  {variant:6s} missing  ({deepsim_weights.url_for(variant)})")
                else:
                    size = path.stat().st_size / 2**20
                    print(f"  {variant:6s} {size:7.1f} MiB  sha256 {sha256_file(path)}  {path}")
    except (WeightsError, OSError) as err:
        print(f"latentopt-deepsim-weights: error: {err}", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    """Console-script wrapper (exit status)."""
    sys.exit(main())
