"""Manifold tuning maps (Wang & Ponce, Cell Reports 2022): a neuron's responses over spheres in code space.

After an evolution, the codes it evaluated define the spheres: PCA (50 components) of all of them,
PC1 signed toward the last generation, radius = mean norm of the last generation's codes. Each sphere
``(e1, e2, e3)`` is sampled on a grid of angles ``θ, φ`` (default 11 x 11, -90..90 degrees):
``code = radius · (cos θ cos φ · e1 + sin θ cos φ · e2 + sin φ · e3)``. At the poles (φ = ±90°) every θ
gives the same image: it is shown once (per repeat) and stands for the whole pole column.

The grid images are shown in blocks of ``block_size`` in a seeded random order (each repeat a fresh
permutation), with natural references, through :func:`latentopt.blocks.show_block`: the experiment
runs on a rig exactly as on a simulated subject. The design (codes, bases, order) is written to
``design.npz`` when the run starts; a resume rebuilds it and refuses to go on if it differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.checks import ConfigError, integer
from latentopt.experiments.fixed_design import THUMBNAIL as THUMBNAIL  # re-exported: both lived here
from latentopt.experiments.fixed_design import FixedDesignExperiment, presentation_order
from latentopt.experiments.source_run import INHERITABLE as INHERITABLE
from latentopt.experiments.source_run import inherited_components, source_thread

DEFAULT_SPHERES = ("PC1_PC2_PC3", "PC1_PC49_PC50", "PC1_RND1_RND2")


@dataclass
class ManifoldDesign:
    """What a manifold experiment shows, fixed when it starts.

    Attributes:
        names: sphere names, e.g. ``PC1_PC2_PC3``.
        bases: ``(spheres, 3, d)`` float64 orthonormal rows ``e1, e2, e3`` of each sphere.
        radius: the spheres' radius (code units).
        thetas_deg, phis_deg: ``(nθ,)``, ``(nφ,)`` grid angles in degrees.
        grid_index: ``(spheres, nθ, nφ)`` int: the unique image of each grid point.
        codes: ``(images, d)`` float32: the unique images' codes.
        image_ids: ``images`` ids (``PC1_PC2_PC3_t03_p05``; a pole ``PC1_PC2_PC3_pole_p10``).
        order: ``(presentations, 2)`` int: ``(image, repeat)`` in the order shown.
        block_size: presentations per block.
        time_bins_ms: the subject's bin edges (empty when responses are not time-binned).
    """

    names: list[str]
    bases: np.ndarray
    radius: float
    thetas_deg: np.ndarray
    phis_deg: np.ndarray
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
        return {"names": np.asarray(self.names, dtype=str), "bases": self.bases, "radius": float(self.radius),
                "thetas_deg": self.thetas_deg, "phis_deg": self.phis_deg, "grid_index": self.grid_index,
                "codes": self.codes, "image_ids": np.asarray(self.image_ids, dtype=str), "order": self.order,
                "block_size": int(self.block_size), "time_bins_ms": self.time_bins_ms}

    @classmethod
    def from_tree(cls, tree: Mapping[str, Any]) -> ManifoldDesign:
        return cls([str(n) for n in tree["names"]], np.asarray(tree["bases"]), float(tree["radius"]),
                   np.asarray(tree["thetas_deg"]), np.asarray(tree["phis_deg"]), np.asarray(tree["grid_index"]),
                   np.asarray(tree["codes"]), [str(i) for i in tree["image_ids"]], np.asarray(tree["order"]),
                   int(tree["block_size"]), np.asarray(tree["time_bins_ms"]))


def sphere_bases(names: list[str], codes: np.ndarray, last: np.ndarray, *, n_components: int,
                 seed: int) -> tuple[dict[str, np.ndarray], float]:
    """The bases ``(3, d)`` of the named spheres and the radius, from the codes of an evolution.

    A name is three tokens joined by ``_``: ``PCk`` (k-th principal component, 1-based) or ``RND1`` /
    ``RND2`` (seeded random unit vectors orthogonal to the ``n_components`` PCs).

    Raises:
        ConfigError: a name is malformed, or the codes are too few for the PCs it asks for.
    """
    from latentopt.analysis import pca_sphere_bases

    try:
        pca = pca_sphere_bases(codes, last, n_components=n_components, seed=seed)
    except ValueError as err:
        raise ConfigError(f"experiment.n_components: {err}") from err
    random = {"RND1": pca.bases["PC1_RND1_RND2"][1], "RND2": pca.bases["PC1_RND1_RND2"][2]}
    bases = {}
    for name in names:
        tokens = name.split("_")
        rows = []
        for token in tokens:
            if token in random:
                rows.append(random[token])
            elif token.startswith("PC") and token[2:].isdigit() and 1 <= int(token[2:]) <= n_components:
                rows.append(pca.pcs[int(token[2:]) - 1])
            else:
                raise ConfigError(f"experiment.spheres: {name!r} must be three of PC1..PC{n_components}, RND1, "
                                  "RND2 joined by '_' (e.g. PC1_PC2_PC3)")
        if len(rows) != 3 or len(set(tokens)) != 3:
            raise ConfigError(f"experiment.spheres: {name!r} must name three different axes (e.g. PC1_PC2_PC3)")
        bases[name] = np.stack(rows).astype(np.float64)
    return bases, float(pca.radius)


def build_design(bases: Mapping[str, np.ndarray], radius: float, *, grid: int, span_deg: float, repeats: int,
                 block_size: int, seed: int, time_bins_ms: np.ndarray | None = None) -> ManifoldDesign:
    """The grid images of every sphere (poles once), and their seeded presentation order."""
    from latentopt.analysis import grid_angles, sphere_codes

    thetas = grid_angles(grid, span_deg)
    phis = grid_angles(grid, span_deg)
    poles = np.isclose(np.abs(phis), 90.0)
    codes: list[np.ndarray] = []
    ids: list[str] = []
    names = list(bases)
    grid_index = np.zeros((len(names), grid, grid), dtype=np.int64)
    for s, name in enumerate(names):
        points = sphere_codes(bases[name], radius, thetas, phis)  # (nθ, nφ, d)
        for j in range(grid):
            for i in range(grid):
                if poles[j] and i > 0:  # the same image as θ_0 of this pole column
                    grid_index[s, i, j] = grid_index[s, 0, j]
                    continue
                grid_index[s, i, j] = len(codes)
                codes.append(points[i, j])
                ids.append(f"{name}_pole_p{j:02d}" if poles[j] else f"{name}_t{i:02d}_p{j:02d}")
    order = presentation_order(len(codes), repeats, seed)
    bins = np.zeros(0) if time_bins_ms is None else np.asarray(time_bins_ms, dtype=np.float64)
    return ManifoldDesign(names, np.stack([bases[n] for n in names]), float(radius), thetas, phis, grid_index,
                          np.stack(codes).astype(np.float32), ids, order.astype(np.int64), int(block_size), bins)


class Manifold(FixedDesignExperiment):
    """Show a :class:`ManifoldDesign` to a subject in blocks (with natural references) and record it.

    The arguments are :class:`~latentopt.experiments.fixed_design.FixedDesignExperiment`'s; the default
    analysis fits the ``objective``'s scores.
    """

    name = "manifold"
    part = "grid"
    design_: ManifoldDesign

    def provenance(self) -> dict[str, Any]:
        d = self.design_
        return {
            "experiment": {"name": self.name, **self.component_provenance.get("experiment", {}),
                           "source": self.source, "spheres": d.names, "radius": d.radius,
                           "grid": [len(d.thetas_deg), len(d.phis_deg)], "images": len(d.image_ids),
                           "presentations": len(d.order), "blocks": d.blocks},
            "generator": self.described(self.generator, "generator"),
            "subject": self.described(self.subject, "subject"),
            "objective": self.described(self.objective, "objective"),
        }

    def report(self, run_dir: Path) -> dict[str, Any]:
        from latentopt.experiments.manifold_report import write_manifold_report

        return write_manifold_report(run_dir)


def _source_codes(exp: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any], Path | None]:
    """``(all codes (n, d), last generation's codes (m, d), source description, source run or None)``."""
    source, codes_file = exp.get("source"), exp.get("codes")
    if (source is None) == (codes_file is None):
        raise ConfigError("experiment.source (a run folder) or experiment.codes (an .npz of codes): give one")
    if source is not None:
        thread, description = source_thread(source, str(exp.get("thread") or "main"))
        codes = thread.codes
        return codes.reshape(-1, codes.shape[-1]), codes[-1], description, Path(source)
    return (*_codes_file(Path(str(codes_file))), None)


def _codes_file(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Codes from an .npz: ``codes`` ``(n, d)`` or ``(generations, population, d)``; optional ``last`` ``(m, d)``."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "codes" not in npz.files:
                raise ConfigError(f"experiment.codes: {path} holds no array named 'codes' (it has "
                                  f"{', '.join(npz.files) or 'nothing'})")
            codes = np.asarray(npz["codes"], dtype=np.float64)
            last = np.asarray(npz["last"], dtype=np.float64) if "last" in npz.files else None
    except (OSError, ValueError, EOFError) as err:
        raise ConfigError(f"experiment.codes: {path} is not a readable .npz ({' '.join(str(err).split())})") from err
    if codes.ndim == 3:
        last = codes[-1] if last is None else last
        codes = codes.reshape(-1, codes.shape[-1])
    if codes.ndim != 2 or (last is not None and (last.ndim != 2 or last.shape[1] != codes.shape[1])):
        raise ConfigError(f"experiment.codes: {path}: 'codes' must be (n, d) or (generations, population, d) "
                          "and 'last' (m, d)")
    if not np.isfinite(codes).all() or (last is not None and not np.isfinite(last).all()):
        raise ConfigError(f"experiment.codes: {path} holds NaN or infinite codes")
    return codes, codes if last is None else last, {"codes": str(path.absolute())}


def manifold_from_config(config: dict[str, Any], assembly: Any) -> Manifold:
    """The ``manifold`` experiment of a plain config; see ``conf/experiment/manifold.yaml`` for its keys."""
    exp = config["experiment"]
    grid = integer(exp.get("grid", 11), "experiment.grid", minimum=3, maximum=181)
    span = exp.get("span_deg", 90.0)
    if isinstance(span, bool) or not isinstance(span, (int, float)) or not 0 < float(span) <= 90:
        raise ConfigError(f"experiment.span_deg must be a number in (0, 90], got {span!r}")
    repeats = integer(exp.get("repeats", 1), "experiment.repeats", minimum=1, maximum=100)
    block_size = integer(exp.get("block_size", 40), "experiment.block_size", minimum=1, maximum=10_000)
    reference_every = integer(exp.get("reference_every", 1), "experiment.reference_every", minimum=1,
                              maximum=10**6)
    n_components = integer(exp.get("n_components", 50), "experiment.n_components", minimum=3, maximum=10_000)
    spheres = exp.get("spheres") or list(DEFAULT_SPHERES)
    if isinstance(spheres, str) or not all(isinstance(s, str) for s in spheres) or len(set(spheres)) != len(spheres):
        raise ConfigError(f"experiment.spheres must be a list of different sphere names, got {spheres!r}")
    codes, last, source, source_run = _source_codes(exp)
    nodes, inherited = inherited_components(config, exp, source_run)
    bases, radius = sphere_bases(list(spheres), codes, last, n_components=n_components, seed=assembly.seed)
    subject = assembly.subject(nodes["subject"])
    generator = assembly.generator(nodes["generator"])
    objective = assembly.objective(nodes["objective"], "objective", subject.n_channels)
    design = build_design(bases, radius, grid=grid, span_deg=float(span), repeats=repeats, block_size=block_size,
                          seed=assembly.seed, time_bins_ms=subject.time_bins_ms)
    source["inherited"] = inherited
    return Manifold(design, generator, subject, objective, seed=assembly.seed,
                    references=assembly.references(generator.image_size), reference_every=reference_every,
                    source=source)
