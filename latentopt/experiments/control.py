"""Population control (Bashivan, Kar & DiCarlo, Science 2019) and the natural-set session it builds on.

``experiment=natural`` shows a natural image set (``experiment.natural``: the offline set of
:func:`latentopt.natural.natural_set`, or a lab's folder) to the subject with repeats, in shuffled blocks: the
session a digital twin is fitted from (``latentopt-twin fit RUN --out TWIN``), and the natural maxima.

``experiment=control``:

1. loads the twin ``experiment.twin.path`` (or fits it there first from the sessions ``experiment.twin.runs``);
2. synthesises controller images on the twin, with the run's generator: a stretch controller for each channel of
   ``experiment.controllers.stretch`` and a one-hot controller for each target of
   ``experiment.controllers.one_hot`` (one-hot on the twin's responses normalised by the twin's responses to the
   natural set), by gradient ascent or by an evolution with the run's optimizer (``experiment.synthesis``);
3. shows the controllers and the natural set to the subject (a rig, or a simulated subject standing in for the
   animal) with repeats, in shuffled blocks (controllers as part 0, natural images as part 1);
4. reports stretch and one-hot success against the natural set with permutation chance levels, and how well the
   twin predicted the subject (:mod:`latentopt.analysis.control`).

The design (items, order, controller codes, the twin's predictions) is written to ``design.npz`` when the run
starts; a resume reads it back instead of synthesising again, after checking that the config and the twin are
the ones it was made with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.blocks import show_block
from latentopt.checks import ConfigError, integer
from latentopt.experiment import Experiment, GenerationResult, Recorder, flat_tree
from latentopt.generator import Generator
from latentopt.records import block_record
from latentopt.subject import Subject

DEFAULT_NATURAL = {"set": "natural", "n": 500, "seed": 0}
KINDS = ("stretch", "one_hot")
CONTROLLER_PART, NATURAL_PART = 0, 1
"""Owner of a controller / a natural image in a session's blocks (the natural set is not a reference here: each
block shows its own share of it)."""


@dataclass
class ShowDesign:
    """What a fixed-set session shows: controllers (items ``0 .. K-1``) then natural images, with repeats.

    Attributes:
        item_ids: one id per item (``ctl_stretch_3``, ``ctl_one_hot_3``, then the natural ids).
        n_controllers: ``K``: the first ``K`` items are controllers.
        order: ``(P, 2)`` int ``(item, repeat)`` in presentation order: each repeat is a full pass over the items
            in its own random order, so repeats are spread over the session.
        block_size: presentations per block.
    """

    item_ids: list[str]
    n_controllers: int
    order: np.ndarray
    block_size: int

    @property
    def blocks(self) -> int:
        return -(-len(self.order) // self.block_size)

    def chunk(self, block: int) -> np.ndarray:
        return self.order[block * self.block_size:(block + 1) * self.block_size]

    def to_tree(self) -> dict[str, Any]:
        return {"item_ids": np.asarray(self.item_ids, dtype=str), "n_controllers": np.int64(self.n_controllers),
                "order": self.order, "block_size": np.int64(self.block_size)}

    @classmethod
    def from_tree(cls, tree: Mapping[str, Any]) -> ShowDesign:
        return cls([str(i) for i in np.asarray(tree["item_ids"]).tolist()], int(tree["n_controllers"]),
                   np.asarray(tree["order"], dtype=np.int64), int(tree["block_size"]))


def build_show_design(item_ids: list[str], n_controllers: int, *, repeats: int, block_size: int,
                      seed: int) -> ShowDesign:
    """Every item ``repeats`` times, each pass in its own seeded random order."""
    rng = np.random.default_rng([int(seed), 4242])
    passes = [np.stack([rng.permutation(len(item_ids)), np.full(len(item_ids), r)], axis=1) for r in range(repeats)]
    return ShowDesign(list(item_ids), int(n_controllers), np.concatenate(passes).astype(np.int64), int(block_size))


class NaturalSession(Experiment):
    """Show a fixed set (controllers made by a generator, natural images) to a subject, with repeats.

    Args:
        subject: who responds.
        design: items and order.
        natural: ``(ids, images (N, 3, H, W))`` the natural images, in the order of the design's natural items.
        image_size: ``(H, W)`` every image is shown at.
        seed: seed of the subject's noise streams.
        generator: turns controller codes into images (None when there are no controllers).
        codes: ``(K, d)`` the controllers' codes.
        recorder: receives every block.
    """

    name = "natural"

    def __init__(self, subject: Subject, design: ShowDesign, natural: tuple[list[str], torch.Tensor], *,
                 image_size: tuple[int, int], seed: int = 0, generator: Generator | None = None,
                 codes: np.ndarray | None = None, recorder: Recorder | None = None,
                 natural_spec: Any = None) -> None:
        self.subject = subject
        self.show = design
        self.natural_ids, self.natural_images = natural
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = int(seed)
        self.generator = generator
        self.codes = codes
        self.recorder = recorder
        self.natural_spec = natural_spec
        self.component_provenance: dict[str, Any] = {}

    def total_blocks(self) -> int:
        return self.show.blocks

    def finished(self, block: int) -> bool:
        return block >= self.show.blocks

    def design(self) -> dict[str, Any] | None:
        return {"show": self.show.to_tree()}

    def controller_images(self, items: np.ndarray) -> torch.Tensor:
        """The images of controller items (indices < K)."""
        if self.generator is None or self.codes is None:
            raise RuntimeError("this session has no controllers")
        with torch.no_grad():
            return self.generator.generate(self.codes[items]).detach().cpu()

    def step(self, block: int) -> GenerationResult:
        """Show block ``block``: its controllers as part 0, its natural images as part 1."""
        t0 = time.perf_counter()
        chunk = self.show.chunk(block)
        k = self.show.n_controllers
        controllers = chunk[chunk[:, 0] < k]
        naturals = chunk[chunk[:, 0] >= k]
        ctl_ids = [f"{self.show.item_ids[i]}_r{r}" for i, r in controllers.tolist()]
        ctl_images = (self.controller_images(controllers[:, 0]) if len(controllers)
                      else torch.zeros(0, 3, *self.image_size))
        nat_ids = [f"{self.show.item_ids[i]}_r{r}" for i, r in naturals.tolist()]
        nat_images = self.natural_images[naturals[:, 0] - k] if len(naturals) else torch.zeros(0, 3, *self.image_size)
        t_gen = time.perf_counter()
        shown = show_block(self.subject, block, [(ctl_ids, ctl_images), (nat_ids, nat_images)],
                           size=self.image_size, seed=self.seed)
        order = np.concatenate([controllers, naturals])
        design = {"item": order[:, 0], "repeat": order[:, 1]}
        timings = {"generator_s": t_gen - t0, "subject_s": shown.subject_s}
        if self.recorder is not None:
            self.recorder.write_generation(block, block_record(shown, experiment=self.name, timings=timings,
                                                               design=design, time_bins_ms=self.subject.time_bins_ms))
        timings["total_s"] = time.perf_counter() - t0
        mean = _channel_mean(shown.responses)
        parts_scores = {"natural": mean[shown.owner == NATURAL_PART]}
        if k:
            parts_scores = {"controllers": mean[shown.owner == CONTROLLER_PART], **parts_scores}
        return GenerationResult(block, shown.image_ids, shown.owner, shown.responses, parts_scores, {}, timings)

    def provenance(self) -> dict[str, Any]:
        names = self.component_provenance
        experiment = {"name": self.name, **names.get("experiment", {}), "natural": self.natural_spec,
                      "natural_images": len(self.natural_ids), "controllers": self.show.n_controllers,
                      "presentations": len(self.show.order), "blocks": self.show.blocks,
                      "image_size": list(self.image_size)}
        out: dict[str, Any] = {"experiment": experiment,
                               "subject": {**self.subject.provenance(), **names.get("subject", {})}}
        if self.generator is not None:
            out["generator"] = {**self.generator.provenance(), **names.get("generator", {})}
        return out

    def report(self, run_dir: Path) -> dict[str, Any]:
        from latentopt.experiments.control_report import write_natural_report

        return write_natural_report(run_dir)

    def components(self) -> list[Any]:
        return [self.subject] + ([self.generator] if self.generator is not None else [])


def _channel_mean(responses: np.ndarray) -> np.ndarray:
    flat = responses.reshape(responses.shape[0], responses.shape[1], -1).mean(axis=2)
    with np.errstate(invalid="ignore"):
        return np.nanmean(flat, axis=1) if flat.shape[1] else np.zeros(len(flat))


class Control(NaturalSession):
    """The control experiment (see the module docstring); the synthesis happens in :meth:`design`.

    Args:
        twin: the twin subject (noise-free, differentiable) the controllers are synthesised on.
        targets: ``[(kind, channel)]`` one controller each, ``kind`` in ``stretch`` / ``one_hot``.
        synthesis: the resolved ``experiment.synthesis`` settings.
        synthesise: ``() -> dict`` runs the synthesis (codes, twin responses, normalisation).
        inputs: what the design depends on (config, twin checksum), compared on resume.
        (the rest as :class:`NaturalSession`)
    """

    name = "control"

    def __init__(self, subject: Subject, design: ShowDesign, natural: tuple[list[str], torch.Tensor], *,
                 twin: Subject, targets: list[tuple[str, int]], synthesise: Any, inputs: Mapping[str, Any],
                 temperature: float, twin_info: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(subject, design, natural, **kwargs)
        self.twin = twin
        self.targets = targets
        self._synthesise = synthesise
        self.inputs = dict(inputs)
        self.temperature = float(temperature)
        self.twin_info = dict(twin_info)
        self._design: dict[str, Any] | None = None

    def _inputs_text(self) -> str:
        return json.dumps(self.inputs, sort_keys=True, default=str)

    def design(self) -> dict[str, Any]:
        if self._design is None:
            synthesis = self._synthesise()
            self._design = {"show": self.show.to_tree(), "inputs": np.asarray(self._inputs_text()),
                            "controllers": {"kind": np.asarray([k for k, _ in self.targets], dtype=str),
                                            "channel": np.asarray([c for _, c in self.targets], dtype=np.int64),
                                            **synthesis}}
            self.codes = np.asarray(synthesis["codes"], dtype=np.float32)
        return self._design

    def matches_design(self, recorded: Mapping[str, Any]) -> bool:
        """Resume: the recorded design is adopted (not synthesised again) when it was made from the same inputs."""
        try:
            same = (str(np.asarray(recorded["inputs"])) == self._inputs_text()
                    and flat_tree(recorded["show"]) == flat_tree(self.show.to_tree()))
        except (KeyError, TypeError):
            return False
        if same:
            self._design = dict(recorded)
            self.codes = np.asarray(recorded["controllers"]["codes"], dtype=np.float32)
        return same

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["experiment"].update({"targets": [list(t) for t in self.targets], "temperature": self.temperature,
                                  "twin": self.twin_info, "synthesis": self.inputs.get("synthesis")})
        return out

    def report(self, run_dir: Path) -> dict[str, Any]:
        from latentopt.experiments.control_report import write_control_report

        return write_control_report(run_dir)

    def components(self) -> list[Any]:
        return [*super().components(), self.twin]


# ---------------------------------------------------------------------------- from config
def _image_size(exp: Mapping[str, Any]) -> tuple[int, int]:
    size = integer(exp.get("image_size", 224), "experiment.image_size", minimum=8, maximum=4096)
    return (size, size)


def _natural(exp: Mapping[str, Any], size: tuple[int, int]) -> tuple[Any, tuple[list[str], torch.Tensor]]:
    from latentopt.references import KEY, reference_set

    spec = exp.get("natural", DEFAULT_NATURAL)
    if not spec:
        raise ConfigError("experiment.natural: give the natural set ({set: natural, n: 500} or {folder: PATH})")
    try:
        ids, images = reference_set(spec, size)
    except ConfigError as err:  # the references' checks, named for this key
        raise ConfigError(str(err).replace(KEY, "experiment.natural")) from None
    return (dict(spec) if isinstance(spec, Mapping) else list(spec)), (list(ids), images)


def natural_from_config(config: dict[str, Any], assembly: Any) -> NaturalSession:
    """The ``natural`` experiment of a plain config; see ``conf/experiment/natural.yaml``."""
    exp = config["experiment"]
    size = _image_size(exp)
    repeats = integer(exp.get("repeats", 2), "experiment.repeats", minimum=1, maximum=1000)
    block_size = integer(exp.get("block_size", 100), "experiment.block_size", minimum=1, maximum=100_000)
    spec, natural = _natural(exp, size)
    subject = assembly.subject()
    design = build_show_design(natural[0], 0, repeats=repeats, block_size=block_size, seed=assembly.seed)
    return NaturalSession(subject, design, natural, image_size=size, seed=assembly.seed, natural_spec=spec)


def _channel_selection(value: Any, key: str, n_channels: int) -> list[int]:
    if value in (None, "all"):
        return list(range(n_channels))
    if value == "none":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{key} must be 'all', 'none' or a list of channel indices, got {value!r}")
    channels = [integer(c, key, minimum=0) for c in value]
    bad = [c for c in channels if c >= n_channels]
    if bad:
        raise ConfigError(f"{key}: channel(s) {bad} but the subject has {n_channels} (0 ... {n_channels - 1})")
    if len(set(channels)) != len(channels):
        raise ConfigError(f"{key} names a channel twice: {channels}")
    return channels


def control_from_config(config: dict[str, Any], assembly: Any) -> Control:
    """The ``control`` experiment of a plain config; see ``conf/experiment/control.yaml`` for its keys."""
    from latentopt.experiments.control_synthesis import SynthesisSettings, synthesise
    from latentopt.twin.session import twin_for_control

    exp = config["experiment"]
    size = _image_size(exp)
    repeats = integer(exp.get("repeats", 4), "experiment.repeats", minimum=1, maximum=1000)
    block_size = integer(exp.get("block_size", 100), "experiment.block_size", minimum=1, maximum=100_000)
    settings = SynthesisSettings.from_config(exp.get("synthesis") or {})
    controllers = exp.get("controllers") or {}
    if not isinstance(controllers, Mapping) or set(controllers) - {"stretch", "one_hot", "temperature"}:
        raise ConfigError("experiment.controllers takes stretch, one_hot (each 'all', 'none' or channel indices) "
                          f"and temperature; got {controllers!r}")
    from latentopt.checks import finite_number

    temperature = finite_number(controllers.get("temperature", 1.0), "experiment.controllers.temperature",
                                minimum=1e-6)
    spec, natural = _natural(exp, size)
    subject = assembly.subject()
    twin_path, twin_info = twin_for_control(exp.get("twin"), device=str(config.get("device", "auto")))
    twin = assembly.subject({"name": "twin", "path": str(twin_path), "device": config.get("device", "auto")},
                            "experiment.twin")
    if twin.n_channels != subject.n_channels:
        raise ConfigError(f"experiment.twin: the twin models {twin.n_channels} channel(s) but the subject has "
                          f"{subject.n_channels}; fit the twin on a session of these channels")
    named = [n for n in twin.channel_names], list(subject.channel_names)
    if named[0] != named[1] and not exp.get("ignore_channel_names", False):
        raise ConfigError(f"experiment.twin: the twin's channels {named[0][:4]}... differ from the subject's "
                          f"{named[1][:4]}...; set experiment.ignore_channel_names=true if they are the same units")
    stretch = _channel_selection(controllers.get("stretch", "all"), "experiment.controllers.stretch",
                                 subject.n_channels)
    one_hot = _channel_selection(controllers.get("one_hot", "all"), "experiment.controllers.one_hot",
                                 subject.n_channels)
    targets = [("stretch", c) for c in stretch] + [("one_hot", c) for c in one_hot]
    if not targets:
        raise ConfigError("experiment.controllers: no controller to make (stretch and one_hot are both 'none')")
    generator = assembly.generator(config.get("generator"))
    if settings.method == "gradient" and not generator.differentiable:
        raise ConfigError(f"experiment.synthesis.method=gradient needs a differentiable generator; "
                          f"{type(generator).__name__} is not (use method=evolution)")
    item_ids = [f"ctl_{kind}_{channel}" for kind, channel in targets] + natural[0]
    design = build_show_design(item_ids, len(targets), repeats=repeats, block_size=block_size, seed=assembly.seed)
    optimizer_node = config.get("optimizer")
    inputs = {"targets": targets, "synthesis": settings.__dict__, "temperature": temperature,
              "generator": config.get("generator"), "twin_sha256": twin_info.get("readout_sha256"),
              "natural": spec, "image_size": list(size), "seed": assembly.seed,
              "optimizer": optimizer_node if settings.method == "evolution" else None}

    def run_synthesis() -> dict[str, Any]:
        return synthesise(twin, generator, targets, natural[1], settings=settings, temperature=temperature,
                          image_size=size, seed=assembly.seed, assembly=assembly, optimizer_node=optimizer_node,
                          progress=bool(config.get("progress", True)))

    return Control(subject, design, natural, twin=twin, targets=targets, synthesise=run_synthesis, inputs=inputs,
                   temperature=temperature, twin_info=twin_info, image_size=size, seed=assembly.seed,
                   generator=generator, natural_spec=spec)
