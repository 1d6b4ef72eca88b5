"""The run report page's pieces: escaping helpers, the SVG chart, the score reader, the page, its command line,
the section hook's failures, and the end of a run that must not lose the run when the page fails."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest

from latentopt.html_report import Html, Section, score_chart_svg, table, text, write_html_report
from latentopt.html_report.cli import main as report_main
from latentopt.html_report.fragments import cell
from latentopt.html_report.scores import read_scores
from latentopt.html_report.svg import Series, _ticks, line_chart_svg
from latentopt.launch import run_experiment
from latentopt.plugins import build_registry, get_plugin_manager, hookimpl
from latentopt.records import RecordError
from latentopt.run_record import load_run

EVIL = "<script>alert('x')</script>"
TINY = {"seed": 0, "device": "cpu", "progress": False,
        "generator": {"name": "pixel", "image_size": 32, "resolution": 4},
        "subject": {"name": "gabor_v1", "size": 32, "device": "cpu"}, "objective": {"name": "single_unit"},
        "optimizer": {"name": "ga", "population_size": 8, "n_elite": 2},
        "experiment": {"name": "evolve", "generations": 3, "references": ["coffee", "camera"]}}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 3-generation evolution whose recorded config carries markup (a user's note)."""
    folder = tmp_path_factory.mktemp("report") / "run"
    run_experiment(TINY, folder, config_yaml=json.dumps(TINY) + f"\n# note: {EVIL}\n")
    return folder


def _points(svg: str, series: str) -> int:
    match = re.search(rf'data-series="{re.escape(series)}" data-points="(\d+)"', svg)
    assert match, f"no series {series!r} in the chart"
    return int(match.group(1))


# ---------------------------------------------------------------------------- helpers escape everything
def test_text_tables_and_sections_escape_what_users_wrote_and_keep_trusted_markup():
    section = Section(f"thread {EVIL}", [EVIL, table([EVIL], [[EVIL, 1.5]]), Html("<em>kept</em>")])
    page = section.render("a\"b")
    assert "<script" not in page and page.count("&lt;script&gt;") == 4
    assert '<section id="a&quot;b">' in page and "<em>kept</em>" in page
    assert text("a & b") == "<p>a &amp; b</p>"


@pytest.mark.parametrize(("value", "shown"), [(None, "n/a"), (float("nan"), "n/a"), (True, "yes"),
                                              (1.23456789, "1.235"), ([1.0, None], "1, n/a"), ("x", "x")])
def test_table_cells(value, shown):
    assert cell(value) == shown


# ---------------------------------------------------------------------------- the SVG chart
def test_score_chart_has_mean_best_and_the_natural_references_with_their_points():
    scores = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 5.0], [4.0, 6.0]])
    refs = np.array([[2.0, 4.0], [np.nan, np.nan], [np.nan, np.nan], [2.5, 3.5]])  # shown in 0 and 3 only
    svg = score_chart_svg(scores, refs, title=f"main {EVIL}")
    assert svg.startswith("<svg") and "<script" not in svg and "main &lt;script&gt;" in svg
    assert _points(svg, "mean") == _points(svg, "best") == 3  # generation 1 has no finite score
    assert _points(svg, "natural best") == _points(svg, "natural mean") == 2
    mean = svg.split('data-series="mean"')[1].split("</g>")[0]
    assert mean.count("<polyline") == 2  # broken at the generation without a score
    natural = svg.split('data-series="natural best"')[1].split("</g>")[0]
    assert natural.count("<polyline") == 1 and natural.count("<circle") == 2  # joined across 1, 2; dotted
    assert "natural" not in score_chart_svg(scores, None)


def test_score_chart_places_the_best_score_at_the_top_of_the_scale():
    svg = score_chart_svg(np.array([[0.0], [10.0]]))
    best = svg.split('data-series="best"')[1].split("</g>")[0]
    ys = [float(p.split(",")[1]) for p in re.search(r'<polyline points="([^"]+)"', best).group(1).split()]
    assert ys[1] < ys[0]  # SVG y grows downwards: the higher score is drawn higher


def test_a_chart_without_finite_values_says_so():
    assert "no finite values" in line_chart_svg([Series("x", [0, 1], [np.nan, np.nan])])


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-3.2, 157.0), (1e-4, 3e-4), (5.0, 5.0)])
def test_ticks_are_round_and_inside_the_range(low, high):
    ticks = _ticks(low, high)
    assert 1 <= len(ticks) <= 12 and all(low - 1e-12 <= t <= high + 1e-12 for t in ticks)


# ---------------------------------------------------------------------------- reading and the page
def test_scores_read_without_the_codes_equal_the_run_record(run):
    record = load_run(run)
    read = read_scores(record)
    assert read.reference_ids == ["ref_coffee", "ref_camera"] == record.reference_ids
    np.testing.assert_array_equal(read.threads["main"].scores, record.threads["main"].scores)
    np.testing.assert_array_equal(read.threads["main"].reference_scores, record.threads["main"].reference_scores)


def test_the_end_of_a_run_writes_a_self_contained_page_that_escapes_the_config(run):
    page = (run / "report.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert not re.search(r'(src|href)="(?!data:|#)', page), "the page refers to something outside itself"
    assert "<link" not in page and "@import" not in page
    assert page.count('class="tile"') == 3 and "Thread main" in page
    summary = json.loads((run / "summary.json").read_text())
    assert f"best score {cell(summary['threads']['main']['best_score'])}" in page


def test_a_failing_provider_is_a_section_naming_it_and_the_rest_of_the_page_is_written(run, tmp_path):
    module = types.ModuleType("flaky_sections")

    def damaged(run_dir: Path) -> list[Section]:
        raise RecordError(f"{run_dir}/extra.json is damaged")

    def latentopt_register_report_sections(register):
        register("evolve", damaged)

    module.latentopt_register_report_sections = hookimpl(latentopt_register_report_sections)
    pm = get_plugin_manager(entry_points=False)
    pm.register(module, name="flaky_sections")
    path = write_html_report(run, out=tmp_path / "page.html", registry=build_registry(pm))
    page = path.read_text()
    assert "evolve: a section could not be drawn" in page and "flaky_sections: " in page and "extra.json" in page
    assert "Thread main" in page and "Settings and provenance" in page


def test_the_run_is_kept_when_the_page_fails_at_its_end(tmp_path, monkeypatch, capsys):
    import latentopt.html_report

    def broken(*args, **kwargs):
        raise RuntimeError("a bug\nin the page")

    monkeypatch.setattr(latentopt.html_report, "write_html_report", broken)
    summary = run_experiment(TINY, tmp_path / "run", config_yaml=json.dumps(TINY))
    assert summary["generations"] == 3 and load_run(tmp_path / "run").generations == 3
    assert (tmp_path / "run" / "summary.json").is_file() and not (tmp_path / "run" / "report.html").exists()
    lines = [line for line in capsys.readouterr().err.splitlines() if "report.html" in line]
    assert lines == [f"latentopt: warning: report.html was not written (RuntimeError: a bug in the page); the run "
                     f"is recorded; write the page with: latentopt-report {tmp_path / 'run'}"]


# ---------------------------------------------------------------------------- the command line
def test_the_command_writes_the_page_into_the_run_folder_or_a_new_file(run, tmp_path, capsys):
    (run / "report.html").unlink()
    report_main([str(run)])
    assert capsys.readouterr().out == f"report: {run / 'report.html'}\n"
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    report_main([str(run), "--out", str(tmp_path / "sub" / "mine.html")])
    assert (tmp_path / "sub" / "mine.html").read_text().startswith("<!DOCTYPE html>")


def _error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        report_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_user_errors_are_one_line_naming_the_culprit(run, tmp_path, capsys):
    assert _error([str(tmp_path / "nope")], capsys) == (
        f"latentopt-report: error: {tmp_path / 'nope'} is not a latentopt run folder (no such folder)\n")
    (tmp_path / "file").write_text("x")
    assert "file is not a latentopt run folder (not a folder)" in _error([str(tmp_path / "file")], capsys)
    (tmp_path / "empty").mkdir()
    assert "empty is not a latentopt run folder (no config.yaml)" in _error([str(tmp_path / "empty")], capsys)
    (tmp_path / "unstarted").mkdir()
    (tmp_path / "unstarted" / "config.yaml").write_text("seed: 0\n")
    assert "unstarted is not a latentopt run: no run.json" in _error([str(tmp_path / "unstarted")], capsys)
    mine = tmp_path / "mine.html"
    mine.write_text("my notes")
    message = _error([str(run), "--out", str(mine)], capsys)
    assert f"{mine} exists already; the report never overwrites a file" in message
    assert mine.read_text() == "my notes"


def test_the_command_runs_as_a_console_script(run, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from latentopt.html_report.cli import main; main()", str(run),
                           "--out", str(tmp_path / "p.html")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"report: {tmp_path / 'p.html'}\n" and (tmp_path / "p.html").stat().st_size > 10_000


def test_a_resumed_run_rewrites_its_page_with_the_resume(tmp_path):
    run_dir = tmp_path / "run"
    run_experiment(TINY, run_dir, config_yaml=json.dumps(TINY))
    assert "3 generations" in (run_dir / "report.html").read_text()
    longer = {**TINY, "experiment": {**TINY["experiment"], "generations": 5}}
    run_experiment(longer, run_dir, config_yaml=json.dumps(longer), resume=True,
                   resume_record={"changes": {"experiment.generations": {"old": 3, "new": 5}}})
    page = (run_dir / "report.html").read_text()
    assert "5 generations" in page and page.count('class="tile"') == 5 and "never resumed" not in page
    assert "<td>3</td><td>experiment.generations: 3 → 5</td>" in page
