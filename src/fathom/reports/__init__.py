"""Figures and self-contained HTML reports of fathom's results (matplotlib, no display needed)."""

from fathom.reports.html import Image, Section, Table, render_html, write_html
from fathom.reports.output import check_output_path

__all__ = ["Image", "Section", "Table", "check_output_path", "render_html", "write_html"]
