"""Console script ``latentopt-live RUN_DIR``: serve the live view of a run folder until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from latentopt.live.server import DEFAULT_HOST, DEFAULT_PORT, LiveError, LiveServer

PROG = "latentopt-live"


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a read-only page that follows a run as its blocks land: block counter, images shown, "
        "per-thread best and mean trajectories, the last block's best images, the rig's waiting state and the "
        "operator messages (docs/live.md). It only reads the run folder.",
    )
    parser.add_argument("run_dir", type=Path, help="the run folder (hydra.run.dir of the session)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}; any other needs --allow-remote)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host; every request then needs the random token in the URL")
    return parser


def check_run_dir(run_dir: Path) -> None:
    """Refuse, in one line, a path that is no run folder (a started run, or a legacy one with generations)."""
    if not run_dir.exists():
        _fail(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        _fail(f"{run_dir} is a file, not a run folder")
    if not (run_dir / "run.json").is_file() and not (run_dir / "generations").is_dir():
        _fail(f"{run_dir} is not a latentopt run folder (no run.json): start the view once the run has started, "
              "or with the run (latentopt live=true)")


def main(argv: list[str] | None = None) -> None:
    """Serve the view of ``RUN_DIR`` on ``--host``/``--port`` until interrupted; user errors are one line, exit 2."""
    args = build_parser().parse_args(argv)
    check_run_dir(args.run_dir)
    try:
        server = LiveServer(args.run_dir, host=args.host, port=args.port, allow_remote=args.allow_remote)
    except LiveError as err:
        _fail(str(err))
    print(f"{PROG}: serving {args.run_dir} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
