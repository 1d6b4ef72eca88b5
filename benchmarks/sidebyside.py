"""Side by side: latentopt's optimizers and Wang & Ponce's reference code on the same units (issue 14).

Every optimizer, ours (ask/tell) or a reference class of ``Animadversio/ActMax-Optimizer-Dev`` driven as
``new_codes = opt.step_simple(scores, codes)``, runs through one loop: codes -> Fourier images ->
EfficientNet-Lite0 unit (area V1 / V4 / PIT, one channel) -> noise-free response -> multiplicative
noise from :func:`latentopt.blocks.noise_rng` ``(seed, generation)`` (the same stream for every
optimizer on a (unit, seed)) -> told scores. Evaluations are counted as shown, so the reference
SphereCMA's centre row (B + 1 codes per generation) and the reference Cholesky's single starting code
are paid for; a run stops before the generation that would exceed ``--budget`` (whole generations).

The reference code is never vendored: ``--reference-dir`` points to a checkout the user has and only
``<dir>/core/Optimizers.py`` is loaded (its module-level imports: numpy, ``core.geometry_utils`` from
the same checkout, ``cma`` and ``nevergrad``). Its settings are matched to ours (population, the
sphere's radius and schedule, σ0 and the starting mean, the GA's rates) and written to ``table.md``.

Outputs in ``--out``:

* ``runs.csv``: one row per optimizer x unit x noise x seed: ``activation`` (best noise-free score among
  the final generation's codes, as ``benchmarks/suite/summarize.py``), ``best_ever`` (best noise-free
  score of any shown code), ``norm_activation`` (activation / the best activation of any run on that
  unit), ``natural_best`` (best noise-free score of the natural images), ``evals_to_natural``
  (evaluations until a shown code first scores above it noise-free; empty if never);
* ``trajectories.json``: per run, per generation, the evaluations so far and the best noise-free score;
* ``table.md``: normalised activation per optimizer x (area, noise) with mean and 95 % t interval over
  units x seeds, ours / reference ratios per algorithm (overall and per area), evaluations to pass the
  best natural image, settings and versions.

* ``settings.json``: what ``--merge`` needs to rebuild the table.

The natural bar is the best of the 4 default photographs unless ``--natural natural:N`` (N crops of the
offline natural set) raises it; ``--merge ... --natural natural:N`` recomputes ``evals_to_natural`` from
the stored trajectories without running again. Ratios and paired differences use matched runs only (the
same unit, noise level and seed on both sides).

Our optimizers that are not a reference algorithm's pair (``PAIRS``) are compared with the reference
SphereCMA. ``--ours`` takes presets with overrides for ablations, ``"bench_sphere_cma[show_centre=false]"``.
One process per core: ``--shard 0/2`` and ``--shard 1/2`` split the jobs, ``--merge`` joins their folders
(normalised over all runs).

    python benchmarks/sidebyside.py --reference-dir ~/src/ActMax-Optimizer-Dev --out results/sbs
    python benchmarks/sidebyside.py --smoke --ours bench_sphere_cma --out /tmp/sbs
    python benchmarks/sidebyside.py --reference-dir D --shard 0/2 --out results/a &
    python benchmarks/sidebyside.py --reference-dir D --shard 1/2 --out results/b; wait
    python benchmarks/sidebyside.py --merge results/a results/b --out results/sbs
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import platform
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESET_DIRS = (ROOT / "benchmarks/suite/conf/optimizer",
               ROOT / "plugins/latentopt-cmafamily/latentopt_cmafamily/conf/optimizer", ROOT / "conf/optimizer")
REFERENCE_CLASSES = {"SphereCMA": "ZOHA_Sphere_lr_euclid", "CholeskyCMAES": "CholeskyCMAES", "Genetic": "Genetic"}
PAIRS = {"SphereCMA": "bench_sphere_cma", "CholeskyCMAES": "bench_cholesky_cma", "Genetic": "ga_ponce"}
"""Reference name -> our preset whose settings it takes and with which it is compared."""
REF_PREFIX = "ref:"
FULL: dict[str, Any] = {"areas": ["V1", "V4", "PIT"], "units": [0, 1], "noise": [0.0, 0.2, 0.5], "seeds": [0, 1, 2],
        "budget": 3000, "population": 40, "image_size": 64,
        "ours": ["bench_sphere_cma", "bench_cholesky_cma", "ga_ponce", "bench_sphere_cma_paper", "bench_sep_cma",
                 "bench_cmaes_diag"],
        "reference": list(REFERENCE_CLASSES)}
SMOKE = {**FULL, "areas": ["V1"], "units": [0], "noise": [0.0, 0.5], "seeds": [0], "budget": 120,
         "population": 8, "image_size": 32}


def _error(message: str) -> Exception:
    from latentopt.checks import ConfigError

    return ConfigError(message)


# ---------------------------------------------------------------------------------------------- optimizers
def preset(name: str) -> dict[str, Any]:
    """An optimizer preset (suite, plugin or package ``conf/optimizer/<name>.yaml``) with its ``defaults``
    merged in; a registry name without a preset file is ``{"name": name}``."""
    for folder in PRESET_DIRS:
        path = folder / f"{name}.yaml"
        if path.is_file():
            node = yaml.safe_load(path.read_text()) or {}
            merged: dict[str, Any] = {}
            for base in node.pop("defaults", []) or []:
                merged.update(node if base == "_self_" else preset(str(base)))
            return {**merged, **node}
    return {"name": name}


def split_overrides(label: str) -> tuple[str, dict[str, Any]]:
    """``"preset[key=value,key=value]"`` -> ``("preset", {key: value})``, values parsed as YAML scalars
    (``"bench_sphere_cma[show_centre=true,step_end_deg=3]"``): an ablation without a new preset file."""
    if not label.endswith("]") or "[" not in label:
        if "[" in label or "]" in label:
            raise _error(f"--ours {label!r}: write overrides as NAME[key=value,key=value]")
        return label, {}
    name, _, body = label[:-1].partition("[")
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _error(f"--ours {label!r}: {item!r} is not key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def ours_kwargs(name: str, population: int) -> tuple[str, dict[str, Any]]:
    """Registry name and keyword arguments of our optimizer ``name`` (a preset, optionally with
    ``[key=value,...]`` overrides) at ``population`` codes per generation (the GA's elite scaled by
    population / the preset's, so it stays below the population)."""
    base, overrides = split_overrides(name)
    node = {**preset(base), **overrides}
    registry_name = str(node.pop("name"))
    size = int(node.pop("population_size", population) or population)
    if "n_elite" in node and size != population:
        node["n_elite"] = max(1, round(int(node["n_elite"]) * population / size))
    return registry_name, node


class Ours:
    """Our ask/tell optimizer behind the harness's ``ask() / tell(codes, scores)``."""

    def __init__(self, name: str, initial: np.ndarray, seed: int, budget: int) -> None:
        from latentopt.experiments.evolve import planned_generations
        from latentopt.plugins import default_registry

        registry_name, kwargs = ours_kwargs(name, initial.shape[0])
        self.settings = {"registry": registry_name, **kwargs}
        self.optimizer = default_registry().build("optimizers", registry_name, initial, seed=seed, **kwargs)
        planned = planned_generations(self.optimizer, 0, budget)  # as the CLI tells it with experiment.budget
        if planned is not None:
            self.optimizer.plan_generations(planned)

    def ask(self) -> np.ndarray:
        return self.optimizer.ask()

    def tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        self.optimizer.tell(codes, scores)


def load_reference(directory: str | Path) -> Any:
    """``<directory>/core/Optimizers.py`` as a module (the checkout on ``sys.path`` while it loads, for its
    ``core.geometry_utils``). Raises a one-line ConfigError naming the file when it is missing or fails."""
    path = Path(directory).expanduser() / "core" / "Optimizers.py"
    if not path.is_file():
        raise _error(f"--reference-dir: {path}: no such file (give a checkout of Animadversio/ActMax-Optimizer-Dev)")
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "core" or k.startswith("core.")}
    sys.path.insert(0, str(path.parents[1]))
    bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # leave the user's checkout as it is
    try:
        spec = importlib.util.spec_from_file_location("actmax_reference_optimizers", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # geometry_utils' `is 1`: not ours to report
            spec.loader.exec_module(module)
    except Exception as err:  # anything the foreign module raises: one line naming the file
        raise _error(f"--reference-dir: {path} failed to import: {type(err).__name__}: {err}".splitlines()[0]) from None
    finally:
        sys.dont_write_bytecode = bytecode
        sys.path.remove(str(path.parents[1]))
        for key in [k for k in sys.modules if k == "core" or k.startswith("core.")]:
            del sys.modules[key]  # the checkout's ``core`` stays out of the way of any other ``core``
        sys.modules.update(saved)
    missing = [cls for cls in REFERENCE_CLASSES.values() if not hasattr(module, cls)]
    if missing:
        raise _error(f"--reference-dir: {path} has no {', '.join(missing)}")
    return module


def reference_settings(name: str, initial: np.ndarray, seed: int, budget: int) -> dict[str, Any]:
    """Constructor settings of reference ``name`` matched to our paired preset on these initial codes (a
    schedule over the run's length, ``schedule_generations: null``, is ``ceil(budget / population)``)."""
    population = initial.shape[0]
    _, ours = ours_kwargs(PAIRS[name], population)
    if name == "SphereCMA":
        radius = ours.get("sphere_norm") or ours["sphere_norm_factor"] * float(np.linalg.norm(initial, axis=1).mean())
        return {"population_size": population, "select_size": int(ours.get("mu") or population // 2),
                "lr": float(ours["lr"]), "sphere_norm": float(radius),
                "lr_schedule": {"n_gen": int(ours["schedule_generations"] or -(-budget // population)),
                                "mode": str(ours["schedule"]),
                                "lim": [float(ours["step_start_deg"]), float(ours["step_end_deg"])]},
                "first_generation": "our initial codes rescaled to the sphere"}
    if name == "CholeskyCMAES":
        return {"population_size": population, "init_sigma": float(ours["sigma0"]),
                "Aupdate_freq": int(ours["a_update_every"]), "init_code": str(ours.get("init_mean", "zero")),
                "first_generation": "get_init_pop(): the starting mean, 1 code"}
    return {"population_size": population, "mutation_rate": float(ours["mutation_rate"]),
            "mutation_size": float(ours["mutation_size"]), "kT_multiplier": float(ours["temperature_factor"]),
            "parental_skew": float(ours["parental_skew"]), "n_conserve": int(ours["n_elite"]),
            "random_seed": seed, "first_generation": "our initial codes"}


class Reference:
    """A reference class driven as ``new_codes = opt.step_simple(scores, codes)`` (maximising)."""

    def __init__(self, module: Any, name: str, initial: np.ndarray, seed: int, budget: int) -> None:
        np.random.seed(seed)  # the reference's Sphere and Cholesky classes draw from numpy's global stream
        s = reference_settings(name, initial, seed, budget)
        self.settings = s
        dim = initial.shape[1]
        cls = getattr(module, REFERENCE_CLASSES[name])
        codes = np.asarray(initial, dtype=np.float64)
        with contextlib.redirect_stdout(io.StringIO()):
            if name == "SphereCMA":
                self.opt = cls(dim, population_size=s["population_size"], select_size=s["select_size"], lr=s["lr"],
                               maximize=True, sphere_norm=s["sphere_norm"])
                self.opt.lr_schedule(n_gen=s["lr_schedule"]["n_gen"], mode=s["lr_schedule"]["mode"],
                                     lim=tuple(s["lr_schedule"]["lim"]))
                self.codes = codes / np.linalg.norm(codes, axis=1, keepdims=True) * s["sphere_norm"]
            elif name == "CholeskyCMAES":
                start = codes.mean(0, keepdims=True) if s["init_code"] == "codes" else np.zeros((1, dim))
                self.opt = cls(dim, population_size=s["population_size"], init_sigma=s["init_sigma"],
                               init_code=start, Aupdate_freq=s["Aupdate_freq"], maximize=True)
                self.codes = np.asarray(self.opt.get_init_pop(), dtype=np.float64).reshape(-1, dim)
            else:
                self.opt = cls(dim, s["population_size"], s["mutation_rate"], s["mutation_size"], s["kT_multiplier"],
                               parental_skew=s["parental_skew"], n_conserve=s["n_conserve"], random_seed=seed)
                self.codes = codes

    def ask(self) -> np.ndarray:
        return self.codes.copy()

    def tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            new = self.opt.step_simple(np.asarray(scores, dtype=np.float64), np.asarray(codes, dtype=np.float64),
                                       verbosity=0)
        self.codes = np.asarray(new, dtype=np.float64).reshape(-1, codes.shape[1])


# ---------------------------------------------------------------------------------------------- the loop
class Unit:
    """One channel of an area of the in-silico monkey: noise-free scores of codes through the generator."""

    def __init__(self, generator: Any, subject: Any, column: int, area: str, channel: int, natural: float) -> None:
        self.generator, self.subject, self.column = generator, subject, column
        self.area, self.channel, self.natural = area, channel, natural

    def clean(self, codes: np.ndarray) -> np.ndarray:
        """Noise-free responses ``(n,)`` of codes ``(n, d)``."""
        import torch

        with torch.inference_mode():
            images = self.generator.generate(np.asarray(codes, dtype=np.float32))
            return self.subject.respond_torch(images).double().cpu().numpy()[:, self.column]


def run(driver: Any, unit: Unit, noise_level: float, seed: int, budget: int) -> dict[str, Any]:
    """Evolve until the next generation would exceed ``budget`` evaluations.

    Returns:
        ``activation`` (best noise-free score of the final generation), ``best_ever``, ``evaluations``,
        ``generations``, ``evals_to_natural`` (None if never passed) and the per-generation ``trajectory``
        ``[[evaluations so far, best noise-free score of that generation], ...]``.
    """
    from latentopt.blocks import noise_rng
    from latentopt.builtins.noise import make_noise

    noise = make_noise({"kind": "multiplicative" if noise_level > 0 else "none", "level": noise_level})
    evaluations, generation, trajectory, final = 0, 0, [], np.zeros(0)
    passed: int | None = None
    codes = driver.ask()
    if codes.shape[0] > budget:
        raise _error(f"--budget {budget} is smaller than the first generation ({codes.shape[0]} codes)")
    while evaluations + codes.shape[0] <= budget:
        final = unit.clean(codes)
        scores = noise.apply(final, noise_rng(seed, generation))
        evaluations += codes.shape[0]
        trajectory.append([evaluations, float(final.max())])
        if passed is None and final.max() > unit.natural:
            passed = evaluations
        driver.tell(codes, scores)
        codes = driver.ask()
        generation += 1
    return {"activation": float(final.max()), "best_ever": max(b for _, b in trajectory),
            "evaluations": evaluations, "generations": generation, "evals_to_natural": passed,
            "trajectory": trajectory}


def natural_spec(text: str) -> Any:
    """``--natural``: ``photos`` (the default natural images, :data:`DEFAULT_REFERENCES`) or ``natural:N``
    (the offline natural set's first N crops, seed 0) -> the ``experiment.references`` spec."""
    from latentopt.references import DEFAULT_REFERENCES

    if text == "photos":
        return list(DEFAULT_REFERENCES)
    kind, _, n = text.partition(":")
    if kind != "natural" or not n.isdigit() or int(n) < 1:
        raise _error(f"--natural {text!r}: expected photos or natural:N (N >= 1 crops of the offline set)")
    return {"set": "natural", "n": int(n), "seed": 0}


def build_units(areas: Sequence[str], channels: Sequence[int], image_size: int,
                natural_images: str = "photos") -> tuple[Any, list[Unit]]:
    """The generator and one :class:`Unit` per area x channel, with the best noise-free score of the
    natural images ``natural_images`` (see :func:`natural_spec`)."""
    import torch

    from latentopt.builtins.generators import FourierGenerator
    from latentopt.builtins.subjects import CNNUnitSubject
    from latentopt.references import reference_set

    generator = FourierGenerator(image_size=image_size, device="cpu")
    _, natural = reference_set(natural_spec(natural_images), generator.image_size)
    units = []
    for area in areas:
        subject = CNNUnitSubject(layer=area, channels=list(channels), device="cpu")
        with torch.inference_mode():
            parts = [subject.respond_torch(part) for part in torch.split(natural, 100)]
            best = torch.cat(parts).double().cpu().numpy().max(0)
        units += [Unit(generator, subject, k, area, int(c), float(best[k])) for k, c in enumerate(channels)]
    return generator, units


def normalise(rows: list[dict[str, Any]]) -> None:
    """``norm_activation``: activation / the best activation of any run on the same unit (any noise);
    ``norm_best_ever``: best_ever / the best best_ever of any run on the unit."""
    best: dict[tuple[str, int], float] = {}
    ever: dict[tuple[str, int], float] = {}
    for row in rows:
        key = (row["area"], row["channel"])
        best[key] = max(best.get(key, -np.inf), row["activation"])
        ever[key] = max(ever.get(key, -np.inf), row["best_ever"])
    for row in rows:
        top, most = best[(row["area"], row["channel"])], ever[(row["area"], row["channel"])]
        row["unit_best"] = top
        row["norm_activation"] = row["activation"] / top if top > 0 else float("nan")
        row["norm_best_ever"] = row["best_ever"] / most if most > 0 else float("nan")


def comparisons(names: Sequence[str]) -> list[tuple[str, str]]:
    """(ours, reference) pairs of the ratio table: each reference with its paired preset, then every other
    of our optimizers with the reference SphereCMA (the algorithm to beat)."""
    refs = [n for n in names if n.startswith(REF_PREFIX)]
    pairs = [(PAIRS[n[len(REF_PREFIX):]], n) for n in refs if PAIRS[n[len(REF_PREFIX):]] in names]
    sphere = REF_PREFIX + "SphereCMA"
    if sphere in names:
        paired = set(PAIRS.values())
        pairs += [(n, sphere) for n in names if not n.startswith(REF_PREFIX) and n not in paired]
    return pairs


# ---------------------------------------------------------------------------------------------- the table
def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of the finite ``values`` (NaN bounds for fewer than 2)."""
    from scipy import stats

    x = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if x.size < 2:
        return float(x.mean()), float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def _run_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two optimizers' runs a matched pair: the unit, the noise level and the seed."""
    return row["area"], row["channel"], row["noise"], row["seed"]


def paired(rows: list[dict[str, Any]], ours: str, ref: str, where: Any,
           field: str = "norm_activation") -> np.ndarray:
    """``field`` of ``ours`` minus ``ref`` over the (area, channel, noise, seed) both ran (and where both
    have a value: ``evals_to_natural`` is None for a run that never passed)."""
    def by_run(who: str) -> dict[tuple[Any, ...], float]:
        return {_run_key(r): r[field] for r in rows
                if r["optimizer"] == who and where(r) and r[field] is not None}
    mine, theirs = by_run(ours), by_run(ref)
    keys = sorted(set(mine) & set(theirs), key=str)
    return np.asarray([mine[k] - theirs[k] for k in keys], dtype=np.float64)


def matched_ratio(rows: list[dict[str, Any]], ours: str, ref: str, where: Any,
                  field: str = "norm_activation") -> float:
    """Mean ``field`` of ``ours`` / that of ``ref``, both over the (area, channel, noise, seed) runs both made
    (NaN with no matched run or a reference mean <= 0)."""
    chosen = [{_run_key(r): r[field] for r in rows if r["optimizer"] == who and where(r)} for who in (ours, ref)]
    matched = sorted(set(chosen[0]) & set(chosen[1]), key=str)  # the same runs on both sides
    if not matched:
        return float("nan")
    mine, theirs = (float(np.nanmean([c[k] for k in matched])) for c in chosen)
    return mine / theirs if theirs > 0 else float("nan")


def report_columns(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """``(label, row filter)`` of the report's columns: all runs, each area, each noise level."""
    areas = sorted({r["area"] for r in rows})
    noises = sorted({r["noise"] for r in rows})
    return [("all", lambda r: True), *((a, lambda r, a=a: r["area"] == a) for a in areas),
            *((f"noise {n:g}", lambda r, n=n: r["noise"] == n) for n in noises)]


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (NaN when all are zero or fewer than 2)."""
    from scipy import stats

    if differences.size < 2 or not np.any(differences):
        return float("nan")
    return float(stats.wilcoxon(differences).pvalue)


def _cell(values: Sequence[float]) -> str:
    mean, low, high = interval(values)
    if np.isnan(mean):
        return ""
    return f"{mean:.3f}" if np.isnan(low) else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def table(rows: list[dict[str, Any]], settings: dict[str, Any], versions: dict[str, str]) -> str:
    """The markdown report: normalised activation, ratios, evaluations to pass the natural images."""
    columns = sorted({(r["area"], r["noise"]) for r in rows})
    names = list(dict.fromkeys(r["optimizer"] for r in rows))
    names = [n for n in names if not n.startswith(REF_PREFIX)] + [n for n in names if n.startswith(REF_PREFIX)]
    head = ["optimizer", *(f"{a} / noise {n:g}" for a, n in columns), "all"]
    lines = ["# Side by side: normalised activation (activation / best of any run on the unit)", "",
             "Mean [95 % t interval] over units x seeds; activation = best noise-free score among the final "
             "generation's codes.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        mine = [r for r in rows if r["optimizer"] == name]
        cells = [_cell([r["norm_activation"] for r in mine if (r["area"], r["noise"]) == c]) for c in columns]
        lines.append(f"| {name} | " + " | ".join([*cells, _cell([r["norm_activation"] for r in mine])]) + " |")
    noises = sorted({r["noise"] for r in rows})
    pairs = comparisons(names)
    if pairs:
        lines += ["", "## Ratio ours / reference", "",
                  "Mean normalised activation over the matched runs of each column (the same unit, noise level "
                  "and seed on both sides); our optimizers that are not a "
                  "reference algorithm's pair are compared with the reference SphereCMA. Evaluations to pass the "
                  "best natural image: ratio of the medians over the runs that passed.", "",
                  "| ours | reference | " + " | ".join(label for label, _ in report_columns(rows))
                  + " | evals to natural |", "|" + "---|" * (3 + len(report_columns(rows)))]
        for ours, ref in pairs:
            cells = []
            for _, where in report_columns(rows):
                ratio = matched_ratio(rows, ours, ref, where)
                cells.append("" if np.isnan(ratio) else f"{ratio:.3f}")
            hits = [[r["evals_to_natural"] for r in rows if r["optimizer"] == who and r["evals_to_natural"] is not None]
                    for who in (ours, ref)]
            cells.append(f"{np.median(hits[0]) / np.median(hits[1]):.3f}" if all(hits) else "")
            lines.append(f"| {ours} | {ref} | " + " | ".join(cells) + " |")
        lines += ["", "## Paired differences ours − reference", "",
                  "Normalised activation of the same unit, noise level and seed (matched runs): mean difference "
                  "with its 95 % t interval, runs ours won, and scipy's Wilcoxon signed-rank p.", "",
                  "| ours | reference | column | matched runs | mean difference [95 %] | ours won | Wilcoxon p |",
                  "|---|---|---|---|---|---|---|"]
        for ours, ref in pairs:
            for label, where in report_columns(rows):
                diff = paired(rows, ours, ref, where)
                if diff.size == 0:
                    continue
                mean, low, high = interval(diff.tolist())
                p = wilcoxon_p(diff)
                lines.append(f"| {ours} | {ref} | {label} | {diff.size} | {mean:+.3f} [{low:+.3f}, {high:+.3f}] | "
                             f"{int((diff > 0).sum())}/{diff.size} | {p:.3f} |")
        lines += ["", "## Evaluations to pass the best natural image, matched runs", "",
                  "The same unit, noise level and seed, where both passed: runs where ours passed sooner, later "
                  "or at the same count, the median difference ours − reference (evaluations), and scipy's "
                  "Wilcoxon signed-rank p. Unlike the ratio of medians, this compares run with run.", "",
                  "| ours | reference | matched runs | ours sooner | ours later | ties | median difference | "
                  "Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
        for ours, ref in pairs:
            diff = paired(rows, ours, ref, lambda r: True, "evals_to_natural")
            if diff.size:
                lines.append(f"| {ours} | {ref} | {diff.size} | {int((diff < 0).sum())} | {int((diff > 0).sum())} | "
                             f"{int((diff == 0).sum())} | {np.median(diff):+.0f} | {wilcoxon_p(diff):.3f} |")
    lines += ["", "## Normalised best ever (best noise-free score of any shown code / best of any run on the unit)",
              "", "| optimizer | all | " + " | ".join(f"noise {n:g}" for n in noises) + " |",
              "|" + "---|" * (2 + len(noises))]
    for name in names:
        mine = [r for r in rows if r["optimizer"] == name]
        cells = [_cell([r["norm_best_ever"] for r in mine if r["noise"] == n]) for n in noises]
        lines.append(f"| {name} | " + " | ".join([_cell([r["norm_best_ever"] for r in mine]), *cells]) + " |")
    lines += ["", "## Evaluations to pass the best natural image (noise-free, any shown code)", "",
              "| optimizer | passed | median evals | mean evaluations used |", "|---|---|---|---|"]
    for name in names:
        mine = [r for r in rows if r["optimizer"] == name]
        hits = [r["evals_to_natural"] for r in mine if r["evals_to_natural"] is not None]
        median = f"{np.median(hits):.0f}" if hits else ""
        used = np.mean([r["evaluations"] for r in mine])
        lines.append(f"| {name} | {len(hits)}/{len(mine)} | {median} | {used:.0f} |")
    lines += ["", "## Settings", "", "```json", json.dumps(settings, indent=1, default=str), "```",
              "", "## Versions", "", *(f"- {k}: {v}" for k, v in versions.items())]
    return "\n".join(lines) + "\n"


def _git(directory: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "not a git checkout"
    dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def versions(reference_dir: str | None) -> dict[str, str]:
    import torch

    found = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
             "latentopt commit": _git(ROOT)}
    for package in ("cma", "nevergrad"):
        try:
            found[package] = str(importlib.import_module(package).__version__)
        except ImportError:
            found[package] = "not installed"
    if reference_dir:
        found["reference checkout"] = f"{Path(reference_dir).expanduser()} at {_git(Path(reference_dir).expanduser())}"
    return found


# ---------------------------------------------------------------------------------------------- CLI
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-dir", help="checkout of Animadversio/ActMax-Optimizer-Dev (optional)")
    p.add_argument("--ours", nargs="*", help=f"suite presets or registry names (default {' '.join(FULL['ours'])})")
    p.add_argument("--reference", nargs="*", choices=list(REFERENCE_CLASSES), help="reference algorithms")
    p.add_argument("--areas", nargs="+", help="V1 V4 PIT")
    p.add_argument("--units", nargs="+", type=int, help="channels of every area")
    p.add_argument("--noise", nargs="+", type=float, help="multiplicative noise levels")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--budget", type=int)
    p.add_argument("--population", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings)")
    p.add_argument("--smoke", action="store_true", help="tiny: 1 V1 unit, budget 120, population 8, 32 px")
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th job from the I-th (one process per core), "
                   "then --merge the shards' folders")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="combine these earlier --out folders into --out "
                   "(normalised over all their runs) instead of running")
    p.add_argument("--natural", help="the natural images a run must pass: photos (default: the 4 photographs) "
                   "or natural:N (N crops of the offline natural set); with --merge, evals_to_natural is "
                   "recomputed from the stored trajectories")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.reference_dir:
        args.reference = []
    return args


def shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with 0 <= I < N."""
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
        raise _error(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/2")
    return int(index), int(count)


INT_FIELDS = ("channel", "seed", "evaluations", "generations")
FLOAT_FIELDS = ("noise", "activation", "best_ever", "natural_best")


def read_runs(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Rows, trajectories and settings written by an earlier run into ``folder``."""
    try:
        with open(folder / "runs.csv", newline="") as handle:
            raw = list(csv.DictReader(handle))
        trajectories = json.loads((folder / "trajectories.json").read_text())
        settings = json.loads((folder / "settings.json").read_text())
    except (OSError, ValueError) as err:
        raise _error(f"--merge {folder}: {type(err).__name__}: {err}".splitlines()[0]) from None
    rows = []
    for number, row in enumerate(raw, start=2):
        try:
            parsed: dict[str, Any] = {"optimizer": row["optimizer"], "area": row["area"]}
            parsed.update({k: int(row[k]) for k in INT_FIELDS})
            parsed.update({k: float(row[k]) for k in FLOAT_FIELDS})
            parsed["evals_to_natural"] = int(row["evals_to_natural"]) if row["evals_to_natural"] else None
        except (KeyError, TypeError, ValueError) as err:
            raise _error(f"--merge {folder / 'runs.csv'} line {number}: bad row "
                         f"({type(err).__name__}: {err})") from None
        rows.append(parsed)
    return rows, trajectories, settings


def renatural(rows: list[dict[str, Any]], trajectories: list[dict[str, Any]], settings: dict[str, Any],
              natural_images: str) -> None:
    """Set ``natural_best`` and ``evals_to_natural`` of every row for the natural images
    ``natural_images``: the units' best natural score is computed again, and the evaluations to pass it
    are read from the stored trajectories (per generation, the best noise-free score shown)."""
    areas = sorted({r["area"] for r in rows})
    channels = sorted({r["channel"] for r in rows})
    _, units = build_units(areas, channels, int(settings["image_size"]), natural_images)
    best = {(u.area, u.channel): u.natural for u in units}
    key_fields = ("optimizer", "area", "channel", "noise", "seed")
    paths = {tuple(t[k] for k in key_fields): t["trajectory"] for t in trajectories}
    for row in rows:
        key = tuple(row[k] for k in key_fields)
        if key not in paths:
            raise _error(f"--natural: run {key} has no trajectory in the merged folders")
        row["natural_best"] = best[(row["area"], row["channel"])]
        row["evals_to_natural"] = next((int(e) for e, b in paths[key] if b > row["natural_best"]), None)
    settings["natural images"] = natural_images


def merge(folders: Sequence[str], out: Path, natural_images: str | None = None) -> int:
    rows: list[dict[str, Any]] = []
    trajectories: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    for folder in folders:
        more_rows, more_trajectories, more_settings = read_runs(Path(folder))
        rows += more_rows
        trajectories += more_trajectories
        key = "optimizers (first unit/seed)"
        used = {**settings.get(key, {}), **more_settings.get(key, {})}
        settings = {**settings, **more_settings, "optimizers (first unit/seed)": used}
    # the grid is what the merged runs cover, not the last folder's (a shard's) settings
    settings.pop("shard", None)
    settings["areas"] = sorted({str(row["area"]) for row in rows})
    settings["units"] = sorted({int(row["channel"]) for row in rows})
    settings["seeds"] = sorted({int(row["seed"]) for row in rows})
    levels = sorted({float(row["noise"]) for row in rows})
    settings["noise"] = "multiplicative, levels " + ", ".join(f"{n:g}" for n in levels)
    settings["merged from"] = [str(Path(f)) for f in folders]
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        key = (row["optimizer"], row["area"], row["channel"], row["noise"], row["seed"])
        if key in seen:
            raise _error(f"--merge: run {key} appears twice (the same job in two folders)")
        seen.add(key)
    if natural_images is not None:
        renatural(rows, trajectories, settings, natural_images)
    write_outputs(out, rows, trajectories, settings, versions(None))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from latentopt.errors import LatentoptError

    args = parse(argv)
    try:
        if args.merge:
            return merge(args.merge, Path(args.out), args.natural)
        return execute(args)
    except LatentoptError as err:
        print(f"sidebyside: error: {err}", file=sys.stderr)
        return 2


def execute(args: argparse.Namespace) -> int:
    import torch

    module = load_reference(args.reference_dir) if args.reference_dir else None
    torch.set_num_threads(args.threads)
    index, count = shard(args.shard)
    for label in args.ours:
        ours_kwargs(label, args.population)  # a bad preset or override fails before any unit is built
    natural_images = args.natural or "photos"
    generator, units = build_units(args.areas, args.units, args.image_size, natural_images)
    job = -1
    rows: list[dict[str, Any]] = []
    trajectories: list[dict[str, Any]] = []
    used: dict[str, dict[str, Any]] = {}
    for unit in units:
        for seed in args.seeds:
            initial = generator.initial_codes(args.population, rng=np.random.default_rng([int(seed), 1]))
            for noise in args.noise:
                for name in [*args.ours, *(REF_PREFIX + n for n in args.reference)]:
                    job += 1
                    if job % count != index:
                        continue
                    driver: Ours | Reference = (
                        Reference(module, name[len(REF_PREFIX):], initial, seed, args.budget)
                        if name.startswith(REF_PREFIX) else Ours(name, initial, seed, args.budget))
                    used.setdefault(name, driver.settings)
                    result = run(driver, unit, noise, seed, args.budget)
                    trajectories.append({"optimizer": name, "area": unit.area, "channel": unit.channel,
                                         "noise": noise, "seed": seed, "trajectory": result.pop("trajectory")})
                    rows.append({"optimizer": name, "area": unit.area, "channel": unit.channel, "noise": noise,
                                 "seed": seed, "natural_best": unit.natural, **result})
                    print(f"{name:24s} {unit.area}:{unit.channel} noise {noise:g} seed {seed}: "
                          f"{result['activation']:.3f} ({result['evaluations']} evals)", flush=True)
    settings = {"budget": args.budget, "population": args.population, "image_size": args.image_size,
                "generator": "fourier (max_frequency 10, init_scale 0.5)", "areas": args.areas, "units": args.units,
                "noise": "multiplicative, levels " + ", ".join(f"{n:g}" for n in args.noise), "seeds": args.seeds,
                "initial codes": "generator.initial_codes(population, rng=default_rng([seed, 1])), shared",
                "noise stream": "latentopt.blocks.noise_rng(seed, generation)",
                "natural images": natural_images,
                "budget rule": "whole generations, never above the budget; every shown code counts",
                "shard": args.shard, "optimizers (first unit/seed)": used}
    write_outputs(Path(args.out), rows, trajectories, settings, versions(args.reference_dir))
    return 0


def write_outputs(out: Path, rows: list[dict[str, Any]], trajectories: list[dict[str, Any]],
                  settings: dict[str, Any], found: dict[str, str]) -> None:
    """runs.csv, trajectories.json, settings.json and table.md in ``out`` (rows normalised here)."""
    normalise(rows)
    out.mkdir(parents=True, exist_ok=True)
    fields = ["optimizer", "area", "channel", "noise", "seed", "evaluations", "generations", "activation",
              "best_ever", "unit_best", "norm_activation", "norm_best_ever", "natural_best", "evals_to_natural"]
    with open(out / "runs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None or (isinstance(row[k], float) and np.isnan(row[k])) else row[k]
                             for k in fields})
    (out / "trajectories.json").write_text(json.dumps(trajectories))
    (out / "settings.json").write_text(json.dumps(settings, indent=1, default=str))
    (out / "table.md").write_text(table(rows, settings, found))
    print(f"wrote {out / 'runs.csv'}, {out / 'table.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
