"""Append many ``RGBImage`` datasets to an ``Images`` group that pynwb wrote: the stimulus templates, fast.

pynwb builds and validates one Python object per image (about 3 ms each here): 10 000 images of a
250-generation session would take half a minute on their own. pynwb writes the ``Images`` container with its
first image and ``order_of_images``; this module adds the other images with h5py's low-level API, each with the
attributes pynwb gave the first one (``neurodata_type`` ``RGBImage``, ``namespace`` ``core``, a fresh
``object_id``, its ``description``), and rewrites ``order_of_images`` to reference every image in order. The
result is the layout pynwb itself writes (the export's tests read it back with pynwb and run ``nwbinspector``,
which validates it against the schema).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ORDER = "order_of_images"


def append_images(path: Path, group: str, names: Sequence[str], images: np.ndarray,
                  descriptions: Sequence[str]) -> None:
    """Add ``images[1:]`` under ``names[1:]`` to the ``Images`` group ``group`` of the NWB file ``path``.

    Args:
        path: the NWB file, written and closed by pynwb.
        group: the ``Images`` group's path (e.g. ``/stimulus/templates/stimuli``), holding ``names[0]``.
        names: one dataset name per image.
        images: ``(m, H, W, 3)`` uint8.
        descriptions: one per image.
    """
    import h5py

    with h5py.File(path, "r+") as file:
        node = file[group]
        first = node[names[0]]
        constant = {key: first.attrs[key] for key in first.attrs if key not in ("object_id", "description")}
        text = h5py.h5a.open(first.id, b"neurodata_type").get_type()  # the variable-length string type pynwb used
        scalar = h5py.h5s.create(h5py.h5s.SCALAR)
        space = h5py.h5s.create_simple(tuple(images.shape[1:]))
        pixels = h5py.h5t.py_create(images.dtype)
        string = h5py.string_dtype()

        def attribute(target: h5py.h5d.DatasetID, key: str, value: object) -> None:
            if isinstance(value, str):
                h5py.h5a.create(target, key.encode(), text, scalar).write(np.array(value, dtype=string))
            else:
                array = np.asarray(value)
                h5py.h5a.create(target, key.encode(), h5py.h5t.py_create(array.dtype),
                                scalar).write(array)

        references = np.empty(len(names), dtype=h5py.ref_dtype)
        references[0] = first.ref
        for k in range(1, len(names)):
            name = names[k].encode()
            dataset = h5py.h5d.create(node.id, name, pixels, space)
            dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(images[k]))
            for key, value in constant.items():
                attribute(dataset, key, value)
            attribute(dataset, "object_id", str(uuid.uuid4()))
            attribute(dataset, "description", descriptions[k])
            references[k] = h5py.h5r.create(node.id, name, h5py.h5r.OBJECT)
        order = node[ORDER]
        order_attrs = {key: order.attrs[key] for key in order.attrs}
        del node[ORDER]
        rewritten = node.create_dataset(ORDER, data=references)
        for key, value in order_attrs.items():
            rewritten.attrs[key] = value
