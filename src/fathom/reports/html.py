"""A self-contained HTML report: sections of paragraphs, tables and figures in one file.

Nothing is fetched when the page opens (no scripts, fonts or style sheets from elsewhere; figures are inline
``data:`` PNGs), so the file can be attached to a design review and read offline. Every piece of text is escaped.
Generic on purpose: ``fathom serve --report`` uses it today; training and plan reports can reuse it as is.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from fathom import __version__
from fathom.reports.output import write_atomic


@dataclass(frozen=True)
class Table:
    """Rows of cells under ``columns`` (no header row when ``columns`` is empty: a key/value table)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""

    @classmethod
    def from_mapping(cls, items: Mapping[str, object], caption: str = "") -> Table:
        return cls((), [(k, v) for k, v in items.items()], caption)


@dataclass(frozen=True)
class Image:
    """A PNG figure, embedded in the page."""

    png: bytes
    caption: str = ""
    alt: str = ""


@dataclass(frozen=True)
class Section:
    heading: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table] = ()
    images: Sequence[Image] = ()


def format_cell(value: object) -> str:
    """A table cell as text: thousands separators for large numbers, four significant digits otherwise, a dash
    for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 and math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_cell(v)}" for k, v in value.items()) or "\u2013"
    if isinstance(value, list | tuple):
        return ", ".join(format_cell(v) for v in value) or "\u2013"
    return str(value)


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
.meta { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.8rem 0 1.2rem; font-size: 0.92rem; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; }
th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; }
"""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table(t: Table) -> str:
    parts = ["<table>"]
    if t.caption:
        parts.append(f"<caption>{escape(t.caption)}</caption>")
    if t.columns:
        parts.append("<thead><tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in t.columns) + "</tr></thead>")
    parts.append("<tbody>")
    for row in t.rows:
        cells = []
        for i, v in enumerate(row):
            if i == 0 and not t.columns:
                cells.append(f"<th>{escape(format_cell(v))}</th>")
            else:
                cls = ' class="num"' if _is_number(v) else ""
                cells.append(f"<td{cls}>{escape(format_cell(v))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _image(img: Image) -> str:
    data = base64.b64encode(img.png).decode("ascii")
    alt = escape(img.alt or img.caption, quote=True)
    caption = f"<figcaption>{escape(img.caption)}</figcaption>" if img.caption else ""
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{caption}</figure>'


def render_html(title: str, sections: Sequence[Section], *, subtitle: str = "",
                generated_at: datetime | None = None) -> str:  # fmt: skip
    """The whole page as a string."""
    when = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    body = [f"<h1>{escape(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="meta">{escape(subtitle)}</p>')
    body.append(f'<p class="meta">Generated {escape(when)} by fathom {escape(__version__)}.</p>')
    for s in sections:
        body.append(f"<section><h2>{escape(s.heading)}</h2>")
        body.extend(f"<p>{escape(p)}</p>" for p in s.paragraphs)
        body.extend(_table(t) for t in s.tables)
        body.extend(_image(i) for i in s.images)
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_html(path: str | Path, title: str, sections: Sequence[Section], **kwargs) -> None:
    """``render_html`` into ``path``, written whole or not at all."""
    write_atomic(path, render_html(title, sections, **kwargs).encode("utf-8"))
