"""Paired comparison of two of our optimizers in a side-by-side folder (the harness's own statistics).

    python docs/results/issue14_short/paired.py docs/results/issue14_short bench_cholesky_cma bench_sphere_cma

Per column: matched runs (same unit, noise level and seed), ratio of the means over those runs, mean difference of the
normalised activation with its 95 % t interval, runs the first optimizer won, scipy's Wilcoxon p.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import sidebyside as sbs

from latentopt.checks import ConfigError


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: paired.py FOLDER OPTIMIZER OTHER (a side-by-side folder and two of its optimizers' labels)",
              file=sys.stderr)
        return 2
    folder, first, second = Path(argv[0]), argv[1], argv[2]
    try:
        rows, _, _ = sbs.read_runs(folder)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = sorted({r["optimizer"] for r in rows})
    for name in (first, second):
        if name not in names:
            print(f"error: {folder}: no runs of {name!r}; it has {', '.join(names)}", file=sys.stderr)
            return 2
    sbs.normalise(rows)
    for label, where in sbs.report_columns(rows):
        d = sbs.paired(rows, first, second, where)
        if d.size == 0:
            print(f"{label:9s} runs  0 (no matched runs)")
            continue
        ratio = sbs.matched_ratio(rows, first, second, where)
        mean, low, high = sbs.interval(d)
        print(f"{label:9s} runs {d.size:2d}  ratio {ratio:.3f}  difference {mean:+.3f} [{low:+.3f}, {high:+.3f}]  "
              f"won {int((d > 0).sum())}/{d.size}  Wilcoxon p {sbs.wilcoxon_p(d):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
