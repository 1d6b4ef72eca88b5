"""The one-page run report: ``report.html``, self-contained (inline CSS, images as ``data:`` URIs, no script).

:func:`render_page` builds it from a run folder: a header (experiment, blocks, the closing headline), the sections
every provider registered for the run's experiment (``latentopt_register_report_sections``: the evolution's
threads, a manifold's maps, an alignment's trajectories, a control session's tables, a third party's own), then
the run's settings and provenance (``config.yaml``, ``provenance.json``, ``resumes.jsonl``).
:func:`write_html_report` writes it into the run folder or to a file of the user's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from latentopt.errors import LatentoptError
from latentopt.html_report.fragments import (
    Html,
    Section,
    details,
    esc,
    key_values,
    note,
    preformatted,
    table,
    text,
)
from latentopt.plugins import Registry
from latentopt.records import RUN_MARKER, RecordError, RunWriter, atomic_write_text
from latentopt.run_record import RunRecord, load_run

REPORT_FILE = "report.html"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 20px 40px;color:#222;background:#fafafa}
header{border-bottom:2px solid #345;margin-bottom:12px}h1{margin:16px 0 4px;font-size:24px}
h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:30px}h3{margin:18px 0 6px;font-size:16px}
h4{margin:4px 0;font-size:13px;color:#555}nav a{margin-right:14px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:4px 16px 14px;margin:14px 0}
.facts{color:#333}.note{color:#8a5a00;background:#fff7e6;padding:4px 8px;border-radius:4px}
.error{color:#a00;background:#fee}
.strip{display:flex;gap:6px;overflow-x:auto;padding-bottom:6px;max-width:100%}
.strip figure{flex:0 0 auto;margin:0;text-align:center}
.strip.montage{max-height:none}figcaption{font-size:11px;color:#555;white-space:nowrap}
.tile img,.best img{image-rendering:auto;border:1px solid #ddd;display:block}
.blank{width:64px;height:64px;background:#eee;font-size:10px;display:flex;align-items:center;justify-content:center}
.row{display:flex;flex-wrap:wrap;gap:16px}.row>.column{flex:1 1 420px;min-width:0}
figure{margin:6px 0}figure img{max-width:100%;height:auto}
.table{overflow-x:auto;max-height:520px;overflow-y:auto;margin:6px 0}
table{border-collapse:collapse;font-size:12.5px}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f3f6;position:sticky;top:0}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:8px;overflow:auto;max-height:480px;font-size:12px}
svg.chart{font-size:11px;font-family:inherit;max-width:100%;height:auto}svg .title{font-weight:600;font-size:12px}
details summary{cursor:pointer;color:#345;margin:6px 0}footer{color:#777;font-size:12px;margin-top:30px}
"""

SectionsFn = Callable[[Path], list[Any]]


def _slug(value: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-").lower() or "section"
    anchor, k = base, 2
    while anchor in taken:
        anchor, k = f"{base}-{k}", k + 1
    taken.add(anchor)
    return anchor


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def experiment_sections(run: RunRecord, registry: Registry | None) -> list[Section]:
    """The sections every provider registered for the run's experiment, in registration order.

    A provider that fails with a user-level error (a damaged or missing file: :class:`LatentoptError`,
    ``OSError``, ``ValueError``) gives a section saying so, naming the provider; the rest of the page stays.
    """
    from latentopt.plugins import default_registry

    registry = registry or default_registry()
    name = run.experiment
    out: list[Section] = []
    for sections, plugin in registry.report_sections.get(name, []):
        try:
            made = list(sections(Path(run.path)))
        except (LatentoptError, OSError, ValueError) as err:
            out.append(Section(f"{name}: a section could not be drawn",
                               [text(f"{plugin}: {' '.join(str(err).split()) or type(err).__name__}", css="error")]))
            continue
        for section in made:
            if not isinstance(section, Section):
                raise TypeError(f"report sections of {plugin} for {name!r} returned {type(section).__name__}, "
                                "not latentopt.html_report.Section")
            out.append(section)
    return out


def settings_section(run: RunRecord) -> Section:
    """``config.yaml``, the main lines of ``provenance.json`` (and the whole of it), and every resume."""
    provenance = run.provenance
    command = provenance.get("command")
    versions = provenance.get("versions") or {}
    main = {"seed": provenance.get("seed"),
            "command": " ".join(map(str, command)) if isinstance(command, list) else command,
            **{f"{group}": (provenance.get(group) or {}).get("name") or (provenance.get(group) or {}).get("class")
               for group in ("experiment", "generator", "subject", "objective", "optimizer") if group in provenance},
            **{f"version {k}": v for k, v in versions.items()}}
    parts: list[Html | str] = [Html("<h3>Config</h3>"), preformatted(run.config),
                               Html("<h3>Provenance</h3>"), key_values(main),
                               details("provenance.json in full", preformatted(json.dumps(provenance, indent=2,
                                                                                          default=str)))]
    parts += [Html("<h3>Resumes</h3>"), *_resumes(Path(run.path))]
    return Section("Settings and provenance", parts, anchor="settings")


def _resumes(run_dir: Path) -> list[Html]:
    path = run_dir / "resumes.jsonl"
    if not path.exists():
        return [text("never resumed")]
    entries: list[dict[str, Any]] = []
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                value = json.loads(line)
                entries.append(value if isinstance(value, dict) else {"entry": value})
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return [note(f"{path.name} cannot be read ({type(err).__name__})")]
    rows = []
    for entry in entries:
        changes = entry.get("changes") or {}
        changed = "; ".join(f"{k}: {v.get('old') if isinstance(v, dict) else ''} → "
                            f"{v.get('new') if isinstance(v, dict) else v}" for k, v in changes.items()) or "none"
        command = entry.get("command")
        rows.append((entry.get("from_generation"), changed,
                     " ".join(map(str, command)) if isinstance(command, list) else command))
    full = details("resumes.jsonl in full", preformatted("\n".join(json.dumps(e, indent=2, default=str)
                                                                   for e in entries)))
    return [table(["from generation", "changes", "command"], rows), full]


def render_page(run_dir: Path | str, *, registry: Registry | None = None) -> str:
    """The report page of a run folder as one HTML document.

    Raises:
        RecordError: the folder is no started run, or a record is damaged (one line naming it).
    """
    run = load_run(run_dir)
    folder = Path(run.path)
    summary = _read_json(folder / "summary.json") or {}
    marker = _read_json(folder / RUN_MARKER) or {}
    sections = [*experiment_sections(run, registry), settings_section(run)]
    taken: set[str] = set()
    anchors = [_slug(s.anchor or s.title, taken) for s in sections]
    nav = "".join(f'<a href="#{esc(a)}">{esc(s.title)}</a>' for a, s in zip(anchors, sections, strict=True))
    facts = [f"experiment {run.experiment}", f"{run.generations} blocks recorded"]
    if marker.get("started"):
        facts.append(f"started {marker['started']}")
    headline = summary.get("headline")
    body = [f"<header><h1>Run report: {esc(folder.name)}</h1>", text(str(folder.absolute())),
            text(" · ".join(facts), css="facts"), text(headline, css="facts") if headline else "",
            "" if summary else note("no summary.json yet: the run has not ended (or its report was not written)"),
            f"<nav>{nav}</nav></header>"]
    body += [s.render(a) for a, s in zip(anchors, sections, strict=True)]
    from latentopt import __version__

    stamp = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    body.append(f"<footer>written by latentopt {esc(__version__)} at {esc(stamp)}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(folder.name)}: latentopt run report</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_html_report(run_dir: Path | str, *, out: Path | str | None = None,
                      registry: Registry | None = None) -> Path:
    """Write the report page of ``run_dir``: to ``run_dir/report.html`` (replaced), or to ``out``.

    Args:
        run_dir: a started run folder (finished, or still running: what is recorded).
        out: a file of the user's; never overwritten (an existing file is a :class:`RecordError`).
        registry: where the section providers are registered (default: everything installed).

    Returns:
        The path written.

    Raises:
        RecordError: ``run_dir`` is no started run, a record is damaged, or ``out`` exists (one line naming it).
    """
    if out is not None and Path(out).exists():
        raise RecordError(f"{out} exists already; the report never overwrites a file (choose another --out)")
    page = render_page(run_dir, registry=registry)
    if out is None:
        RunWriter(run_dir).write_text(REPORT_FILE, page)
        return Path(run_dir) / REPORT_FILE
    atomic_write_text(Path(out), page)  # fails, rather than replaces, if the file appeared meanwhile
    return Path(out)
