"""Tuning along the generator's Hessian eigenvectors (Wang & Ponce, ICLR 2021, Fig. 6).

From a code ``z0`` (by default the best code of the last generation of an evolution's thread), images are
made along unit axes of code space: the top eigenvectors of the generator's metric (``experiment.metric``:
an ``.npz`` of ``eigvecs`` ``(d, k)`` and ``eigvals`` ``(k,)``, the file Hessian CMA-ES reads) and, as a
control, seeded random unit Gaussian directions. Axis ``u`` at distance ``t`` is the code ``z0 + t · u``; the
distances are fractions of ``‖z0‖`` (``distances_scale: norm``, default) or code units (``absolute``). Every
axis passes through ``z0`` at distance 0: that image is shown once per repeat and stands for distance 0 of
every axis (as a manifold's pole stands for its column).

The images are shown in blocks of ``block_size`` in a seeded random order (a fresh permutation per repeat),
with natural references, through :func:`latentopt.blocks.show_block`: the experiment runs on a rig exactly as
on a simulated subject. The design (``z0``, the axes, the distances, the codes, the order) is written to
``design.npz`` when the run starts; a resume rebuilds it and refuses to go on if it differs. The analysis
(:mod:`latentopt.analysis.axis_tuning`) tests, fits and classifies each axis' curve.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.checks import ConfigError, finite_number, integer
from latentopt.experiment import Recorder
from latentopt.experiments.fixed_design import FixedDesignExperiment, presentation_order
from latentopt.experiments.source_run import inherited_components, source_thread
from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.subject import Subject

DEFAULT_DISTANCES = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
"""Default distances along each axis: fractions of ``‖z0‖`` (our choice; the paper does not fix one)."""
SCALES = ("norm", "absolute")
CENTRE = "centre"
"""The id of ``z0``'s image, shared by every axis at distance 0."""


@dataclass
class AxisDesign:
    """What an axis-tuning experiment shows, fixed when it starts.

    Attributes:
        names: axis names, ``eig<rank>`` (top eigenvectors, rank 1 = largest eigenvalue) then ``rnd<j>``.
        kinds: per axis ``"top"`` or ``"random"``.
        ranks: ``(axes,)`` int64 eigenvector rank (1-based), 0 for a random axis.
        eigvals: ``(axes,)`` float64 eigenvalue of each axis, NaN for a random axis.
        directions: ``(axes, d)`` float64 unit rows.
        centre: ``(d,)`` float64 the code ``z0`` every axis passes through.
        distances: ``(n,)`` float64 increasing distances along each axis (code units).
        scale: the code-space length of distance 1 as configured (``‖z0‖`` for ``norm``, else 1).
        scale_kind: ``"norm"`` or ``"absolute"``.
        grid_index: ``(axes, n)`` int64: the unique image of each axis and distance.
        codes: ``(images, d)`` float32: the unique images' codes.
        image_ids: ``images`` ids (``eig1_d03``; ``centre`` for ``z0``).
        order: ``(presentations, 2)`` int64: ``(image, repeat)`` in the order shown.
        block_size: presentations per block.
        time_bins_ms: the subject's bin edges (empty when responses are not time-binned).
    """

    names: list[str]
    kinds: list[str]
    ranks: np.ndarray
    eigvals: np.ndarray
    directions: np.ndarray
    centre: np.ndarray
    distances: np.ndarray
    scale: float
    scale_kind: str
    grid_index: np.ndarray
    codes: np.ndarray
    image_ids: list[str]
    order: np.ndarray
    block_size: int
    time_bins_ms: np.ndarray

    @property
    def blocks(self) -> int:
        return -(-len(self.order) // self.block_size)

    def to_tree(self) -> dict[str, Any]:
        return {"names": np.asarray(self.names, dtype=str), "kinds": np.asarray(self.kinds, dtype=str),
                "ranks": self.ranks, "eigvals": self.eigvals, "directions": self.directions, "centre": self.centre,
                "distances": self.distances, "scale": float(self.scale), "scale_kind": self.scale_kind,
                "grid_index": self.grid_index, "codes": self.codes, "image_ids": np.asarray(self.image_ids, dtype=str),
                "order": self.order, "block_size": int(self.block_size), "time_bins_ms": self.time_bins_ms}

    @classmethod
    def from_tree(cls, tree: Mapping[str, Any]) -> AxisDesign:
        return cls([str(n) for n in tree["names"]], [str(k) for k in tree["kinds"]], np.asarray(tree["ranks"]),
                   np.asarray(tree["eigvals"]), np.asarray(tree["directions"]), np.asarray(tree["centre"]),
                   np.asarray(tree["distances"]), float(tree["scale"]), str(tree["scale_kind"]),
                   np.asarray(tree["grid_index"]), np.asarray(tree["codes"]), [str(i) for i in tree["image_ids"]],
                   np.asarray(tree["order"]), int(tree["block_size"]), np.asarray(tree["time_bins_ms"]))


def _npz_arrays(path: Path, names: Sequence[str], key: str) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` read without pickles, each real-valued and finite.

    Raises:
        ConfigError: one line naming ``key``, the file and the array that is missing, pickled or not numbers.
    """
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"{key}: {path} is not a readable .npz ({' '.join(str(err).split())})") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ConfigError(f"{key}: {path} is a single .npy array; give an .npz holding {', '.join(names)}")
    arrays = {}
    with data:
        for name in names:
            if name not in data.files:
                raise ConfigError(f"{key}: {path} holds no array {name!r} (it has {', '.join(data.files) or 'none'})")
            try:
                arrays[name] = data[name]
            except ValueError as err:  # numpy refuses an object array without allow_pickle
                raise ConfigError(f"{key}: {path}: array {name!r} is a pickled object array; save plain numbers "
                                  "with np.savez") from err
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                raise ConfigError(f"{key}: {path}: array {name!r} is unreadable "
                                  f"({' '.join(str(err).split())})") from err
    for name, array in arrays.items():
        if array.dtype.kind not in "iuf":
            raise ConfigError(f"{key}: {path}: array {name!r} must hold real numbers, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ConfigError(f"{key}: {path}: array {name!r} holds NaN or infinite values")
    return arrays


def load_metric(path: Any, *, key: str = "experiment.metric") -> tuple[np.ndarray, np.ndarray]:
    """The generator's metric eigenbasis from an ``.npz``: ``eigvecs`` ``(d, k)`` and ``eigvals`` ``(k,)``.

    The format Hessian CMA-ES reads (``latentopt_cmafamily.hessian.load_metric``), with the same rules:
    ``np.load(allow_pickle=False)``, orthonormal columns (``max |UᵀU − I| ≤ 1e-3``).

    Returns:
        ``(eigvecs (d, k), eigvals (k,))`` float64, sorted by decreasing eigenvalue (rank 1 first).

    Raises:
        ConfigError: no path, or the file is missing, unreadable, pickled, lacks an array, or its shapes are
            wrong (one line naming ``key`` and the file).
    """
    if path is None or str(path) == "":
        raise ConfigError(f"{key}: give the .npz of the generator's metric (arrays eigvecs (d, k) and eigvals (k,))")
    path = Path(str(path))
    arrays = _npz_arrays(path, ("eigvecs", "eigvals"), key)
    vectors, values = arrays["eigvecs"].astype(np.float64), arrays["eigvals"].astype(np.float64)
    if vectors.ndim != 2 or values.ndim != 1 or vectors.shape[1] != values.shape[0] or not values.size:
        raise ConfigError(f"{key}: {path}: eigvecs must be (d, k) and eigvals (k,) with k >= 1, got "
                          f"{vectors.shape} and {values.shape}")
    gram_error = float(np.abs(vectors.T @ vectors - np.eye(vectors.shape[1])).max())
    if gram_error > 1e-3:
        raise ConfigError(f"{key}: {path}: the columns of eigvecs are not orthonormal (max |UᵀU − I| = "
                          f"{gram_error:.2g}); is it (k, d) instead of (d, k)?")
    top = np.argsort(-values, kind="stable")
    return np.ascontiguousarray(vectors[:, top]), values[top]


def source_code(exp: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any], Path | None]:
    """``(z0 (d,) float64, source description, source run or None)`` from ``experiment.source`` or ``.code``.

    From a source run: the best-scoring code of the last generation of ``experiment.thread``.

    Raises:
        ConfigError: neither or both are given, or what they name is unusable (one line naming the key).
    """
    source, code_file = exp.get("source"), exp.get("code")
    if (source is None) == (code_file is None):
        raise ConfigError("experiment.source (a run folder) or experiment.code (an .npz holding `code` (d,)): "
                          "give one")
    if source is not None:
        thread, description = source_thread(source, str(exp.get("thread") or "main"))
        scores = np.where(np.isfinite(thread.scores[-1]), thread.scores[-1], -np.inf)
        if not np.isfinite(scores).any():
            raise ConfigError(f"experiment.source: the last generation of thread {description['thread']!r} in "
                              f"{source} has no finite score; give experiment.code instead")
        best = int(np.argmax(scores))
        description.update(generation=int(thread.codes.shape[0] - 1), member=best, score=float(scores[best]))
        return np.asarray(thread.codes[-1, best], dtype=np.float64), description, Path(source)
    path = Path(str(code_file))
    code = _npz_arrays(path, ("code",), "experiment.code")["code"].astype(np.float64)
    if code.ndim != 1 or not code.size:
        raise ConfigError(f"experiment.code: {path}: 'code' must be one code (d,), got shape {code.shape}")
    return code, {"code": str(path.absolute())}, None


def _ranks(value: Any, k: int, path: Any) -> list[int]:
    """``experiment.axes``: a count of top eigenvectors, or a list of different 1-based ranks, all <= k."""
    if isinstance(value, int) and not isinstance(value, bool):
        integer(value, "experiment.axes", minimum=0, maximum=10_000)
        ranks = list(range(1, value + 1))
    elif isinstance(value, (list, tuple)) and all(isinstance(r, int) and not isinstance(r, bool) for r in value):
        ranks = [int(r) for r in value]
        if len(set(ranks)) != len(ranks) or any(r < 1 for r in ranks):
            raise ConfigError(f"experiment.axes must list different ranks >= 1 (1 = largest eigenvalue), got {value!r}")
    else:
        raise ConfigError(f"experiment.axes must be a count of top eigenvectors or a list of ranks, got {value!r}")
    if ranks and max(ranks) > k:
        raise ConfigError(f"experiment.axes: rank {max(ranks)} asked for, but {path} holds {k} eigenvectors")
    return ranks


def _distances(value: Any) -> np.ndarray:
    """``experiment.distances``: at least 5 different finite numbers, sorted."""
    if value is None:
        value = list(DEFAULT_DISTANCES)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"experiment.distances must be a list of numbers, got {value!r}")
    numbers = np.asarray([finite_number(v, f"experiment.distances[{i}]") for i, v in enumerate(value)])
    if len(np.unique(numbers)) != len(numbers) or len(numbers) < 5:
        raise ConfigError(f"experiment.distances must hold at least 5 different numbers (a Gaussian has 4 "
                          f"parameters), got {list(value)!r}")
    return np.sort(numbers)


def build_axis_design(centre: np.ndarray, eigvecs: np.ndarray, eigvals: np.ndarray, *, ranks: Sequence[int],
                      random_axes: int, distances: np.ndarray, scale_kind: str, repeats: int, block_size: int,
                      seed: int, time_bins_ms: np.ndarray | None = None) -> AxisDesign:
    """The images along every axis (``z0`` once), and their seeded presentation order.

    Args:
        centre: ``(d,)`` the code ``z0``.
        eigvecs, eigvals: the metric, sorted by decreasing eigenvalue (:func:`load_metric`).
        ranks: the top axes, 1-based ranks into ``eigvals``.
        random_axes: how many seeded unit Gaussian directions (``default_rng([seed, 3])``) to add.
        distances: the distances along each axis, in units of the scale (sorted).
        scale_kind: ``"norm"`` (distances are fractions of ``‖z0‖``) or ``"absolute"`` (code units).
        repeats, block_size, seed: presentations of each image, per block, and the order's seed.
        time_bins_ms: the subject's bin edges, or None.

    Raises:
        ConfigError: no axis at all, or ``norm`` with ``‖z0‖ = 0``.
    """
    d = centre.shape[0]
    if not ranks and not random_axes:
        raise ConfigError("experiment.axes and experiment.random_axes: the design needs at least one axis")
    scale = float(np.linalg.norm(centre)) if scale_kind == "norm" else 1.0
    if scale == 0.0:
        raise ConfigError("experiment.distances_scale: norm, but the code z0 is 0; use absolute distances")
    rng = np.random.default_rng([int(seed), 3])  # the random axes' own stream
    noise = rng.standard_normal((random_axes, d))
    directions = np.concatenate([eigvecs[:, [r - 1 for r in ranks]].T.reshape(len(ranks), d),
                                 noise / np.linalg.norm(noise, axis=1, keepdims=True)])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    names = [f"eig{r}" for r in ranks] + [f"rnd{j + 1}" for j in range(random_axes)]
    steps = np.asarray(distances, dtype=np.float64) * scale
    codes: list[np.ndarray] = []
    ids: list[str] = []
    grid_index = np.zeros((len(names), len(steps)), dtype=np.int64)
    for a, name in enumerate(names):
        for j, t in enumerate(steps):
            if t == 0.0 and CENTRE in ids:
                grid_index[a, j] = ids.index(CENTRE)
                continue
            grid_index[a, j] = len(codes)
            codes.append(centre + t * directions[a])
            ids.append(CENTRE if t == 0.0 else f"{name}_d{j:02d}")
    bins = np.zeros(0) if time_bins_ms is None else np.asarray(time_bins_ms, dtype=np.float64)
    return AxisDesign(names, ["top"] * len(ranks) + ["random"] * random_axes,
                      np.asarray(list(ranks) + [0] * random_axes, dtype=np.int64),
                      np.concatenate([eigvals[[r - 1 for r in ranks]], np.full(random_axes, np.nan)]),
                      directions, np.asarray(centre, dtype=np.float64), steps, scale, scale_kind, grid_index,
                      np.stack(codes).astype(np.float32), ids, presentation_order(len(codes), repeats, seed),
                      int(block_size), bins)


class AxisTuning(FixedDesignExperiment):
    """Show an :class:`AxisDesign` to a subject in blocks (with natural references), record it, report the curves.

    Args:
        design, generator, subject, objective, seed, references, reference_every, recorder, source: as
            :class:`~latentopt.experiments.fixed_design.FixedDesignExperiment`.
        metric: the metric file the axes came from (recorded in provenance).
        alpha, aic_margin, min_drop: the classification's settings (:mod:`latentopt.analysis.axis_tuning`).
    """

    name = "axis_tuning"
    part = "axes"
    design_: AxisDesign

    def __init__(self, design: AxisDesign, generator: Generator, subject: Subject, objective: Objective, *,
                 seed: int = 0, references: tuple[list[str], torch.Tensor] | None = None, reference_every: int = 1,
                 recorder: Recorder | None = None, source: Mapping[str, Any] | None = None, metric: str = "",
                 alpha: float = 0.01, aic_margin: float = 2.0, min_drop: float = 0.2) -> None:
        super().__init__(design, generator, subject, objective, seed=seed, references=references,
                         reference_every=reference_every, recorder=recorder, source=source)
        self.metric = metric
        self.alpha, self.aic_margin, self.min_drop = float(alpha), float(aic_margin), float(min_drop)

    def provenance(self) -> dict[str, Any]:
        d = self.design_
        return {
            "experiment": {"name": self.name, **self.component_provenance.get("experiment", {}),
                           "source": self.source, "metric": self.metric, "axes": d.names,
                           "ranks": d.ranks.tolist(), "distances": d.distances.tolist(), "scale": d.scale,
                           "scale_kind": d.scale_kind, "images": len(d.image_ids), "presentations": len(d.order),
                           "blocks": d.blocks, "alpha": self.alpha, "aic_margin": self.aic_margin,
                           "min_drop": self.min_drop},
            "generator": self.described(self.generator, "generator"),
            "subject": self.described(self.subject, "subject"),
            "objective": self.described(self.objective, "objective"),
        }

    def report(self, run_dir: Path) -> dict[str, Any]:
        from latentopt.experiments.axis_tuning_report import write_axis_tuning_report

        return write_axis_tuning_report(run_dir, alpha=self.alpha, aic_margin=self.aic_margin,
                                        min_drop=self.min_drop)


def _analysis_settings(exp: Mapping[str, Any]) -> dict[str, float]:
    alpha = finite_number(exp.get("alpha", 0.01), "experiment.alpha", minimum=0.0)
    if alpha >= 1:
        raise ConfigError(f"experiment.alpha must be in (0, 1), got {alpha!r}")
    min_drop = finite_number(exp.get("min_drop", 0.2), "experiment.min_drop", minimum=0.0, inclusive=True)
    if min_drop >= 1:
        raise ConfigError(f"experiment.min_drop must be in [0, 1), got {min_drop!r}")
    return {"alpha": alpha, "min_drop": min_drop,
            "aic_margin": finite_number(exp.get("aic_margin", 2.0), "experiment.aic_margin", minimum=0.0,
                                        inclusive=True)}


def axis_tuning_from_config(config: dict[str, Any], assembly: Any) -> AxisTuning:
    """The ``axis_tuning`` experiment of a plain config; see ``conf/experiment/axis_tuning.yaml`` for its keys."""
    exp = config["experiment"]
    repeats = integer(exp.get("repeats", 2), "experiment.repeats", minimum=1, maximum=100)
    block_size = integer(exp.get("block_size", 40), "experiment.block_size", minimum=1, maximum=10_000)
    reference_every = integer(exp.get("reference_every", 1), "experiment.reference_every", minimum=1,
                              maximum=10**6)
    random_axes = integer(exp.get("random_axes", 4), "experiment.random_axes", minimum=0, maximum=10_000)
    distances = _distances(exp.get("distances"))
    scale_kind = exp.get("distances_scale", "norm")
    if scale_kind not in SCALES:
        raise ConfigError(f"experiment.distances_scale must be one of {', '.join(SCALES)}, got {scale_kind!r}")
    settings = _analysis_settings(exp)
    centre, source, source_run = source_code(exp)
    eigvecs, eigvals = load_metric(exp.get("metric"))
    ranks = _ranks(exp.get("axes", 8), eigvals.shape[0], exp.get("metric"))
    nodes, inherited = inherited_components(config, exp, source_run)
    subject = assembly.subject(nodes["subject"])
    generator = assembly.generator(nodes["generator"])
    objective = assembly.objective(nodes["objective"], "objective", subject.n_channels)
    where = "experiment.source" if source_run is not None else "experiment.code"
    if centre.shape[0] != generator.latent_dim:
        raise ConfigError(f"{where}: its code has {centre.shape[0]} dimensions but the generator takes "
                          f"{generator.latent_dim}; use the source run's generator")
    if eigvecs.shape[0] != generator.latent_dim:
        raise ConfigError(f"experiment.metric: {exp.get('metric')}: eigvecs has d = {eigvecs.shape[0]} rows but the "
                          f"generator takes d = {generator.latent_dim} (a metric of another generator?)")
    design = build_axis_design(centre, eigvecs, eigvals, ranks=ranks, random_axes=random_axes, distances=distances,
                               scale_kind=str(scale_kind), repeats=repeats, block_size=block_size,
                               seed=assembly.seed, time_bins_ms=subject.time_bins_ms)
    source["inherited"] = inherited
    return AxisTuning(design, generator, subject, objective, seed=assembly.seed,
                      references=assembly.references(generator.image_size), reference_every=reference_every,
                      source=source, metric=str(Path(str(exp["metric"])).absolute()), alpha=settings["alpha"],
                      aic_margin=settings["aic_margin"], min_drop=settings["min_drop"])
