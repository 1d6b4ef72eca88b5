"""A run folder as one NWB file (``docs/nwb.md`` describes the layout), with standard NWB types only.

- ``stimulus_template/stimuli``: ``Images``, one ``RGBImage`` per distinct image (named by its id) as shown,
  ``(H, W, 3)`` uint8, in ``order_of_images``;
- ``stimulus/presentations``: ``IndexSeries`` into those images, one entry per presentation, at its block's time;
- ``intervals/trials``: one row per presentation with its block, generation, thread, ids, natural or not, score,
  and ``response`` ``(channels[, time_bins])``;
- ``general/extracellular_ephys/electrodes``: one row per response channel (``channel_name``, ``location`` = area);
- ``processing/latentopt``: ``stimulus_images`` (kind and first block of each image), ``threads`` (each optimizer
  thread's components), ``codes_<thread>`` (its codes and scores), ``time_bins`` (the PSTH bin edges);
- ``general``: ``protocol`` = ``config.yaml``; ``notes`` = JSON of ``provenance.json``, ``run.json`` and the
  resumes; ``was_generated_by`` = latentopt's and pynwb's versions; ``subject``.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.export.checks import DEFAULT_TOLERANCE, check_best_images, check_thumbnails
from latentopt.export.session import ExportError, Session, read_session
from latentopt.records import RUN_MARKER

TEMPLATES = "stimuli"
MODULE = "latentopt"
UNKNOWN_AGE = "P0D/"
"""ISO 8601 duration range "0 days or older": the subject's age is not known (a simulated subject has none)."""


@dataclass
class SubjectInfo:
    """The NWB ``Subject``; what latentopt does not know is marked unknown (``sex`` ``U``, age ``P0D/``).

    Attributes:
        subject_id: default: the subject component's registered name (e.g. ``insilico_monkey``, ``rig_xdream``).
        species: Latin binomial (``Macaca mulatta``) or an NCBI taxonomy IRI; default none.
        sex: ``M``, ``F``, ``O`` or ``U``.
        age: ISO 8601 duration (``P7Y``) or range (``P5Y/P8Y``).
        description: default: what ``provenance.json`` records about the subject component.
    """

    subject_id: str | None = None
    species: str | None = None
    sex: str = "U"
    age: str = UNKNOWN_AGE
    description: str | None = None


def _require_pynwb() -> Any:
    try:
        import pynwb
    except ImportError:
        raise ExportError("NWB export needs pynwb, which is not installed: pip install 'latentopt[nwb]' "
                          "(or pip install pynwb)") from None
    return pynwb


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _subject(session: Session, info: SubjectInfo) -> Any:
    from pynwb.file import Subject

    provenance = session.run.provenance.get("subject") or {}
    name = provenance.get("name") or provenance.get("class") or "subject"
    description = info.description or (f"latentopt subject {name} ({provenance.get('class', '?')}); "
                                       f"settings: {_flat(provenance)}")
    return Subject(subject_id=str(info.subject_id or name), species=info.species, sex=info.sex, age=info.age,
                   description=description)


def _flat(node: Any, prefix: str = "") -> str:
    """A nested mapping as ``a=1; b.c=2`` (NWB best practice: no dictionaries inside strings)."""
    if isinstance(node, dict):
        return "; ".join(part for key, value in node.items() if (part := _flat(value, f"{prefix}{key}.")))
    return f"{prefix[:-1]}={node}" if prefix else str(node)


def _yaml(node: Any) -> str:
    import yaml

    return str(yaml.safe_dump(node, default_flow_style=False, sort_keys=False)).strip()


def _nwbfile(session: Session, info: SubjectInfo) -> Any:
    import pynwb
    from pynwb import NWBFile

    import latentopt

    run = session.run
    marker = _text(run.path / RUN_MARKER) or ""
    resumes = [line for line in (_text(run.path / "resumes.jsonl") or "").splitlines() if line.strip()]
    notes = {"provenance": run.provenance, "run": json.loads(marker) if marker else None,
             "resumes": [json.loads(line) for line in resumes]}
    subject = run.provenance.get("subject") or {}
    return NWBFile(
        session_description=(f"latentopt {session.experiment} session: {len(session.blocks)} blocks, "
                             f"{len(session.presentation_ids)} presentations of {len(session.image_ids)} images "
                             f"to {len(session.channel_names)} channel(s)"),
        identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, f"latentopt:{marker}:{run.config}")),
        session_start_time=session.session_start,
        session_id=run.path.resolve().name,
        experiment_description=(f"closed-loop image experiment '{session.experiment}' recorded by latentopt: a "
                                "generator turns latent codes into images, the subject responds, optimizer threads "
                                "propose the next codes (config in general/protocol)"),
        protocol=run.config, notes=json.dumps(notes, indent=1, default=str),
        stimulus_notes=("stimulus_template/stimuli holds every distinct image once, rebuilt by latentopt-export: "
                        "evolved and design images from their recorded codes through the generators rebuilt from "
                        "config.yaml (checked against the run's stored best images / thumbnails), natural images "
                        "from their set by id; stimulus/presentations indexes them in presentation order"),
        data_collection=f"subject component: {_flat(subject)}",
        keywords=["latentopt", session.experiment, "closed-loop", "image synthesis"],
        was_generated_by=[["latentopt", latentopt.__version__], ["pynwb", pynwb.__version__]],
        subject=_subject(session, info),
    )


def _electrodes(nwb: Any, session: Session) -> None:
    subject = session.run.provenance.get("subject") or {}
    device = nwb.create_device(name="subject", description=f"latentopt subject: {_flat(subject) or 'unknown'}")
    groups = {}
    for area in dict.fromkeys(session.channel_areas):
        name = "area_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in area)
        groups[area] = nwb.create_electrode_group(name=name, description=f"the channels of area {area}",
                                                  location=area, device=device)
    nwb.add_electrode_column(name="channel_name", description="the subject's name of the channel (response index = "
                             "row index)")
    for name, area in zip(session.channel_names, session.channel_areas, strict=True):
        nwb.add_electrode(location=area, group=groups[area], channel_name=name)


def _column(name: str, description: str, data: Any) -> Any:
    from hdmf.common import VectorData

    return VectorData(name=name, description=description, data=data)


def _trials(session: Session) -> Any:
    from pynwb.epoch import TimeIntervals

    binned = session.responses.ndim == 3
    shape = "(presentations, channels, time_bins)" if binned else "(presentations, channels)"
    columns = [
        _column("start_time", "start of the block the image was shown in (s); latentopt records no per-image time",
                session.start_s),
        _column("stop_time", "end of that block: when its record was written (s)", session.stop_s),
        _column("block", "block number (0-based)", session.block),
        _column("generation", "the evolution's generation (= block); -1 in a fixed-design or natural-set session",
                session.block if session.thread_names else np.full(len(session.block), -1)),
        _column("position", "place of the image in its block (0-based)", session.position),
        _column("thread", "optimizer thread that made the image; 'reference' for a natural reference image; the "
                "design part otherwise", session.part),
        _column("presentation_id", "the image id as the block recorded it (design repeats end in _r<k>)",
                session.presentation_ids),
        _column("image_id", "id of the image in stimulus_template/stimuli", [session.image_ids[k]
                                                                            for k in session.image_of]),
        _column("image_index", "index of the image in stimulus_template/stimuli/order_of_images", session.image_of),
        _column("natural", "a natural image (not generated)", session.natural),
        _column("responded", "the subject answered (some response is finite); NaN responses: not shown",
                np.isfinite(session.responses.reshape(len(session.block), -1)).any(axis=1)),
        _column("score", "the owning thread's (or design's) objective score; NaN where none", session.scores),
        _column("response", f"{shape} float64 as recorded: channel k is row k of the electrodes table"
                + ("; time bins in processing/latentopt/time_bins" if binned else ""), session.responses),
    ]
    return TimeIntervals(name="trials", description="one row per image presentation (latentopt block records)",
                         columns=columns)


def _images(session: Session) -> tuple[Any, list[str]]:
    """The ``Images`` container holding the first image (:mod:`latentopt.export.images_h5` adds the others)."""
    from pynwb.base import ImageReferences, Images
    from pynwb.image import RGBImage

    for image_id in session.image_ids:
        if "/" in image_id or "\\" in image_id or image_id == "order_of_images":
            raise ExportError(f"image id {image_id!r} cannot name an NWB image (no '/' or '\\')")
    descriptions = [f"{kind} image {image_id}" for kind, image_id in zip(session.image_kinds, session.image_ids,
                                                                         strict=True)]
    first = RGBImage(name=session.image_ids[0], data=session.images[0], description=descriptions[0])
    images = Images(name=TEMPLATES, images=[first], description="every distinct image shown, once, as shown: "
                    "(H, W, 3) uint8 RGB; named by image id", order_of_images=ImageReferences(
                        name="order_of_images", data=[first]))
    return images, descriptions


def _module(nwb: Any, session: Session) -> None:
    from hdmf.common import DynamicTable

    module = nwb.create_processing_module(name=MODULE, description="latentopt's records beside the trials")
    _, first_shown = np.unique(session.image_of, return_index=True)  # every image has a presentation
    first = session.block[first_shown]
    count = np.bincount(session.image_of, minlength=len(session.image_ids))
    module.add(DynamicTable(name="stimulus_images", description="row k: image k of stimulus_template/stimuli", columns=[
        _column("image_id", "the image id", session.image_ids),
        _column("kind", "evolved, natural, design or controller", session.image_kinds),
        _column("first_block", "block of its first presentation", first),
        _column("presentations", "times it was shown", count)]))
    if session.time_bins_ms is not None:
        edges = np.asarray(session.time_bins_ms, dtype=np.float64)
        module.add(DynamicTable(name="time_bins", description="the PSTH bins of the trials' response (ms after "
                                "image onset)", columns=[_column("start_ms", "bin start (ms)", edges[:-1]),
                                                         _column("stop_ms", "bin end (ms)", edges[1:])]))
    if not session.thread_names:
        return
    nodes = _thread_nodes(session)
    module.add(DynamicTable(name="threads", description="the optimizer threads (components as configured)", columns=[
        _column("thread", "thread name", session.thread_names),
        *[_column(group, f"its {group} config (YAML)", [_yaml(nodes.get(t, {}).get(group)) for t in
                                                         session.thread_names])
          for group in ("generator", "optimizer", "objective")]]))
    for owner, name in enumerate(session.thread_names):
        rows = np.flatnonzero(session.owner == owner)
        codes = np.concatenate([b.threads[name]["codes"] for b in session.blocks]).astype(np.float32)
        module.add(DynamicTable(name=f"codes_{name}", description=f"thread {name}: each image's latent code and "
                                "score, in presentation order", columns=[
            _column("image_id", "the image id", [session.presentation_ids[k] for k in rows]),
            _column("block", "block (generation)", session.block[rows]),
            _column("score", "objective score (higher is better)", session.scores[rows]),
            _column("code", "latent code (d,) float32", codes)]))


def _thread_nodes(session: Session) -> dict[str, dict[str, Any]]:
    from latentopt.assembly import thread_specs

    config = session.config
    if session.experiment == "alignment":
        from latentopt.experiments.alignment import alignment_threads

        config = {**config, "experiment": {**config["experiment"], "threads": alignment_threads(config)}}
    return dict(thread_specs(config))


def _link_new(tmp: Path, out: Path) -> None:
    """Give the finished temporary its final name; fails (ExportError) if ``out`` appeared meanwhile."""
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise ExportError(f"{out} exists already; an export never overwrites a file (choose another --out)") from None
    except OSError:  # a file system without hard links: rename, after checking once more
        if out.exists():
            raise ExportError(f"{out} exists already; an export never overwrites a file") from None
        os.replace(tmp, out)


def export_nwb(run_dir: Path | str, out: Path | str | None = None, *, device: str = "cpu",
               tolerance: int = DEFAULT_TOLERANCE, subject: SubjectInfo | None = None) -> Path:
    """Write a run folder as a new NWB file and return its path.

    Args:
        run_dir: the run folder.
        out: the file to create (default ``RUN_DIR/<run folder name>.nwb``); it must not exist.
        device: where the generators rebuilding the images run.
        tolerance: largest difference (levels of 255) allowed between a rebuilt image and the run's stored one.
        subject: the NWB subject's metadata (default: unknown species, sex ``U``, age ``P0D/``).

    Raises:
        ExportError: pynwb is missing, ``out`` exists or its folder does not, or a rebuilt image differs from
            the run's stored one (the message names the file).
        RecordError: the folder is no started run or a file in it is damaged (the message names it).
    """
    _require_pynwb()
    from pynwb import NWBHDF5IO
    from pynwb.image import IndexSeries

    from latentopt.export.images_h5 import append_images

    run_path = Path(run_dir)
    target = Path(out) if out is not None else run_path / f"{run_path.resolve().name}.nwb"
    if target.exists():
        raise ExportError(f"{target} exists already; an export never overwrites a file (choose another --out)")
    if not target.parent.is_dir():
        raise ExportError(f"{target.parent}: no such folder for the NWB file")
    session = read_session(run_path, device=device)
    check_best_images(session, tolerance=tolerance)
    check_thumbnails(session, tolerance=tolerance)
    nwb = _nwbfile(session, subject or SubjectInfo())
    _electrodes(nwb, session)
    nwb.trials = _trials(session)
    images, descriptions = _images(session)
    nwb.add_stimulus_template(images)
    nwb.add_stimulus(IndexSeries(name="presentations", data=session.image_of.astype(np.uint32),
                                 indexed_images=images, timestamps=session.start_s, unit="N/A",
                                 description="index into stimulus_template/stimuli of each image shown, at the "
                                 "start of its block (trials holds the same rows with the responses)"))
    _module(nwb, session)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp.nwb")
    try:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
        append_images(tmp, f"/stimulus/templates/{TEMPLATES}", session.image_ids, session.images, descriptions)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _link_new(tmp, target)
    except OSError as err:
        raise ExportError(f"cannot write {target}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
