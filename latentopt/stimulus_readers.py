"""The stimulus readers of the built-in experiments (see :mod:`latentopt.stimuli`): imported by it, they register.

``evolve`` and ``alignment``: thread ``i``'s images are its recorded codes of the block through its generator
(:func:`latentopt.assembly.thread_specs`; an alignment's threads from ``experiment.generators``), in the order
shown, fitted to the block's size (the largest of the generators' sizes). ``manifold``: the grid images are
``design.npz``'s codes at the block's ``design/index``, through the manifold's generator (its own, or the one
it inherited from its source run, which must then still be readable). References: ``experiment.references``.
``natural`` and ``control``: the natural images of ``experiment.natural`` and (control) the controllers, the
design's codes through the run's generator, all at ``experiment.image_size``; an item's key is its design id
(``ctl_stretch_3``, ``nat_...``), so its repeats group together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentopt.assembly import thread_specs
from latentopt.blocks import REFERENCE, fit_images
from latentopt.records import BlockRecord, RecordError, RunWriter
from latentopt.stimuli import RunSource, register_stimulus_reader


def _read_threads(source: RunSource) -> None:
    """An evolution (or alignment): thread ``i``'s images from its recorded codes, in the order shown."""
    config = source.config
    if source.blocks[0].experiment == "alignment":
        from latentopt.experiments.alignment import alignment_threads

        config = {**config, "experiment": {**config["experiment"], "threads": alignment_threads(config)}}
    specs = dict(thread_specs(config))
    single = len(specs) == 1 and not (config.get("experiment") or {}).get("threads")
    generators = {}
    for name, spec in specs.items():
        key = "generator" if single else f"experiment.threads.{name}.generator"
        generators[name] = source.assembly.generator(spec["generator"], key)
    size = max(g.image_size for g in generators.values())  # the evolution's block size
    for block in source.blocks:
        for index, name in enumerate(block.thread_names):
            if name not in generators:
                raise RecordError(f"{source.run.path}, block {block.generation}: thread {name!r} is not in the "
                                  f"recorded config (threads {', '.join(generators)})")
            rows = np.flatnonzero(block.owner == index)
            codes = block.threads[name]["codes"]
            if codes.shape[0] != rows.shape[0]:
                raise RecordError(f"{source.run.path}, block {block.generation}: thread {name!r} has "
                                  f"{codes.shape[0]} codes for {rows.shape[0]} images")
            if rows.shape[0]:
                images = fit_images(generators[name].generate(codes), size)
                source.table.add([str(i) for i in block.image_ids[rows]], images)
        source.add_references(block, size)


def _manifold_keys(block: BlockRecord) -> list[str]:
    """A grid image's key is its design id (``<id>_r<k>`` -> ``<id>``); a reference's, its id."""
    ids = [str(i) for i in block.image_ids]
    return [i if o == REFERENCE else i.rsplit("_r", 1)[0] for i, o in zip(ids, block.owner.tolist(), strict=True)]


def _read_manifold(source: RunSource) -> None:
    """A manifold: the design's grid images from ``design.npz`` (block ``index``), and the references."""
    from latentopt.checks import ConfigError
    from latentopt.experiments.manifold import ManifoldDesign
    from latentopt.experiments.source_run import inherited_components

    path = source.run.path
    tree = RunWriter(path).read_design()
    try:
        design = ManifoldDesign.from_tree(tree)
    except (KeyError, TypeError, ValueError) as err:
        raise RecordError(f"{path}/design.npz is missing or damaged ({type(err).__name__}: {err})") from err
    exp = source.config["experiment"]
    try:  # the generator the manifold used: its own, or the one inherited from its source run
        nodes, _ = inherited_components(source.config, exp,
                                        None if exp.get("source") is None else Path(str(exp["source"])))
    except ConfigError as err:
        raise RecordError(f"{path}: its generator cannot be rebuilt: {err}") from err
    generator = source.assembly.generator(nodes["generator"], "generator")
    size = generator.image_size
    for block in source.blocks:
        rows = np.flatnonzero(block.owner == 0)
        index = np.asarray(block.design.get("index", []), dtype=np.int64).reshape(-1)
        if index.shape[0] != rows.shape[0] or (index.size and not 0 <= index.min() <= index.max()
                                               < len(design.image_ids)):
            raise RecordError(f"{path}, block {block.generation}: its design index does not fit its "
                              f"{rows.shape[0]} grid images and the {len(design.image_ids)} design images")
        keys = [design.image_ids[k] for k in index.tolist()]
        new = sorted({k for k, key in zip(index.tolist(), keys, strict=True) if key not in source.table.index})
        if new:
            images = fit_images(generator.generate(design.codes[new]), size)
            source.table.add([design.image_ids[k] for k in new], images)
        source.add_references(block, size)


def _session_keys(block: BlockRecord) -> list[str]:
    """A session item's key is its design id (``<id>_r<k>`` -> ``<id>``)."""
    return [str(i).rsplit("_r", 1)[0] for i in block.image_ids]


def _read_session(source: RunSource) -> None:
    """A natural-set or control session: its natural set and controllers, from the config and ``design.npz``."""
    from latentopt.checks import ConfigError
    from latentopt.experiments.control import DEFAULT_NATURAL, ShowDesign
    from latentopt.references import reference_set

    path = source.run.path
    tree = RunWriter(path).read_design()
    try:
        show = ShowDesign.from_tree(tree["show"])
    except (KeyError, TypeError, ValueError) as err:
        raise RecordError(f"{path}/design.npz is missing or damaged ({type(err).__name__}: {err})") from err
    exp = source.config["experiment"]
    side = int(exp.get("image_size", 224))
    size = (side, side)
    k = show.n_controllers
    try:
        ids, images = reference_set(exp.get("natural", DEFAULT_NATURAL), size)
    except ConfigError as err:
        raise RecordError(f"{path}: its natural set cannot be rebuilt: {err}") from err
    if ids != show.item_ids[k:]:
        raise RecordError(f"{path}: the natural set rebuilt now differs from the one the session showed "
                          "(did the folder change?)")
    if k:  # controllers first: keys in the design's item order
        try:
            codes = np.asarray(tree["controllers"]["codes"], dtype=np.float32)
        except (KeyError, TypeError) as err:
            raise RecordError(f"{path}/design.npz holds no controller codes ({err})") from err
        generator = source.assembly.generator(source.config.get("generator"), "generator")
        source.table.add(show.item_ids[:k], fit_images(generator.generate(codes).detach().cpu(), size))
    source.table.add(ids, images)


register_stimulus_reader("evolve", _read_threads)
register_stimulus_reader("alignment", _read_threads)
register_stimulus_reader("manifold", _read_manifold, _manifold_keys)
register_stimulus_reader("natural", _read_session, _session_keys)
register_stimulus_reader("control", _read_session, _session_keys)
