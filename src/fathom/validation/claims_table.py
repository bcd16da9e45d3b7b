"""The rich table of ``fathom validate claims``: one row per figure, grouped by claim, and the summary line."""

from __future__ import annotations

import math

from rich.table import Table

from fathom.validation.claims import ClaimResult

_COLOURS = {"pass": "green", "fail": "red", "not_reproduced": "yellow", "missing_input": "yellow",
            "missing_lever": "yellow"}  # fmt: skip


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}"


def _band(band: tuple[float, float] | None) -> str:
    if band is None:
        return "-"
    low, high = band
    return f"[{_num(low)}, {'inf' if math.isinf(high) else _num(high)}]"


def claims_table(results: list[ClaimResult]) -> Table:
    """Claim, figure (the scenario pair it compares), predicted, claimed, band, status, note."""
    table = Table(title="Headline claims (predicted from first principles vs claimed)", show_lines=True)
    for col in ("#", "claim", "figure (baseline vs technique)", "predicted", "claimed", "band", "status"):
        table.add_column(col, justify="right" if col in ("#", "predicted", "claimed") else "left")
    for r in results:
        colour = _COLOURS[r.status]
        for i, f in enumerate(r.figures):
            status = f"[{_COLOURS[f.status]}]{f.status}[/]"
            detail = f.name + (f"\n[dim]{f.note}[/]" if f.note else "")
            head = (str(r.number), f"{r.id}\n[{colour}]{r.status}[/]") if i == 0 else ("", "")
            table.add_row(*head, detail, _num(f.predicted), _num(f.claimed), _band(f.band), status)
    return table


def summary_line(summary: dict) -> str:
    return (f"{summary['passed']} of {summary['claims']} claims reproduced, {summary['failed']} outside their band, "
            f"{summary['not_reproduced']} not reproducible yet (inputs or levers missing); direction right for "
            f"{summary['directions_right']} of {summary['evaluated']} evaluated")  # fmt: skip
