"""Summarise a benchmark folder: one CSV row per run, a markdown table, mean trajectories.

Metrics per run (scores are the objective's, higher is better):

* ``activation``: the best noise-free score among the final generation's codes (all of them shown
  again to the same subject without noise): what the run ends with, without noisy maxima;
* ``activation_best_scored``: noise-free score of the single code the noisy scores ranked first in
  the final generation (lower under noise: noise picks the winner);
* ``norm_best_ever``: activation / the best activation of any run on the same unit (GECCO 2022);
* ``norm_gradient``: activation / white-box gradient ascent's best on that unit (upper reference:
  Adam on the codes from 4 starts, ``--gradient-steps`` steps at ``--gradient-lr``; measured on the
  quick profile's units, 300 steps at 0.2 reached 0.90-0.96 of the best evolved activation on the
  analytic V1 cell and 1.26-1.34x on V4, where 100 steps at 0.05 reached 0.44-0.50 and 1.04-1.13x);
* ``norm_natural``: activation / the best noise-free score of the natural reference images;
* ``evals_to_90``: evaluations until the generation-mean score first reaches 90 % of its final
  value (the mean of the last 3 generations' means; empty when that is <= 0);
* ``evals_to_90_gain``: evaluations until it first covers 90 % of the way from its first to its
  final value (the same question for a unit whose baseline is far from 0);
* ``generator_s``, ``subject_s``, ``optimizer_s``: wall time split, summed over generations.

    python benchmarks/suite/summarize.py benchmarks/results/quick [--gradient-steps 300] [--gradient-lr 0.2]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

CMA_FAMILY_PREFIXES = (
    "bench_sep_cma",
    "bench_cholesky_cma",
    "bench_sphere_cma",
    "bench_cmaes_diag",
    "bench_ng",
    "fc6_cmaes_diag",
    "biggan_",
    "sep_cma",
    "cholesky_cma",
    "sphere_cma",
    "hessian_cma",
    "cmaes",
)
GA_REFERENCE = "ga_ponce"
GRADIENT_STEPS = 300  # Adam steps and learning rate of the gradient-ascent reference (module docstring)
GRADIENT_LR = 0.2


class UnitLab:
    """Noise-free generator + subject + objective of one unit, with its reference activations."""

    def __init__(self, cfg: dict[str, Any], *, gradient_steps: int, gradient_lr: float = GRADIENT_LR) -> None:
        import torch
        from latentopt_cmafamily import gradient_ascent

        from latentopt.assembly import Assembly
        from latentopt.references import load_references

        assembly = Assembly(cfg)  # the components as a run builds them (latentopt.assembly)
        subject_cfg = {**cfg["subject"], "noise": {"kind": "none", "level": 0.0, "gain": 1.0}}
        self.generator = assembly.generator(cfg["generator"])
        self.subject = assembly.subject(subject_cfg)
        self.objective = assembly.component("objective", cfg["objective"], "objective")
        names = list(cfg["experiment"].get("references") or [])
        self.natural = float("nan")
        if names:
            ids, images = load_references(names, self.generator.image_size)
            self.natural = float(np.max(self.score_images(images, ids)))
        self.gradient = float("nan")
        if self.generator.differentiable and self.subject.differentiable and gradient_steps > 0:
            torch.manual_seed(0)
            start = self.generator.initial_codes(4, rng=np.random.default_rng(0))
            result = gradient_ascent(self.generator, self.subject, self.objective, start, steps=gradient_steps,
                                     lr=gradient_lr)
            self.gradient = float(result.best_scores.max())

    def score_images(self, images: Any, ids: list[str]) -> np.ndarray:
        responses = self.subject.respond(images, image_ids=ids, rng=np.random.default_rng(0))
        return np.asarray(self.objective.score(responses), dtype=np.float64)

    def activations(self, codes: np.ndarray) -> np.ndarray:
        """Noise-free scores ``(n,)`` of codes ``(n, d)``."""
        images = self.generator.generate(np.asarray(codes, dtype=np.float32))
        return self.score_images(images, [f"final_{k}" for k in range(codes.shape[0])])


def _weights_sha256(run_dir: Path) -> str:
    """SHA-256 of the generator's weight file(s) as the run's provenance recorded them ("" for none)."""
    provenance = json.loads((run_dir / "provenance.json").read_text()).get("generator", {})
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("sha256"), str):
                found.append(value["sha256"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(provenance)
    return ",".join(sorted(set(found)))


def run_row(run_dir: Path, labs: dict[str, UnitLab], gradient_steps: int,
            gradient_lr: float = GRADIENT_LR) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from latentopt.records import load_run

    loaded = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    assert isinstance(loaded, dict)
    cfg = {str(k): v for k, v in loaded.items()}
    choices = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    record = load_run(run_dir)
    scores = record.scores  # (generations, population_size)
    population_size = scores.shape[1]
    unit_key = json.dumps(
        {k: cfg[k] for k in ("generator", "objective")}
        | {
            "subject": {k: v for k, v in cfg["subject"].items() if k != "noise"},
            "references": cfg["experiment"].get("references"),
        },
        sort_keys=True,
    )
    if unit_key not in labs:
        labs[unit_key] = UnitLab(cfg, gradient_steps=gradient_steps, gradient_lr=gradient_lr)
    lab = labs[unit_key]
    last = scores[-1]
    final = lab.activations(record.codes[-1])
    best_scored = int(np.nanargmax(last)) if np.isfinite(last).any() else 0
    trajectory = np.nanmean(scores, axis=1)
    subject = cfg["subject"]
    area = f"{subject.get('layer', 'analytic')}" if subject["name"] == "cnn_unit" else "V1 (analytic)"
    return {
        "run": str(run_dir),
        "optimizer": choices.get("optimizer"),
        "subject": choices.get("subject"),
        "area": area,
        "channel": cfg["objective"].get("channel"),
        "noise": choices.get("noise", "none"),
        "generator": choices.get("generator"),
        "generator_weights_sha256": _weights_sha256(run_dir),
        "seed": cfg.get("seed"),
        "unit_key": unit_key,
        "evaluations": int(scores.size),
        "generations": int(scores.shape[0]),
        "activation": float(np.max(final)),
        "activation_best_scored": float(final[best_scored]),
        "gradient_reference": lab.gradient,
        "natural_reference": lab.natural,
        "best_recorded": float(np.nanmax(scores)),
        "evals_to_90": evaluations_to(trajectory, population_size, 0.9),
        "evals_to_90_gain": evaluations_to(trajectory, population_size, 0.9, from_start=True),
        "trajectory": trajectory.tolist(),
        "population_size": population_size,
        **{k: float(np.sum(v)) for k, v in record.timings.items() if k != "total_s"},
        "optimizer_settings": record.provenance.get("optimizer", {}),
    }


def evaluations_to(trajectory: np.ndarray, population_size: int, fraction: float, *,
                   from_start: bool = False) -> float:
    """Evaluations until the generation means ``trajectory`` (G,) first reach ``fraction`` of their
    final value (mean of the last 3), counting whole generations of ``population_size``.

    ``from_start``: ``fraction`` of the way from the first generation's mean to the final value
    instead. NaN when the target is undefined (final value <= 0, or no gain from the start).
    """
    trajectory = np.asarray(trajectory, dtype=np.float64)
    first, end = float(trajectory[0]), float(np.mean(trajectory[-3:]))
    if from_start:
        if not end > first:
            return float("nan")
        target = first + fraction * (end - first)
    else:
        if not end > 0:
            return float("nan")
        target = fraction * end
    reached = np.flatnonzero(trajectory >= target)
    return float((reached[0] + 1) * population_size) if reached.size else float("nan")


def normalise(rows: list[dict[str, Any]]) -> None:
    best_ever: dict[str, float] = defaultdict(lambda: -np.inf)
    for row in rows:
        best_ever[row["unit_key"]] = max(best_ever[row["unit_key"]], row["activation"])
    for row in rows:
        row["best_ever"] = best_ever[row["unit_key"]]
        row["norm_best_ever"] = row["activation"] / row["best_ever"] if row["best_ever"] > 0 else np.nan
        # A ratio to a non-positive reference means nothing (a unit silent for every natural image).
        row["norm_gradient"] = (
            row["activation"] / row["gradient_reference"] if row["gradient_reference"] > 0 else np.nan
        )
        row["norm_natural"] = row["activation"] / row["natural_reference"] if row["natural_reference"] > 0 else np.nan


def _column(row: dict[str, Any], several_generators: bool) -> tuple[str, ...]:
    return (row["generator"], row["area"], row["noise"]) if several_generators else (row["area"], row["noise"])


def markdown(rows: list[dict[str, Any]]) -> str:
    """Mean normalised activation (vs best ever), optimizer x (area, noise), plus overall columns;
    with more than one generator the columns are (generator, area, noise)."""
    several = len({r["generator"] for r in rows}) > 1
    columns = sorted({_column(r, several) for r in rows})
    optimizers = sorted({r["optimizer"] for r in rows})
    head = [
        "optimizer",
        *(" / ".join(column) for column in columns),
        "all",
        "vs gradient",
        "vs natural",
        "evals to 90%",
        "optimizer s/run",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in optimizers:
        mine = [r for r in rows if r["optimizer"] == name]
        cells = [name]
        for column in columns:
            values = [r["norm_best_ever"] for r in mine if _column(r, several) == column]
            cells.append(f"{np.mean(values):.3f}" if values else "")
        for key in ("norm_best_ever", "norm_gradient", "norm_natural", "evals_to_90", "optimizer_s"):
            column_values = np.array([r[key] for r in mine], dtype=np.float64)
            finite = column_values[np.isfinite(column_values)]
            cells.append(f"{finite.mean():.3g}" if finite.size else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]]) -> str:
    means = {
        name: float(np.mean([r["norm_best_ever"] for r in rows if r["optimizer"] == name]))
        for name in {r["optimizer"] for r in rows}
    }
    family = {k: v for k, v in means.items() if k.startswith(CMA_FAMILY_PREFIXES)}
    if GA_REFERENCE not in means or not family:
        return "no GA/CMA-family comparison in this profile"
    best = max(family, key=family.__getitem__)
    ratio = family[best] / means[GA_REFERENCE]
    lines = [
        f"best CMA-family optimizer {best}: {family[best]:.3f} mean normalised activation, "
        f"{ratio:.3f}x {GA_REFERENCE} ({means[GA_REFERENCE]:.3f}); target >= 1.5x: "
        f"{'MET' if ratio >= 1.5 else 'NOT MET'}"
    ]
    seeds = sorted({str(r["seed"]) for r in rows})
    for name in sorted(family, key=family.__getitem__, reverse=True):
        per_seed = []
        for seed in seeds:
            mine = [r["norm_best_ever"] for r in rows if r["optimizer"] == name and str(r["seed"]) == seed]
            ga = [r["norm_best_ever"] for r in rows if r["optimizer"] == GA_REFERENCE and str(r["seed"]) == seed]
            if mine and ga:
                per_seed.append(f"seed {seed} {np.mean(mine) / np.mean(ga):.2f}x")
        lines.append(f"- {name} / {GA_REFERENCE}: {family[name] / means[GA_REFERENCE]:.3f}x ({', '.join(per_seed)})")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one panel per (generator,) area and noise level: averaging across them would mix unlike curves
    several = len({r["generator"] for r in rows}) > 1
    columns = sorted({_column(r, several)[:-1] for r in rows})
    noises = sorted({r["noise"] for r in rows})
    fig, axes = plt.subplots(
        len(noises), len(columns), figsize=(5 * len(columns), 3.6 * len(noises)), squeeze=False
    )
    for i, noise in enumerate(noises):
        for j, column in enumerate(columns):
            ax = axes[i][j]
            for name in sorted({r["optimizer"] for r in rows}):
                mine = [
                    r for r in rows
                    if r["noise"] == noise and _column(r, several)[:-1] == column and r["optimizer"] == name
                ]
                if not mine:
                    continue
                length = min(len(r["trajectory"]) for r in mine)
                curves = np.array([np.asarray(r["trajectory"][:length]) / r["best_ever"] for r in mine])
                evaluations = np.arange(1, length + 1) * mine[0]["population_size"]
                ax.plot(evaluations, curves.mean(0), label=f"{name} (n={len(mine)})")
            ax.set(title=" / ".join([*column, f"noise {noise}"]), xlabel="evaluations",
                   ylabel="generation mean / best ever")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def generator_lines(folder: Path, rows: list[dict[str, Any]]) -> dict[str, str]:
    """What each generator is in this benchmark: the ones that ran (with their weights' SHA-256) and
    the weight-gated ones run.py left out (``generators.json``)."""
    lines: dict[str, str] = {}
    for name in sorted({str(r["generator"]) for r in rows}):
        mine = [r for r in rows if str(r["generator"]) == name]
        digests = sorted({r["generator_weights_sha256"] for r in mine if r["generator_weights_sha256"]})
        weights = f"weights SHA-256 {', '.join(d[:16] for d in digests)}" if digests else "no weight file"
        lines[name] = f"{len(mine)} runs ({weights})"
    status_file = folder / "generators.json"
    gated = json.loads(status_file.read_text()) if status_file.exists() else {}
    for name, status in gated.items():
        lines.setdefault(name, status)
    if not any(n.startswith(("deepsim", "biggan")) for n in lines):
        lines["DeePSim/BigGAN"] = "not in this benchmark; offline generators only (conclusions hold for them alone)"
    return lines


def summarize(
    folder: Path, *, gradient_steps: int = GRADIENT_STEPS, gradient_lr: float = GRADIENT_LR
) -> list[dict[str, Any]]:
    """Write ``runs.csv``, ``summary.md`` and ``trajectories.png`` into ``folder``."""
    from latentopt.records import library_versions

    # every run folder has latentopt's config.yaml; Hydra's own copy in <run>/.hydra/ is not a run
    run_dirs = sorted(p.parent for p in (folder / "runs").rglob("config.yaml") if p.parent.name != ".hydra")
    labs: dict[str, UnitLab] = {}
    rows = [run_row(d, labs, gradient_steps, gradient_lr) for d in run_dirs if (d / "summary.json").exists()]
    missing = len(run_dirs) - len(rows)
    if not rows:
        raise SystemExit(f"summarize: no finished runs under {folder / 'runs'}")
    normalise(rows)
    keys = [k for k in rows[0] if k not in ("trajectory", "optimizer_settings", "unit_key")]
    with open(folder / "runs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, folder / "trajectories.png")
    versions = library_versions()
    settings = {r["optimizer"]: r["optimizer_settings"] for r in rows}
    weights = generator_lines(folder, rows)
    text = "\n\n".join(
        [
            f"# Benchmark summary: {folder.name}",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"Runs: {len(rows)} finished" + (f", {missing} unfinished (left out)" if missing else ""),
            "Generators:\n\n" + "\n".join(f"- {k}: {v}" for k, v in weights.items()),
            f"Gradient-ascent reference (vs gradient): the best noise-free score of {gradient_steps} Adam steps "
            f"at lr {gradient_lr} on the codes, from 4 starts, per unit",
            "Mean normalised activation (noise-free activation of the final best code / best ever on the "
            "unit), by area / noise:",
            markdown(rows),
            verdict(rows),
            "Resolved optimizer settings:\n\n```json\n" + json.dumps(settings, indent=1, default=str) + "\n```",
        ]
    )
    (folder / "summary.md").write_text(text + "\n")
    print(markdown(rows), "\n", verdict(rows), sep="")
    print(f"wrote {folder / 'runs.csv'}, {folder / 'summary.md'}, {folder / 'trajectories.png'}")
    return rows


def main() -> None:
    from latentopt.runtime import maybe_reexec_with_tcmalloc

    maybe_reexec_with_tcmalloc()  # torch on glibc malloc is several times slower here (runtime.py)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--gradient-steps", type=int, default=GRADIENT_STEPS, help="Adam steps of the reference")
    parser.add_argument("--gradient-lr", type=float, default=GRADIENT_LR, help="its learning rate")
    args = parser.parse_args()
    if args.gradient_steps < 0 or not args.gradient_lr > 0:
        raise SystemExit(f"summarize: --gradient-steps must be >= 0 and --gradient-lr > 0, got "
                         f"{args.gradient_steps} and {args.gradient_lr}")
    summarize(args.folder, gradient_steps=args.gradient_steps, gradient_lr=args.gradient_lr)


if __name__ == "__main__":
    main()
