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

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.blocks import REFERENCE, fit_images, show_block
from latentopt.checks import ConfigError, integer
from latentopt.experiment import Experiment, GenerationResult, Recorder
from latentopt.generator import Generator
from latentopt.objective import Objective
from latentopt.records import block_record
from latentopt.subject import Subject

DEFAULT_SPHERES = ("PC1_PC2_PC3", "PC1_PC49_PC50", "PC1_RND1_RND2")
THUMBNAIL = 48
"""Side in pixels of the thumbnail of each grid image kept in the records (for the montage)."""
INHERITABLE = ("generator", "subject", "objective")


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
    rng = np.random.default_rng([int(seed), 2])  # the presentation order's own stream
    order = np.concatenate([np.stack([rng.permutation(len(codes)), np.full(len(codes), r)], axis=1)
                            for r in range(repeats)])
    bins = np.zeros(0) if time_bins_ms is None else np.asarray(time_bins_ms, dtype=np.float64)
    return ManifoldDesign(names, np.stack([bases[n] for n in names]), float(radius), thetas, phis, grid_index,
                          np.stack(codes).astype(np.float32), ids, order.astype(np.int64), int(block_size), bins)


class Manifold(Experiment):
    """Show a :class:`ManifoldDesign` to a subject in blocks (with natural references) and record it.

    Args:
        design: the grid images and their order.
        generator: turns the design's codes into images.
        subject: who responds.
        objective: scores each response (recorded beside the responses; the default analysis fits it).
        seed: seed of the subject's noise streams.
        references: ``(ids, images)`` natural images shown in every ``reference_every``-th block and the last.
        reference_every: period of the references in blocks.
        recorder: receives every block.
        source: what the design came from (recorded in provenance).
    """

    name = "manifold"

    def __init__(self, design: ManifoldDesign, generator: Generator, subject: Subject, objective: Objective, *,
                 seed: int = 0, references: tuple[list[str], torch.Tensor] | None = None, reference_every: int = 1,
                 recorder: Recorder | None = None, source: Mapping[str, Any] | None = None) -> None:
        if design.codes.shape[1] != generator.latent_dim:
            raise ConfigError(f"experiment.source: its codes have {design.codes.shape[1]} dimensions but the "
                              f"generator takes {generator.latent_dim}; use the source run's generator")
        self.design_ = design
        self.generator = generator
        self.subject = subject
        self.objective = objective
        self.seed = int(seed)
        self.references = references or ([], torch.zeros(0, 3, 1, 1))
        self.reference_every = int(reference_every)
        self.recorder = recorder
        self.source = dict(source or {})
        self.component_provenance: dict[str, Any] = {}

    def total_blocks(self) -> int:
        return self.design_.blocks

    def finished(self, block: int) -> bool:
        return block >= self.design_.blocks

    def design(self) -> dict[str, Any]:
        return self.design_.to_tree()

    def step(self, block: int) -> GenerationResult:
        """Show block ``block`` of the design and record it."""
        t0 = time.perf_counter()
        chunk = self.design_.order[block * self.design_.block_size:(block + 1) * self.design_.block_size]
        index, repeat = chunk[:, 0], chunk[:, 1]
        ids = [f"{self.design_.image_ids[u]}_r{r}" for u, r in zip(index.tolist(), repeat.tolist(), strict=True)]
        images = self.generator.generate(self.design_.codes[index])
        t_gen = time.perf_counter()
        ref_ids, ref_images = self.references
        due = block % self.reference_every == 0 or block == self.design_.blocks - 1
        shown = show_block(self.subject, block, [(ids, images)], size=self.generator.image_size, seed=self.seed,
                           references=(ref_ids, ref_images) if ref_ids and due else None)
        bins = self.subject.time_bins_ms
        scores = np.asarray(self.objective.score(shown.responses, time_bins_ms=bins), dtype=np.float64)
        first = np.flatnonzero(repeat == 0)
        thumbnails = fit_images(shown.images[first], (THUMBNAIL, THUMBNAIL))
        design = {"index": index, "repeat": repeat, "scores": scores[shown.owner == 0],
                  "thumbnail_index": index[first],
                  "thumbnails": (np.clip(thumbnails.permute(0, 2, 3, 1).numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)}
        timings = {"generator_s": t_gen - t0, "subject_s": shown.subject_s}
        if self.recorder is not None:
            self.recorder.write_generation(block, block_record(shown, experiment=self.name, timings=timings,
                                                               design=design, time_bins_ms=self.subject.time_bins_ms))
        timings["total_s"] = time.perf_counter() - t0
        return GenerationResult(block, shown.image_ids, shown.owner, shown.responses,
                                {"grid": scores[shown.owner == 0]}, {"grid": scores[shown.owner == REFERENCE]},
                                timings)

    def provenance(self) -> dict[str, Any]:
        names = self.component_provenance

        def described(component: Any, key: str) -> dict[str, Any]:
            return {**component.provenance(), **names.get(key, {})}

        d = self.design_
        return {
            "experiment": {"name": self.name, **names.get("experiment", {}), "source": self.source,
                           "spheres": d.names, "radius": d.radius, "grid": [len(d.thetas_deg), len(d.phis_deg)],
                           "images": len(d.image_ids), "presentations": len(d.order), "blocks": d.blocks},
            "generator": described(self.generator, "generator"),
            "subject": described(self.subject, "subject"),
            "objective": described(self.objective, "objective"),
        }

    def report(self, run_dir: Path) -> dict[str, Any]:
        from latentopt.experiments.manifold_report import write_manifold_report

        return write_manifold_report(run_dir)

    def components(self) -> list[Any]:
        return [self.generator, self.subject]


def _source_codes(exp: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any], Path | None]:
    """``(all codes (n, d), last generation's codes (m, d), source description, source run or None)``."""
    from latentopt.records import RecordError
    from latentopt.run_record import load_run

    source, codes_file = exp.get("source"), exp.get("codes")
    if (source is None) == (codes_file is None):
        raise ConfigError("experiment.source (a run folder) or experiment.codes (an .npz of codes): give one")
    if source is not None:
        thread = str(exp.get("thread") or "main")
        try:
            record = load_run(source)
            threads = record.threads
        except RecordError as err:
            raise ConfigError(f"experiment.source: {err}") from err
        if not threads:
            raise ConfigError(f"experiment.source: {source} holds no evolution (experiment {record.experiment!r}); "
                              "give the run folder of an evolution")
        if thread not in threads:
            raise ConfigError(f"experiment.thread: {source} has no thread {thread!r} (it has {', '.join(threads)})")
        codes = threads[thread].codes
        if codes.shape[0] == 0:
            raise ConfigError(f"experiment.source: {source} holds no generation yet")
        return (codes.reshape(-1, codes.shape[-1]), codes[-1],
                {"run": str(Path(source).absolute()), "thread": thread, "generations": int(codes.shape[0])},
                Path(source))
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


def _components(config: Mapping[str, Any], exp: Mapping[str, Any],
                source_run: Path | None) -> tuple[dict[str, Any], list[str]]:
    """The generator, subject and objective nodes (the source run's for the groups in ``experiment.inherit``),
    and the groups inherited."""
    from latentopt.assembly import merge
    from latentopt.records import RecordError
    from latentopt.run_record import recorded_config

    inherit = exp.get("inherit", "auto")
    inherit = list(INHERITABLE) if inherit == "auto" else inherit
    if not isinstance(inherit, (list, tuple)) or not set(map(str, inherit)) <= set(INHERITABLE):
        raise ConfigError(f"experiment.inherit must list groups of {', '.join(INHERITABLE)}, got {inherit!r}")
    nodes = {group: config.get(group) for group in INHERITABLE}
    if source_run is not None and inherit:
        try:
            recorded = recorded_config(source_run, device=str(config.get("device", "auto")))
        except RecordError as err:
            raise ConfigError(f"experiment.source: {err}") from err
        changes = exp.get("inherit_overrides") or {}
        if not isinstance(changes, Mapping) or not set(changes) <= set(inherit):
            raise ConfigError("experiment.inherit_overrides must map inherited groups to the keys that change, "
                              f"got {changes!r}")
        for group in map(str, inherit):
            nodes[group] = merge(recorded.get(group), changes.get(group) or {})
    return nodes, sorted(map(str, inherit)) if source_run is not None else []


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
    nodes, inherited = _components(config, exp, source_run)
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
