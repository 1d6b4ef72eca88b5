"""Paired comparison of two of our optimizers in a side-by-side folder (the harness's own statistics).

    python docs/results/issue14_short/paired.py docs/results/issue14_short bench_cholesky_cma bench_sphere_cma

Per column: matched runs (same unit, noise level and seed), ratio of the means over those runs, mean difference of the
normalised activation with its 95 % t interval, runs the first optimizer won, scipy's Wilcoxon p.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import sidebyside as sbs

folder, first, second = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows, _, _ = sbs.read_runs(folder)
sbs.normalise(rows)
for label, where in sbs.report_columns(rows):
    d = sbs.paired(rows, first, second, where)
    ratio = sbs.matched_ratio(rows, first, second, where)
    mean, low, high = sbs.interval(d)
    print(f"{label:9s} runs {d.size:2d}  ratio {ratio:.3f}  difference {mean:+.3f} [{low:+.3f}, {high:+.3f}]  "
          f"won {int((d > 0).sum())}/{d.size}  Wilcoxon p {sbs.wilcoxon_p(d):.3g}")
