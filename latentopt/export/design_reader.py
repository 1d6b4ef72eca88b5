"""A stimulus reader for fixed-design runs that :mod:`latentopt.stimulus_readers` does not cover (axis tuning).

Like the manifold's reader: the design images are ``design.npz``'s ``codes`` (one per ``image_ids``) at each
block's ``design/index``, through the run's generator (its own, or the one inherited from its source run, which
must then still be readable), at the generator's size; references from ``experiment.references``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentopt.blocks import REFERENCE, fit_images
from latentopt.records import BlockRecord, RecordError, RunWriter
from latentopt.stimuli import RunSource


def design_keys(block: BlockRecord) -> list[str]:
    """A design image's key is its design id (``<id>_r<k>`` -> ``<id>``); a reference's, its id."""
    ids = [str(i) for i in block.image_ids]
    return [i if o == REFERENCE else i.rsplit("_r", 1)[0] for i, o in zip(ids, block.owner.tolist(), strict=True)]


def read_fixed_design(source: RunSource) -> None:
    """Put every design image a block showed (and the references) into ``source.table``."""
    from latentopt.checks import ConfigError
    from latentopt.experiments.source_run import inherited_components

    path = source.run.path
    tree = RunWriter(path).read_design()
    try:
        codes = np.asarray(tree["codes"], dtype=np.float32)
        image_ids = [str(i) for i in np.asarray(tree["image_ids"]).tolist()]
    except (KeyError, TypeError, ValueError) as err:
        raise RecordError(f"{path}/design.npz is missing or damaged ({type(err).__name__}: {err})") from err
    exp = source.config["experiment"]
    try:
        nodes, _ = inherited_components(source.config, exp,
                                        None if exp.get("source") is None else Path(str(exp["source"])))
    except ConfigError as err:
        raise RecordError(f"{path}: its generator cannot be rebuilt: {err}") from err
    generator = source.assembly.generator(nodes["generator"], "generator")
    size = generator.image_size
    for block in source.blocks:
        rows = np.flatnonzero(block.owner == 0)
        index = np.asarray(block.design.get("index", []), dtype=np.int64).reshape(-1)
        if index.shape[0] != rows.shape[0] or (index.size and not 0 <= index.min() <= index.max() < len(image_ids)):
            raise RecordError(f"{path}, block {block.generation}: its design index does not fit its "
                              f"{rows.shape[0]} design images and the {len(image_ids)} in design.npz")
        new = sorted({k for k in index.tolist() if image_ids[k] not in source.table.index})
        if new:
            source.table.add([image_ids[k] for k in new], fit_images(generator.generate(codes[new]), size))
        source.add_references(block, size)
