"""Error summaries shared by every ``fathom validate`` command: per group and source, and over all sources."""

from __future__ import annotations

import re
from collections.abc import Iterable


def short_source(source: str) -> str:
    """The citation up to its first comma or parenthesis: enough to tell sources apart in a table."""
    return re.split(r",| \(", source, maxsplit=1)[0].strip()


def error_summary(items: Iterable[tuple[str, str, float | None]]) -> dict[str, dict[str, float]]:
    """``(group, source, error_pct)`` triples -> rows, mean and max absolute % error and rows worse than 25%,
    per ``"group | source"`` and per ``"group | all sources"``. Rows without an error are left out."""
    groups: dict[str, list[float]] = {}
    for group, source, error in items:
        if error is None:
            continue
        for key in (f"{group} | {short_source(source)}", f"{group} | all sources"):
            groups.setdefault(key, []).append(abs(error))
    return {
        key: {
            "rows": len(errors),
            "mean_abs_error_pct": sum(errors) / len(errors),
            "max_abs_error_pct": max(errors),
            "rows_over_25pct": sum(1 for e in errors if e > 25.0),
        }
        for key, errors in sorted(groups.items())
    }
