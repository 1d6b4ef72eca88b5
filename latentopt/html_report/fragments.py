"""Pieces of the run report page: :class:`Section` and the helpers that build its escaped HTML.

Every helper escapes the text it is given (:func:`html.escape`: config values, ids and thread names come from
users) and returns :class:`Html`, markup that is inserted as it is. A plain ``str`` among a section's parts is
text, escaped into a paragraph; only :class:`Html` is trusted, so a section built from these helpers cannot
inject markup. Images are inlined as ``data:`` URIs: the page needs no file beside it and no network.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Html", "Section", "cell", "details", "gallery", "key_values", "note", "png", "png_file",
           "preformatted", "row", "table", "table_from_csv", "text"]


class Html(str):
    """Markup built by these helpers, inserted into the page as it is (any other ``str`` is escaped)."""


@dataclass(frozen=True)
class Section:
    """One section of the page: a heading and its parts.

    Attributes:
        title: the heading (escaped).
        parts: markup from the helpers of this module (:class:`Html`) or plain text (escaped into a paragraph).
        anchor: the id of the section in the page (default: made from the title).
    """

    title: str
    parts: Sequence[Html | str] = field(default_factory=tuple)
    anchor: str = ""

    def render(self, anchor: str) -> Html:
        body = "".join(part if isinstance(part, Html) else text(part) for part in self.parts)
        return Html(f'<section id="{esc(anchor)}"><h2>{esc(self.title)}</h2>{body}</section>')


def esc(value: Any) -> str:
    """Escaped text of any value (quotes too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def text(value: Any, *, css: str = "") -> Html:
    """A paragraph of escaped text."""
    attribute = f' class="{esc(css)}"' if css else ""
    return Html(f"<p{attribute}>{esc(value)}</p>")


def note(value: Any) -> Html:
    """A paragraph set apart: a missing file, an analysis not written yet, an error."""
    return text(value, css="note")


def cell(value: Any, *, digits: int = 4) -> str:
    """A value as table text: floats to ``digits`` significant digits, None and NaN as ``n/a``, lists joined."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v, digits=digits) for v in value)
    return str(value)


def table(columns: Sequence[Any], rows: Iterable[Sequence[Any]], *, caption: str = "", css: str = "") -> Html:
    """A table: a header of ``columns`` and one row per sequence of values (see :func:`cell`)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    title = f"<caption>{esc(caption)}</caption>" if caption else ""
    return Html(f'<div class="table {esc(css)}"><table>{title}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")


def key_values(values: Mapping[str, Any], *, caption: str = "") -> Html:
    """A two-column table of ``key | value``."""
    return table(["", "value"], [(k, v) for k, v in values.items()], caption=caption, css="kv")


def table_from_csv(path: Path | str, *, caption: str = "", max_rows: int = 500) -> Html:
    """A CSV file (first line the header) as a table; a missing or unreadable file is a note naming it."""
    try:
        rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return note(f"{path} cannot be read ({type(err).__name__})")
    if not rows:
        return note(f"{path} is empty")
    shown = rows[1:max_rows + 1]
    more = note(f"{len(rows) - 1 - len(shown)} more rows in {Path(path).name}") if len(rows) - 1 > len(shown) else ""
    return Html(table(rows[0], shown, caption=caption or Path(path).name) + more)


def preformatted(value: str) -> Html:
    return Html(f"<pre>{esc(value)}</pre>")


def details(summary: str, *parts: Html | str, open_: bool = False) -> Html:
    """A folded block (``<details>``): ``summary`` shown, ``parts`` on a click."""
    body = "".join(part if isinstance(part, Html) else text(part) for part in parts)
    return Html(f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>")


def row(*parts: Html, css: str = "") -> Html:
    """Parts side by side (wrapping on a narrow window)."""
    return Html(f'<div class="row {esc(css)}">{"".join(parts)}</div>')


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png(data: bytes, *, alt: str, caption: str = "", width: int | None = None, title: str = "",
        css: str = "") -> Html:
    """A PNG inlined as a ``data:`` URI, in a ``<figure>`` with an optional caption (``width`` in CSS px)."""
    size = f' width="{int(width)}"' if width else ""
    hover = f' title="{esc(title)}"' if title else ""
    image = f'<img src="{data_uri(data)}" alt="{esc(alt)}"{size}{hover}>'
    label = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Html(f'<figure class="{esc(css)}">{image}{label}</figure>')


def png_file(path: Path | str, *, alt: str = "", caption: str = "", width: int | None = None) -> Html:
    """A PNG file of the run folder inlined (a missing or unreadable file is a note naming it)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        return note(f"{path.name} cannot be read ({err.strerror or type(err).__name__})")
    return png(data, alt=alt or path.name, caption=caption, width=width)


def gallery(items: Sequence[Html], *, css: str = "") -> Html:
    """Figures in a strip that scrolls sideways when they do not fit."""
    return Html(f'<div class="strip {esc(css)}">{"".join(items)}</div>')
