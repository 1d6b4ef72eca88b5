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


class _Fixed:
    """A driver showing ``sizes[g]`` fixed codes at generation g and keeping what it is told."""

    def __init__(self, sizes: list[int], dim: int = 3) -> None:
        self.sizes, self.dim = sizes, dim
        self.told: list[np.ndarray] = []

    def ask(self) -> np.ndarray:
        n = self.sizes[min(len(self.told), len(self.sizes) - 1)]
        return np.arange(n * self.dim, dtype=np.float64).reshape(n, self.dim)

    def tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        self.told.append(np.asarray(scores))


class _Linear:
    """A unit whose noise-free response is the code's first coordinate plus 1."""

    natural = 10.0

    def clean(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.float64)[:, 0] + 1.0


def test_the_loop_shares_the_noise_stream_and_counts_every_shown_code() -> None:
    from latentopt.blocks import noise_rng

    centre, plain = _Fixed([4, 5]), _Fixed([4])
    a = sidebyside.run(centre, _Linear(), 0.5, 3, budget=20)
    b = sidebyside.run(plain, _Linear(), 0.5, 3, budget=20)
    assert (a["evaluations"], a["generations"]) == (4 + 3 * 5, 4) and (b["evaluations"], b["generations"]) == (20, 5)
    for g, (x, y) in enumerate(zip(centre.told, plain.told, strict=False)):
        clean = np.arange(x.size) * 3 + 1.0
        expected = clean * np.maximum(0.0, 1.0 + 0.5 * noise_rng(3, g).standard_normal(x.size))
        np.testing.assert_allclose(x, expected, rtol=1e-12)
        np.testing.assert_allclose(y, expected[:4], rtol=1e-12)  # the same draws for the same rows
    assert a["activation"] == 13.0 and b["activation"] == 10.0  # best noise-free of the final generation
    assert a["evals_to_natural"] == 9 and b["evals_to_natural"] is None  # 13 > 10 at the second generation
    assert [e for e, _ in a["trajectory"]] == [4, 9, 14, 19]


def test_interval_is_scipys_t_interval_and_the_ratio_is_of_the_means() -> None:
    from scipy import stats

    values = [0.8, 0.9, 0.7, 1.0, 0.85]
    mean, low, high = sidebyside.interval(values)
    ref_low, ref_high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and (low, high) == pytest.approx((ref_low, ref_high), rel=1e-12)
    rows = [{"optimizer": name, "area": area, "channel": 0, "noise": 0.0, "seed": seed, "norm_activation": value,
             "norm_best_ever": value, "evals_to_natural": evals, "evaluations": 100}
            for name, area, seed, value, evals in [
                ("bench_sphere_cma", "V1", 0, 0.9, 40), ("bench_sphere_cma", "V4", 0, 0.6, None),
                ("ref:SphereCMA", "V1", 0, 1.0, 20), ("ref:SphereCMA", "V4", 0, 0.8, 80)]]
    text = sidebyside.table(rows, {}, {})
    line = next(x for x in text.splitlines() if x.startswith("| bench_sphere_cma | ref:SphereCMA |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # all, V1, V4, noise 0 (every run), evaluations to pass the natural images
    assert cells[2:] == [f"{0.75 / 0.9:.3f}", f"{0.9:.3f}", f"{0.6 / 0.8:.3f}", f"{0.75 / 0.9:.3f}", f"{40 / 50:.3f}"]


def test_overrides_make_an_ablation_without_a_preset_file() -> None:
    name, overrides = sidebyside.split_overrides("bench_sphere_cma[show_centre=true, step_end_deg=3,mu=null]")
    assert name == "bench_sphere_cma" and overrides == {"show_centre": True, "step_end_deg": 3, "mu": None}
    registry, kwargs = sidebyside.ours_kwargs("bench_sphere_cma[show_centre=true,step_end_deg=3]", 40)
    assert registry == "sphere_cma" and kwargs["show_centre"] is True and kwargs["step_end_deg"] == 3
    assert kwargs["sphere_norm_factor"] == 4.7  # the rest of the preset is kept
    assert sidebyside.split_overrides("ga_ponce") == ("ga_ponce", {})
    from latentopt.checks import ConfigError

    for bad in ("bench_sphere_cma[show_centre]", "bench_sphere_cma[=3]", "bench_sphere_cma[lr=1"):
        with pytest.raises(ConfigError, match="--ours"):
            sidebyside.split_overrides(bad)


def test_every_other_optimizer_of_ours_is_compared_with_the_reference_spherecma() -> None:
    names = ["bench_sphere_cma", "bench_sphere_cma[show_centre=true]", "ga_ponce", "ref:SphereCMA", "ref:Genetic"]
    assert sidebyside.comparisons(names) == [
        ("bench_sphere_cma", "ref:SphereCMA"), ("ga_ponce", "ref:Genetic"),
        ("bench_sphere_cma[show_centre=true]", "ref:SphereCMA")]
    assert sidebyside.comparisons(["bench_sphere_cma", "ga_ponce"]) == []


def test_shards_merged_give_the_runs_of_one_unsharded_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--smoke", "--budget", "32", "--ours", "bench_sphere_cma", "ga_ponce"]
    assert sidebyside.main([*base, "--out", str(tmp_path / "whole")]) == 0
    for i in (0, 1):
        assert sidebyside.main([*base, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")]) == 0
    assert len(_rows(tmp_path / "s0")) == len(_rows(tmp_path / "s1")) == 2
    assert sidebyside.main(["--merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")]) == 0
    key = lambda r: (r["optimizer"], r["noise"], r["seed"])  # noqa: E731
    whole, merged = sorted(_rows(tmp_path / "whole"), key=key), sorted(_rows(tmp_path / "m"), key=key)
    assert [key(r) for r in whole] == [key(r) for r in merged]
    for a, b in zip(whole, merged, strict=True):
        for field in ("activation", "best_ever", "norm_activation", "norm_best_ever", "evaluations"):
            assert float(a[field]) == pytest.approx(float(b[field]), rel=1e-9), field
    assert len(json.loads((tmp_path / "m" / "trajectories.json").read_text())) == 4
    # folders of different grids: the merged settings name the union of what the runs cover, no shard
    assert sidebyside.main([*base, "--noise", "0.2", "--seeds", "3", "--out", str(tmp_path / "more")]) == 0
    assert sidebyside.main(["--merge", str(tmp_path / "s0"), str(tmp_path / "more"), "--out", str(tmp_path / "g")]) == 0
    settings = json.loads((tmp_path / "g" / "settings.json").read_text())
    assert settings["noise"] == "multiplicative, levels 0, 0.2, 0.5" and settings["seeds"] == [0, 3]
    assert "shard" not in settings and settings["areas"] == ["V1"] and settings["units"] == [0]
    capsys.readouterr()
    # the same shard twice, a folder without runs, a malformed --shard: one-line errors, nothing written
    assert sidebyside.main(["--merge", str(tmp_path / "s0"), str(tmp_path / "s0"), "--out", str(tmp_path / "d")]) == 2
    assert "appears twice" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert sidebyside.main(["--merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nothing" in err
    assert sidebyside.main([*base, "--shard", "2/2", "--out", str(tmp_path / "d")]) == 2
    assert "--shard" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_paired_differences_are_matched_runs_with_scipys_interval_and_wilcoxon() -> None:
    from scipy import stats

    ours = [0.9, 0.8, 0.95, 0.7, 0.85, 0.6]
    ref = [0.85, 0.82, 0.9, 0.65, 0.8, 0.62]
    rows = [{"optimizer": who, "area": "V1", "channel": 0, "noise": 0.0, "seed": seed, "norm_activation": value,
             "norm_best_ever": value, "evals_to_natural": None, "evaluations": 100}
            for who, values in (("bench_sphere_cma", ours), ("ref:SphereCMA", ref))
            for seed, value in enumerate(values)]
    rows.append({**rows[0], "seed": 99})  # a run without a partner is left out of the pairs
    diff = sidebyside.paired(rows, "bench_sphere_cma", "ref:SphereCMA", lambda r: True)
    np.testing.assert_allclose(diff, np.subtract(ours, ref))
    assert sidebyside.wilcoxon_p(diff) == pytest.approx(stats.wilcoxon(ours, ref).pvalue)
    text = sidebyside.table(rows, {}, {})
    line = next(x for x in text.splitlines() if x.startswith("| bench_sphere_cma | ref:SphereCMA | all | 6 |"))
    low, high = stats.t.interval(0.95, 5, loc=diff.mean(), scale=stats.sem(diff))
    assert f"{diff.mean():+.3f} [{low:+.3f}, {high:+.3f}]" in line and "| 4/6 |" in line


def test_a_larger_natural_set_raises_the_bar_and_merge_recomputes_it_from_trajectories(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--smoke", "--budget", "32", "--noise", "0", "--ours", "bench_sphere_cma"]
    assert sidebyside.main([*base, "--out", str(tmp_path / "photos")]) == 0
    assert sidebyside.main([*base, "--natural", "natural:30", "--out", str(tmp_path / "crops")]) == 0
    photos, crops = _rows(tmp_path / "photos")[0], _rows(tmp_path / "crops")[0]
    assert photos["activation"] == crops["activation"]  # the natural images do not change the run
    assert float(crops["natural_best"]) != float(photos["natural_best"])
    # the same bar computed after the fact from the photographs' run, through its stored trajectories
    assert sidebyside.main(["--merge", str(tmp_path / "photos"), "--natural", "natural:30",
                            "--out", str(tmp_path / "again")]) == 0
    again = _rows(tmp_path / "again")[0]
    assert float(again["natural_best"]) == pytest.approx(float(crops["natural_best"]), rel=1e-12)
    assert again["evals_to_natural"] == crops["evals_to_natural"]
    settings = json.loads((tmp_path / "again" / "settings.json").read_text())
    assert settings["natural images"] == "natural:30"
    capsys.readouterr()
    assert sidebyside.main([*base, "--natural", "natural:0", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--natural 'natural:0'" in err and not (tmp_path / "bad").exists()


def test_evaluations_to_natural_are_compared_run_with_run_leaving_out_runs_that_never_passed() -> None:
    from scipy import stats

    ours = [80, 40, 120, 280, None, 400]
    ref = [81, 81, 122, 204, 40, None]
    rows = [{"optimizer": who, "area": "V4", "channel": 1, "noise": 0.2, "seed": seed, "norm_activation": 0.5,
             "norm_best_ever": 0.5, "evals_to_natural": value, "evaluations": 3000}
            for who, values in (("bench_sphere_cma", ours), ("ref:SphereCMA", ref))
            for seed, value in enumerate(values)]
    diff = sidebyside.paired(rows, "bench_sphere_cma", "ref:SphereCMA", lambda r: True, "evals_to_natural")
    np.testing.assert_array_equal(diff, [80 - 81, 40 - 81, 120 - 122, 280 - 204])
    line = next(x for x in sidebyside.table(rows, {}, {}).splitlines()
                if x.startswith("| bench_sphere_cma | ref:SphereCMA | 4 |"))
    p = stats.wilcoxon([80, 40, 120, 280], [81, 81, 122, 204]).pvalue
    assert line == f"| bench_sphere_cma | ref:SphereCMA | 4 | 3 | 1 | 0 | {np.median(diff):+.0f} | {p:.3f} |"


def test_a_ratio_compares_only_the_runs_both_sides_made() -> None:
    # ours ran seed 0 only, the reference seeds 0 and 1 (say, a smaller grid for an ablation)
    rows = [{"optimizer": name, "area": "PIT", "channel": 0, "noise": 0.5, "seed": seed, "norm_activation": value,
             "norm_best_ever": value, "evals_to_natural": None, "evaluations": 100}
            for name, seed, value in [("bench_sep_cma", 0, 0.6), ("ref:SphereCMA", 0, 0.5), ("ref:SphereCMA", 1, 1.0)]]
    line = next(x for x in sidebyside.table(rows, {}, {}).splitlines()
                if x.startswith("| bench_sep_cma | ref:SphereCMA |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == f"{0.6 / 0.5:.3f}"  # not 0.6 / 0.75 over every reference run
