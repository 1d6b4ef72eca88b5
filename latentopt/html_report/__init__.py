"""The one-page run report (``report.html``): a self-contained HTML page of a run folder.

``latentopt-report RUN_DIR [--out FILE.html]`` writes it, and so does the end of every run (beside what the
experiment's own report writes). Experiments add their sections through the plugin hook
``latentopt_register_report_sections``: ``register(experiment, sections)`` with ``sections(run_dir) ->
list[Section]``, built from the escaping helpers of :mod:`latentopt.html_report.fragments`. The score chart
(:func:`score_chart_svg`) is a plain function of arrays, for any page that shows a run's progress.
"""

from __future__ import annotations

from latentopt.html_report.fragments import (
    Html,
    Section,
    details,
    gallery,
    key_values,
    note,
    png,
    png_file,
    preformatted,
    row,
    table,
    table_from_csv,
    text,
)
from latentopt.html_report.page import REPORT_FILE, render_page, write_html_report
from latentopt.html_report.svg import Series, line_chart_svg, score_chart_svg

__all__ = ["REPORT_FILE", "Html", "Section", "Series", "details", "gallery", "key_values", "line_chart_svg", "note",
           "png", "png_file", "preformatted", "render_page", "row", "score_chart_svg", "table", "table_from_csv",
           "text", "write_html_report"]
