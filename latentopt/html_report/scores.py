"""Scores of a run's threads, read without the codes, responses or optimizer states.

:attr:`latentopt.run_record.RunRecord.threads` reads every array of every block; the page needs only each
thread's ``scores`` and ``reference_scores``, so it reads just those entries of each block file (a 250-generation
session in about a tenth of a second instead of half a second). The entry names are those of the block schema
(:func:`latentopt.records.block_record`, flattened by :func:`latentopt.record_files.tree_to_npz_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentopt.record_files import load_fields
from latentopt.records import GENERATION_DIR, RecordError
from latentopt.run_record import RunRecord


@dataclass
class ThreadScores:
    """One thread's scores over the recorded generations.

    Attributes:
        name: the thread's name.
        scores: ``(generations, population)`` float64; NaN where an image was not scored (or a smaller generation).
        reference_scores: ``(generations, references)`` float64; NaN in generations that showed no references.
    """

    name: str
    scores: np.ndarray
    reference_scores: np.ndarray

    @property
    def best(self) -> np.ndarray:
        """``(generations,)`` the best score of each generation (NaN: none finite)."""
        return _rowwise_max(self.scores)

    @property
    def natural(self) -> np.ndarray:
        """``(references,)`` each reference's mean score over the generations that showed it (NaN: never)."""
        refs = self.reference_scores
        out = np.full(refs.shape[1], np.nan)
        shown = np.isfinite(refs).any(axis=0)
        if shown.any():
            out[shown] = np.nanmean(refs[:, shown], axis=0)
        return out


@dataclass
class RunScores:
    threads: dict[str, ThreadScores]
    reference_ids: list[str]


def _rowwise_max(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values).any(axis=1) if values.size else np.zeros(len(values), bool)
    if finite.any():
        out[finite] = np.nanmax(values[finite], axis=1)
    return out


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for k, r in enumerate(rows):
        out[k, :len(r)] = r
    return out


def read_scores(run: RunRecord) -> RunScores:
    """Every thread's scores and reference scores, and the reference ids (from the first block showing them).

    Raises:
        RecordError: a block file is damaged or lacks a thread's scores (the message names it).
    """
    if not run.generations:
        return RunScores({}, [])
    first = run.block(0)
    names = first.thread_names
    scores: dict[str, list[np.ndarray]] = {n: [] for n in names}
    refs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    reference_ids = [str(i) for i in first.image_ids[first.owner == -1]]
    for g in range(run.generations):
        path = Path(run.path) / GENERATION_DIR / f"gen_{g:05d}.npz"
        fields = load_fields(path, ("threads/*/scores", "threads/*/reference_scores", "block/thread",
                                    "block/image_ids"))
        for name in names:
            for key, rows in (("scores", scores), ("reference_scores", refs)):
                if f"threads/{name}/{key}" not in fields:
                    raise RecordError(f"{path} is damaged or not a latentopt generation: no threads/{name}/{key}")
                rows[name].append(np.asarray(fields[f"threads/{name}/{key}"], dtype=np.float64).reshape(-1))
        if not reference_ids and "block/thread" in fields:
            owner = np.asarray(fields["block/thread"])
            if (owner == -1).any():
                reference_ids = [str(i) for i in np.asarray(fields["block/image_ids"])[owner == -1]]
    count = len(reference_ids)
    threads = {}
    for name in names:
        reference = np.full((run.generations, count), np.nan)
        for g, r in enumerate(refs[name]):
            if len(r) == count and count:
                reference[g] = r
        threads[name] = ThreadScores(name, _padded(scores[name]), reference)
    return RunScores(threads, reference_ids)
