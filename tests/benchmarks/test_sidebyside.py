"""benchmarks/sidebyside.py in smoke mode: ours alone, a fake reference checkout, and the one-line errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "sidebyside", Path(__file__).resolve().parents[2] / "benchmarks" / "sidebyside.py"
)
assert _SPEC is not None and _SPEC.loader is not None
sidebyside = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sidebyside)

# A stand-in for Animadversio/ActMax-Optimizer-Dev: the same class names, constructors and step_simple
# interface, random search underneath; the sphere class shows its centre as an extra row 0, like the real one.
FAKE_GEOMETRY = """
import numpy as np


def renormalize(codes, norm):
    return codes / np.linalg.norm(codes, axis=1, keepdims=True) * norm
"""
FAKE_OPTIMIZERS = """
import numpy as np
from core.geometry_utils import renormalize


class CholeskyCMAES:
    def __init__(self, space_dimen, population_size=None, init_sigma=3.0, init_code=None, Aupdate_freq=10,
                 maximize=True, random_seed=None, optim_params={}):
        print("this line must not reach the harness's output")
        self.n, self.sigma, self.init_x = population_size, init_sigma, np.asarray(init_code).reshape(1, -1)

    def get_init_pop(self):
        return self.init_x

    def step_simple(self, scores, codes, verbosity=1):
        best = codes[np.argmax(scores)]
        return best + self.sigma * np.random.randn(self.n, codes.shape[1])


class ZOHA_Sphere_lr_euclid:
    def __init__(self, space_dimen, population_size=40, select_size=20, lr=1.5, maximize=True, rankweight=True,
                 rankbasis=False, sphere_norm=300):
        self.n, self.norm = population_size, sphere_norm

    def lr_schedule(self, n_gen=100, mode="inv", lim=(50, 7.33)):
        self.lim = lim

    def step_simple(self, scores, codes, verbosity=1):
        centre = codes[np.argmax(scores)][None]
        samples = centre + 0.1 * self.norm * np.random.randn(self.n, codes.shape[1]) / np.sqrt(codes.shape[1])
        return renormalize(np.concatenate([centre, samples]), self.norm)


class Genetic:
    def __init__(self, space_dimen, population_size, mutation_rate, mutation_size, kT_multiplier,
                 parental_skew=0.5, n_conserve=0, random_seed=None, thread=None):
        self.n, self.size, self.rng = population_size, mutation_size, np.random.RandomState(random_seed)

    def step_simple(self, scores, codes, verbosity=1):
        best = codes[np.argmax(scores)]
        return best + self.size * self.rng.standard_normal((self.n, codes.shape[1]))
"""


def _fake_checkout(root: Path, optimizers: str = FAKE_OPTIMIZERS) -> Path:
    (root / "core").mkdir(parents=True)
    (root / "core" / "geometry_utils.py").write_text(textwrap.dedent(FAKE_GEOMETRY))
    (root / "core" / "Optimizers.py").write_text(textwrap.dedent(optimizers))
    return root


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "runs.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_ours_in_smoke_mode_writes_runs_table_and_trajectories(tmp_path: Path) -> None:
    out = tmp_path / "ours"
    argv = ["--smoke", "--budget", "64", "--ours", "bench_sphere_cma", "ga_ponce", "--out", str(out)]
    assert sidebyside.main(argv) == 0
    rows = _rows(out)
    assert len(rows) == 2 * 2  # optimizers x noise levels (0, 0.5) on one V1 unit, one seed
    trajectories = json.loads((out / "trajectories.json").read_text())
    for row, run in zip(rows, trajectories, strict=True):
        assert row["area"] == "V1" and row["channel"] == "0"
        assert int(row["evaluations"]) == 64 and int(row["generations"]) == 8  # 8 x 8 codes
        evals = [e for e, _ in run["trajectory"]]
        assert evals == list(range(8, 65, 8))
        best = [b for _, b in run["trajectory"]]
        # the final activation is the last generation's best noise-free score; best-ever is the maximum
        assert float(row["activation"]) == pytest.approx(best[-1], rel=1e-12)
        assert float(row["best_ever"]) == pytest.approx(max(best), rel=1e-12)
        assert 0 < float(row["norm_activation"]) <= 1.0
        passed = row["evals_to_natural"]
        if passed:
            first = int(passed)
            assert first % 8 == 0 and best[first // 8 - 1] > float(row["natural_best"])
            assert all(b <= float(row["natural_best"]) for b in best[: first // 8 - 1])
        else:
            assert max(best) <= float(row["natural_best"])
    assert max(float(r["norm_activation"]) for r in rows) == pytest.approx(1.0)
    text = (out / "table.md").read_text()
    assert "| bench_sphere_cma |" in text and "| ga_ponce |" in text and "V1 / noise 0.5" in text
    assert "Ratio ours / reference" not in text  # no reference without --reference-dir
    assert "numpy" in text and '"budget": 64' in text


def test_a_fake_reference_checkout_is_driven_and_compared(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from latentopt.builtins.generators import FourierGenerator

    checkout = _fake_checkout(tmp_path / "ActMax-Optimizer-Dev")
    out = tmp_path / "sbs"
    argv = ["--smoke", "--budget", "60", "--noise", "0", "--ours", "bench_sphere_cma",
            "--reference-dir", str(checkout), "--reference", "SphereCMA", "CholeskyCMAES", "Genetic", "--out", str(out)]
    assert sidebyside.main(argv) == 0
    assert "must not reach" not in capsys.readouterr().out
    rows = {r["optimizer"]: r for r in _rows(out)}
    assert set(rows) == {"bench_sphere_cma", "ref:SphereCMA", "ref:CholeskyCMAES", "ref:Genetic"}
    # every shown code is paid for: the sphere's 8 + 9 per generation (its centre), Cholesky's single start
    # (whole generations, never above the budget of 60)
    assert int(rows["ref:SphereCMA"]["evaluations"]) == 8 + 5 * 9
    assert int(rows["ref:CholeskyCMAES"]["evaluations"]) == 1 + 7 * 8
    assert int(rows["ref:Genetic"]["evaluations"]) == 7 * 8 == int(rows["bench_sphere_cma"]["evaluations"])
    text = (out / "table.md").read_text()
    ratio = next(line for line in text.splitlines() if line.startswith("| bench_sphere_cma | ref:SphereCMA |"))
    cells = [c.strip() for c in ratio.strip("|").split("|")]
    expected = float(rows["bench_sphere_cma"]["norm_activation"]) / float(rows["ref:SphereCMA"]["norm_activation"])
    assert float(cells[2]) == pytest.approx(expected, abs=1e-3)  # overall ratio, printed to 3 decimals
    # the matched radius: bench_sphere_cma's 4.7 x the mean norm of the shared initial codes
    initial = FourierGenerator(image_size=32, device="cpu").initial_codes(8, rng=np.random.default_rng([0, 1]))
    settings = json.loads(text.split("```json\n")[1].split("```")[0])
    radius = settings["optimizers (first unit/seed)"]["ref:SphereCMA"]["sphere_norm"]
    assert radius == pytest.approx(4.7 * np.linalg.norm(initial, axis=1).mean(), rel=1e-6)
    assert settings["optimizers (first unit/seed)"]["ref:CholeskyCMAES"]["init_sigma"] == 1.5


def test_a_missing_or_broken_reference_dir_is_a_one_line_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nowhere"
    assert sidebyside.main(["--smoke", "--reference-dir", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing / "core" / "Optimizers.py") in err
    broken = _fake_checkout(tmp_path / "broken", "import a_module_nobody_has\n")
    assert sidebyside.main(["--smoke", "--reference-dir", str(broken), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "failed to import" in err and "a_module_nobody_has" in err
    assert not (tmp_path / "o").exists()
