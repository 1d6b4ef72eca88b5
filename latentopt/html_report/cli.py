"""Console script ``latentopt-report RUN_DIR [--out FILE.html]``: the run report page of a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _fail(message: str) -> None:
    print(f"latentopt-report: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """Write ``RUN_DIR/report.html`` (replaced when written again), or ``--out FILE`` (never overwritten)."""
    parser = argparse.ArgumentParser(
        prog="latentopt-report",
        description="Write the one-page report of a run folder: a self-contained HTML file (images inlined, "
                    "no network needed) with the run's settings, provenance, score charts, images and the "
                    "experiment's analysis. The run may still be going: the page shows what is recorded.")
    parser.add_argument("run_dir", type=Path, help="a run folder (hydra.run.dir of a latentopt run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the page to this file instead of RUN_DIR/report.html (never overwritten)")
    args = parser.parse_args(argv)
    from latentopt.errors import LatentoptError
    from latentopt.html_report.page import write_html_report
    from latentopt.plugins import PluginError, default_registry

    try:
        registry = default_registry()
    except PluginError as err:
        _fail(str(err))
    if not args.run_dir.is_dir():
        _fail(f"{args.run_dir} is not a latentopt run folder "
              f"({'not a folder' if args.run_dir.exists() else 'no such folder'})")
    try:
        path = write_html_report(args.run_dir, out=args.out, registry=registry)
    except LatentoptError as err:
        _fail(str(err))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
