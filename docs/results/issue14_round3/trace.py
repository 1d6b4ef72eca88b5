"""Per-generation trace of one side-by-side run: the step size σ, the mean's norm and the scores.

    python docs/results/issue14_round3/trace.py bench_cholesky_cma V4 2 0 > trace.txt

Arguments: our optimizer preset, area, channel, noise level (seed 0, 3000 evaluations, λ 40, the
Fourier generator at 64 px: the harness's setting). Printed every 5 generations: noise-free score of
the first shown code (the mean or centre) and the best and median of the generation, σ and |m| (the
Cholesky's; nan for SphereCMA), the mean norm of the shown codes, and ‖p_σ‖ / χ_d (CSA's signal).
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import sidebyside as sbs  # noqa: E402
from latentopt.blocks import noise_rng  # noqa: E402
from latentopt.builtins.noise import make_noise  # noqa: E402

torch.set_num_threads(1)
name, area, channel, level = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
generator, (unit,) = sbs.build_units([area], [channel], 64)
seed, budget = 0, 3000
driver = sbs.Ours(name, generator.initial_codes(40, rng=np.random.default_rng([seed, 1])), seed, budget)
core = getattr(driver.optimizer, "core", None)
noise = make_noise({"kind": "multiplicative" if level > 0 else "none", "level": level})
evaluations, generation, codes = 0, 0, driver.ask()
while evaluations + codes.shape[0] <= budget:
    clean = unit.clean(codes)
    evaluations += codes.shape[0]
    sigma = core.sigma if core is not None else float("nan")
    mean_norm = float(np.linalg.norm(core.mean)) if core is not None else float("nan")
    signal = float(np.linalg.norm(core.ps)) / core.chi_n if core is not None else float("nan")
    if generation % 5 == 0 or evaluations + codes.shape[0] > budget:
        print(f"g{generation:3d} ev{evaluations:5d} centre {clean[0]:.2f} best {clean.max():.2f} "
              f"med {np.median(clean):.2f} sigma {sigma:.3f} |m| {mean_norm:.1f} "
              f"|code| {np.linalg.norm(codes, axis=1).mean():.1f} ps/chi {signal:.3f}", flush=True)
    driver.tell(codes, noise.apply(clean, noise_rng(seed, generation)))
    codes, generation = driver.ask(), generation + 1
