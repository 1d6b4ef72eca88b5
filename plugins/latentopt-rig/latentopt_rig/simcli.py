"""Console script ``latentopt-rigsim``: a simulated rig on an exchange folder (dry runs, fault drills)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from latentopt_rig.simulator import FAULT_KINDS, Fault, RigSimulator, SimEvent, SimSettings, serve


def _subject_kwargs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"latentopt-rigsim: --subject-arg needs key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentopt-rigsim",
        description="Play the stimulus computer on an exchange folder: answer each block latentopt writes with "
        "simulated Poisson responses of a registered subject, optionally with faults. Use it to dry-run a "
        "session before the animal is in the chair (docs/rig.md).",
    )
    p.add_argument("exchange", type=Path, help="the exchange folder (the rig subject's subject.exchange)")
    p.add_argument("--protocol", choices=("xdream", "native"), default="xdream")
    p.add_argument("--format", dest="fmt", default=None, help="mat73 | mat5 (xdream); h5 | npz | csv | mat73 | mat5 "
                   "(native). Default: mat73 for xdream, h5 for native")
    p.add_argument("--psth", action="store_true", help="write spike counts per time bin (native/mat: psth + edges)")
    p.add_argument("--subject", default="gabor_v1", help="registered simulated subject (gabor_v1, cnn_unit, ...)")
    p.add_argument("--subject-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="subject keyword, e.g. layer=V4 or channels=[0,1]")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[@GENERATIONS]",
                   help="inject a fault on the first block of generations (list or 'all'; re-queued blocks come "
                   f"back clean): {', '.join(FAULT_KINDS)}")
    p.add_argument("--repeats", type=int, default=1, help="trials per image")
    p.add_argument("--bin-ms", type=float, default=10.0)
    p.add_argument("--latency-ms", type=float, default=50.0, help="response latency")
    p.add_argument("--baseline-hz", type=float, default=5.0)
    p.add_argument("--rate-gain", type=float, default=10.0, help="spikes/s per unit of the subject's response")
    p.add_argument("--show-s", type=float, default=0.0, help="time to show a block (s)")
    p.add_argument("--delay-s", type=float, default=1.0, help="extra delay of fault 'delay' (s)")
    p.add_argument("--missing-fraction", type=float, default=0.25)
    p.add_argument("--slow-pieces", type=int, default=4)
    p.add_argument("--slow-pause-s", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--poll-s", type=float, default=0.05)
    p.add_argument("--idle-exit-s", type=float, default=None, help="exit after this long without a block")
    p.add_argument("--max-blocks", type=int, default=None)
    p.add_argument("--log", type=Path, default=None, help="append one JSON line per answered block")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from latentopt.plugins import PluginError, default_registry

    try:
        faults = [Fault.parse(f) for f in args.fault]
        settings = SimSettings(protocol=args.protocol, fmt=args.fmt or ("mat73" if args.protocol == "xdream" else "h5"),
                               psth=args.psth, bin_ms=args.bin_ms, latency_ms=args.latency_ms,
                               baseline_hz=args.baseline_hz, rate_gain=args.rate_gain, repeats=args.repeats,
                               seed=args.seed, show_s=args.show_s, delay_s=args.delay_s,
                               missing_fraction=args.missing_fraction, slow_pieces=args.slow_pieces,
                               slow_pause_s=args.slow_pause_s)
        kwargs = {"device": "cpu", **_subject_kwargs(args.subject_arg)}
        registry = default_registry()
        registry.build("subjects", args.subject, **kwargs).close()  # fail now on a bad subject
    except (ValueError, PluginError) as err:
        print(f"latentopt-rigsim: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    args.exchange.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        if not args.quiet:
            print(f"[rigsim] {message}", file=sys.stderr, flush=True)

    def make(crashed: set[str], events: list[SimEvent]) -> RigSimulator:
        subject = registry.build("subjects", args.subject, **kwargs)
        return RigSimulator(args.exchange, subject, settings, faults=faults, crashed=crashed, events=events, say=say)

    say(f"watching {args.exchange} ({args.protocol}, {settings.fmt}{', psth' if args.psth else ''}, "
        f"subject {args.subject}{', faults ' + ' '.join(args.fault) if args.fault else ''})")
    try:
        events = serve(make, poll_s=args.poll_s, idle_exit_s=args.idle_exit_s, max_blocks=args.max_blocks,
                       log=args.log)
    except KeyboardInterrupt:
        return
    say(f"answered {len(events)} block(s)")


if __name__ == "__main__":
    main()
