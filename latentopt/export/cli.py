"""Console script ``latentopt-export``: ``latentopt-export nwb RUN_DIR [--out FILE.nwb]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from latentopt.export.checks import DEFAULT_TOLERANCE

PROG = "latentopt-export"


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Export a latentopt run folder to another format.")
    sub = parser.add_subparsers(dest="format", required=True)
    nwb = sub.add_parser("nwb", help="a Neurodata Without Borders file (pynwb; standard types only, MatNWB reads "
                         "it); layout: docs/nwb.md",
                         description="Write RUN_DIR as a new NWB file: every image shown once (rebuilt from the "
                         "recorded codes and checked against the stored best images), one trial per presentation "
                         "with the responses per channel, the channels, the optimizer threads and the provenance. "
                         "An existing file is never overwritten.")
    nwb.add_argument("run_dir", type=Path)
    nwb.add_argument("--out", type=Path, default=None, help="the file to create (default: RUN_DIR/<name>.nwb)")
    nwb.add_argument("--device", default="cpu", help="where the generators rebuilding the images run (default cpu)")
    nwb.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE,
                     help=f"largest difference, in levels of 255, between a rebuilt image and the run's stored one "
                          f"(default {DEFAULT_TOLERANCE}; raise it for a run recorded on another device)")
    nwb.add_argument("--subject-id", default=None, help="the animal's id (default: the subject component's name)")
    nwb.add_argument("--species", default=None, help="e.g. 'Macaca mulatta'")
    nwb.add_argument("--sex", default="U", choices=("M", "F", "O", "U"), help="default U (unknown)")
    nwb.add_argument("--age", default=None, help="ISO 8601 duration, e.g. P7Y (default P0D/: unknown)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``) and export; an expected error is one line, exit status 2."""
    args = _parser().parse_args(argv)
    from latentopt.errors import LatentoptError

    try:
        from latentopt.export.nwb import UNKNOWN_AGE, SubjectInfo, export_nwb

        if args.tolerance < 0:
            raise LatentoptError(f"--tolerance must be >= 0, got {args.tolerance}")
        subject = SubjectInfo(subject_id=args.subject_id, species=args.species, sex=args.sex,
                              age=args.age or UNKNOWN_AGE)
        t0 = time.perf_counter()
        out = export_nwb(args.run_dir, args.out, device=args.device, tolerance=args.tolerance, subject=subject)
    except LatentoptError as err:  # every expected error: one line (a bug keeps its traceback)
        _fail(str(err))
    print(f"nwb file: {out}  ({out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
