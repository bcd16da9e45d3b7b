"""User-facing errors: one line, naming the field and the valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FathomInputError(ValueError):
    """Bad input from a user. The CLI prints ``str(err)`` on one line and exits with code 2."""


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Names worth suggesting: those containing what was typed first (``h100`` -> the ``h100-*`` family,
    which difflib alone ranks below ``h200`` and ``v100``), then difflib's closest spellings."""
    valid = sorted(choices)
    key = name.strip().lower()
    family = sorted((c for c in valid if key and key in c), key=lambda c: (not c.startswith(key), c))
    fuzzy = difflib.get_close_matches(key, valid, n=n, cutoff=0.5)
    return list(dict.fromkeys(family + fuzzy))[:n]


def unknown_name_error(field: str, name: str, choices: Iterable[str]) -> FathomInputError:
    """An error for an unknown catalog name, with close matches first and then all valid names."""
    valid = sorted(choices)
    close = close_matches(name, valid)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:40]) + ", ..."
    return FathomInputError(f"{field}: unknown name {name!r}{hint} (valid: {listing})")


def read_user_file(path, where: str | None = None) -> str:
    """Text of a file the user named; a missing or unreadable file is a one-line input error, not a traceback."""
    from pathlib import Path

    path = Path(path)
    where = where or str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FathomInputError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FathomInputError(f"{where}: cannot read: {' '.join(str(exc).split())}") from None
