"""The run report page in a real headless browser (Debian's chromium): for each experiment, a tiny run's
``report.html`` (written by the run's end) loads without console errors, every image decodes, and the page shows
the run: thread names, generations, best score, one montage image per generation, a chart with one point per
generation, and the manifold / alignment / control / axis-tuning sections. The configs are the experiment
contract's (tests/contract/test_experiment_contract.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Page, browser_session
from contract.test_experiment_contract import _contract_config

from latentopt.html_report.fragments import cell
from latentopt.launch import run_experiment


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with browser_session() as session:
        yield session


def _run(name: str, folder: Path, **experiment: Any) -> Path:
    config = _contract_config(name, folder)
    config["experiment"] = {**config["experiment"], **experiment}
    run_dir = folder / name
    run_experiment(config, run_dir, config_yaml=json.dumps(config))
    return run_dir


def _open(page: Page, run_dir: Path, shot: Path) -> str:
    """Open the run's report.html; no console error, every image decoded, a screenshot; the visible text."""
    page.open((run_dir / "report.html").absolute().as_uri())
    assert page.console_errors() == []
    assert page.undecoded_images() == []
    assert page.screenshot(shot).stat().st_size > 10_000
    return page.text()


def _section(page: Page, anchor: str) -> str:
    return page.text(f"section#{anchor}")


def _points(page: Page, anchor: str, series: str) -> int:
    return int(page.script(
        "return document.querySelector(arguments[0]).getAttribute('data-points');",
        f'section#{anchor} svg.chart g.series[data-series="{series}"]'))


def test_an_evolution_page_shows_its_thread_montage_chart_and_natural_images(page, tmp_path):
    run_dir = _run("evolve", tmp_path, generations=5, references=["coffee", "camera", "astronaut"],
                   reference_every=2)
    text = _open(page, run_dir, tmp_path / "evolve.png")
    summary = json.loads((run_dir / "summary.json").read_text())["threads"]["main"]
    thread = _section(page, "thread-main")
    assert "Thread main" in thread and "5 generations" in thread
    assert f"best score {cell(summary['best_score'])}" in thread
    assert page.script("return document.querySelectorAll('section#thread-main .montage img').length;") == 5
    assert _points(page, "thread-main", "mean") == _points(page, "thread-main", "best") == 5
    assert _points(page, "thread-main", "natural best") == 3  # generations 0, 2 and the last, 4
    best = re.search(r"best natural image (ref_\w+)", thread).group(1)
    assert page.script("return document.querySelectorAll('section#thread-main .pair img').length;") == 5 + 3
    assert page.script("return Array.from(document.querySelectorAll('.pair figcaption'))"
                       ".some(c => c.textContent.startsWith(arguments[0]));", best)
    settings = _section(page, "settings")
    assert "Config" in settings and "never resumed" in settings and "evolve" in text


def test_an_alignment_page_shows_both_threads_and_the_alignment(page, tmp_path):
    run_dir = _run("alignment", tmp_path)
    _open(page, run_dir, tmp_path / "alignment.png")
    for thread in ("pixel", "fourier"):
        assert f"Thread {thread}" in _section(page, f"thread-{thread}")
        assert page.script(f"return document.querySelectorAll('section#thread-{thread} .montage img').length;") == 3
    alignment = _section(page, "alignment")
    assert "Success per generator" in alignment and "Trajectories" in alignment and "Dynamics" in alignment
    rows = page.script("return Array.from(document.querySelectorAll('section#alignment tbody tr'))"
                       ".map(r => r.cells[0].textContent);")
    assert rows == ["pixel", "fourier"]
    assert _points(page, "alignment", "pixel") == _points(page, "alignment", "fourier") == 3


def test_a_manifold_page_shows_the_kent_fits_and_the_maps(page, tmp_path):
    run_dir = _run("manifold", tmp_path)
    text = _open(page, run_dir, tmp_path / "manifold.png")
    section = _section(page, "manifold")
    assert "Kent fit of every sphere" in section and "κ" in section
    rows = page.script("return Array.from(document.querySelectorAll('section#manifold tbody tr'))"
                       ".map(r => r.cells[0].textContent);")
    assert rows == ["PC1_PC2_PC3", "PC1_RND1_RND2"]
    alts = page.script("return Array.from(document.querySelectorAll('section#manifold img')).map(i => i.alt);")
    assert alts == ["manifold_PC1_PC2_PC3.png", "manifold_PC1_RND1_RND2.png"]
    assert "manifold: PC1_PC2_PC3 R²" in text  # the experiment's headline


def test_an_axis_tuning_page_shows_its_table_and_figures(page, tmp_path):
    run_dir = _run("axis_tuning", tmp_path)
    _open(page, run_dir, tmp_path / "axis_tuning.png")
    section = _section(page, "axis-tuning")
    assert "curves per class" in section and "every axis (axis_tuning.csv)" in section
    assert page.script("return document.querySelectorAll('section#axis-tuning img').length;") == 2


@pytest.mark.slow  # the twin's natural session and fit, and the control run's CNN: ~25 s here
def test_natural_and_control_pages_show_their_tables(page, tmp_path):
    run_dir = _run("control", tmp_path)  # its twin comes from a natural-set session in tmp_path
    _open(page, run_dir, tmp_path / "control.png")
    section = _section(page, "control")
    assert "stretch summary" in section and "one-hot summary" in section and "twin prediction" in section
    assert "per channel (control_channels.csv)" in section and "Natural set (12 images)" in section
    assert page.script("return document.querySelectorAll('section#control img').length;") == 1
    _open(page, tmp_path / "natural_session", tmp_path / "natural.png")
    assert "Natural set (20 images)" in _section(page, "natural")
