"""The evolution's section of the page: per thread the score chart, the best image of every generation, and the
best evolved images beside the best natural references.

The best image of each generation is the run's own ``images/best_<thread>_<generation>.png``; natural references
are not stored in a run folder, so they are rebuilt from the recorded ``experiment.references``
(:func:`latentopt.references.reference_set`: scikit-image photographs, the offline natural set, or a lab's folder).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from latentopt.errors import LatentoptError
from latentopt.html_report.fragments import Html, Section, cell, gallery, note, png, row, text
from latentopt.html_report.scores import RunScores, ThreadScores, read_scores
from latentopt.html_report.svg import PALETTE, score_chart_svg
from latentopt.records import IMAGE_DIR
from latentopt.run_record import RunRecord, load_run

TILE = 64
"""Display size (CSS px) of a generation's best image in the strip."""
INLINE_LIMIT = (128, 48_000)
"""A best-image file at most this wide (px) and this large (bytes) is inlined as it is; larger ones as thumbnails."""
TOP = 6
"""Best evolved and best natural images shown side by side."""


def thumbnail(data: bytes, side: int = 2 * TILE) -> bytes:
    """A PNG's bytes, or a ``side``-px thumbnail's when the image is larger (a 256-px generator's 100 kB files)."""
    from PIL import Image

    if len(data) <= INLINE_LIMIT[1]:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) <= INLINE_LIMIT[0]:
                return data
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
        small.thumbnail((side, side), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG")
    return buffer.getvalue()


def evolution_sections(run_dir: Path) -> list[Section]:
    """One section per optimizer thread of an evolution (``evolve``; ``alignment`` adds its own after it)."""
    run = load_run(run_dir)
    scores = read_scores(run)
    if not scores.threads:
        return [Section("Evolution", [note("no generation is recorded yet")], anchor="evolution")]
    natural = _natural_images(run, scores)
    return [_thread_section(run, scores, thread, k, natural) for k, thread in enumerate(scores.threads.values())]


def _best_file(run: RunRecord, thread: str, generation: int) -> Path:
    return Path(run.path) / IMAGE_DIR / f"best_{thread}_{generation:05d}.png"


def _thread_section(run: RunRecord, scores: RunScores, thread: ThreadScores, index: int,
                    natural: dict[str, bytes] | str) -> Section:
    best = thread.best
    finite = np.isfinite(best)
    parts: list[Html | str] = []
    if finite.any():
        top = int(np.nanargmax(best))
        means = [float(np.nanmean(r)) if np.isfinite(r).any() else None for r in (thread.scores[0], thread.scores[-1])]
        facts = [f"{run.generations} generations", f"best score {cell(float(best[top]))} (generation {top})",
                 f"first generation mean {cell(means[0])}", f"last generation mean {cell(means[-1])}"]
    else:
        facts = [f"{run.generations} generations", "no finite score"]
    ranked = [(float(v), i) for i, v in zip(scores.reference_ids, thread.natural, strict=True) if np.isfinite(v)]
    ranked.sort(reverse=True)
    if ranked:
        facts.append(f"best natural image {ranked[0][1]} ({cell(ranked[0][0])})")
    parts.append(text(" · ".join(facts), css="facts"))
    chart = score_chart_svg(thread.scores, thread.reference_scores if ranked else None,
                            title=f"{thread.name}: score per generation", colour=PALETTE[index % len(PALETTE)])
    parts.append(Html(f'<div class="chart-box">{chart}</div>'))
    parts.append(Html("<h3>Best image of every generation</h3>"))
    parts.append(_strip(run, thread))
    parts.append(Html("<h3>Best evolved images and best natural images</h3>"))
    parts.append(_side_by_side(run, thread, ranked, natural))
    return Section(f"Thread {thread.name}", parts, anchor=f"thread-{thread.name}")


def _strip(run: RunRecord, thread: ThreadScores) -> Html:
    tiles = []
    best = thread.best
    for g in range(run.generations):
        caption = f"{g}: {cell(float(best[g]), digits=3)}"
        try:
            data = thumbnail(_best_file(run, thread.name, g).read_bytes())
        except OSError:
            tiles.append(Html(f'<figure class="tile missing"><div class="blank">no image</div>'
                              f"<figcaption>{caption}</figcaption></figure>"))
            continue
        tiles.append(png(data, alt=f"{thread.name} generation {g}", caption=caption, width=TILE, css="tile",
                         title=f"generation {g}, best score {cell(float(best[g]))}"))
    return gallery(tiles, css="montage")


def _side_by_side(run: RunRecord, thread: ThreadScores, ranked: list[tuple[float, str]],
                  natural: dict[str, bytes] | str) -> Html:
    best = thread.best
    order = [int(g) for g in np.argsort(-np.where(np.isfinite(best), best, -np.inf), kind="stable")
             if np.isfinite(best[g])][:TOP]
    evolved = []
    for g in order:
        file = _best_file(run, thread.name, g)
        if file.is_file():
            evolved.append(png(thumbnail(file.read_bytes()), alt=f"best of generation {g}", width=2 * TILE,
                               caption=f"generation {g}: {cell(float(best[g]))}", css="best"))
    left = Html('<div class="column"><h4>evolved</h4>' + (gallery(evolved) if evolved else note("no image")) + "</div>")
    if isinstance(natural, str):
        shown: Html = note(natural)
    elif not ranked:
        shown = note("no natural reference images were shown")
    else:
        figures = [png(natural[i], alt=i, width=2 * TILE, caption=f"{i}: {cell(v)}", css="best")
                   for v, i in ranked[:TOP] if i in natural]
        shown = gallery(figures) if figures else note("the natural images could not be rebuilt")
    right = Html(f'<div class="column"><h4>natural (mean score over the generations showing them)</h4>{shown}</div>')
    return row(left, right, css="pair")


def _natural_images(run: RunRecord, scores: RunScores) -> dict[str, bytes] | str:
    """PNG bytes of the best natural references by id, rebuilt from the recorded config; a str says why not."""
    if not scores.reference_ids:
        return {}
    wanted: set[str] = set()
    for thread in scores.threads.values():
        ranked = sorted(((v, i) for i, v in zip(scores.reference_ids, thread.natural, strict=True) if np.isfinite(v)),
                        reverse=True)
        wanted.update(i for _, i in ranked[:TOP])
    from latentopt.records import to_uint8_image
    from latentopt.references import reference_set
    from latentopt.run_record import recorded_config

    try:
        spec = (recorded_config(run.path).get("experiment") or {}).get("references")
        ids, images = reference_set(spec, (2 * TILE, 2 * TILE))
    except LatentoptError as err:
        return f"the natural images cannot be rebuilt from experiment.references: {' '.join(str(err).split())}"
    from PIL import Image

    out = {}
    for image_id, image in zip(ids, images, strict=True):
        if image_id in wanted:
            buffer = io.BytesIO()
            Image.fromarray(to_uint8_image(image)).save(buffer, format="PNG")
            out[image_id] = buffer.getvalue()
    return out
