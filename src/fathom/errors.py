"""User-facing errors: one line, naming the field and the valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FathomInputError(ValueError):
    """Bad input from a user. The CLI prints ``str(err)`` on one line and exits with code 2."""


def unknown_name_error(field: str, name: str, choices: Iterable[str]) -> FathomInputError:
    """An error for an unknown catalog name, with close matches first and then all valid names."""
    valid = sorted(choices)
    close = difflib.get_close_matches(name.lower(), valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:40]) + ", ..."
    return FathomInputError(f"{field}: unknown name {name!r}{hint} (valid: {listing})")
