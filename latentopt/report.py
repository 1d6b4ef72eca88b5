"""End-of-run figures: a montage of the best image per generation and the score trajectory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentopt.records import IMAGE_DIR, RunWriter
from latentopt.run_record import load_run


def montage(images: list[np.ndarray], *, columns: int = 10, tile: int = 96) -> np.ndarray:
    """Tile ``(H, W, 3)`` uint8 images into one ``(rows * tile, columns * tile, 3)`` image."""
    from PIL import Image

    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * tile, columns * tile, 3), 255, dtype=np.uint8)
    for k, image in enumerate(images):
        small = np.asarray(Image.fromarray(image).resize((tile, tile), Image.Resampling.BILINEAR))
        r, c = divmod(k, columns)
        sheet[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = small
    return sheet


def write_report(run_dir: Path | str) -> dict[str, Any]:
    """Write ``montage_<thread>.png``, ``trajectory.png`` and ``summary.json``; return the summary."""
    from PIL import Image

    record = load_run(run_dir)
    writer = RunWriter(run_dir)
    summary: dict[str, Any] = {"generations": record.generations, "threads": {}}
    for name, thread in record.threads.items():
        files = [Path(run_dir) / IMAGE_DIR / f"best_{name}_{g:05d}.png" for g in range(record.generations)]
        images = [np.asarray(Image.open(f).convert("RGB")) for f in files if f.exists()]
        if images:
            writer.write_png(f"montage_{name}.png", montage(images))
        finite = np.where(np.isfinite(thread.scores), thread.scores, np.nan)
        summary["threads"][name] = {
            "best_score": float(np.nanmax(finite)) if np.isfinite(finite).any() else None,
            "first_generation_mean": float(np.nanmean(finite[0])) if len(finite) else None,
            "last_generation_mean": float(np.nanmean(finite[-1])) if len(finite) else None,
            "best_reference_score": float(np.nanmax(thread.reference_scores))
            if thread.reference_scores.size and np.isfinite(thread.reference_scores).any() else None,
        }
    if record.timings:
        core = record.timings["generator_s"] + record.timings["subject_s"]
        total = core + record.timings["optimizer_s"]
        summary["median_generation_s"] = float(np.median(total))
        summary["median_overhead_ratio"] = float(np.median(total / np.maximum(core, 1e-9)))

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for name, thread in record.threads.items():
            gens = np.arange(record.generations)
            scored = np.isfinite(thread.scores).any(axis=1)  # generations with at least one score
            ax.plot(gens[scored], np.nanmean(thread.scores[scored], axis=1), label=f"{name}: mean")
            ax.plot(gens[scored], np.nanmax(thread.scores[scored], axis=1), "--", label=f"{name}: best")
            if thread.reference_scores.size:
                shown = np.isfinite(thread.reference_scores).any(axis=1)  # references every few generations
                if shown.any():
                    refs = np.nanmean(thread.reference_scores[shown], axis=1)
                    ax.plot(gens[shown], refs, ":o", markersize=3, label=f"{name}: natural refs")
        ax.set_xlabel("generation")
        ax.set_ylabel("score")
        ax.legend(fontsize=8)
        ax.set_title("score trajectory")

    if record.generations:
        writer.write_figure("trajectory.png", draw)
    writer.write_json("summary.json", summary)
    return summary
