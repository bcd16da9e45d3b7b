"""Where a plot or report goes: its path checked before any work is done, and written whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fathom.errors import FathomInputError

PLOT_SUFFIXES = (".png", ".html")  # ``--plot``: one composite figure, or a page of figures and metrics
REPORT_SUFFIXES = (".html",)  # ``--report``: the self-contained page


def check_output_path(path: str | Path, option: str, suffixes: Sequence[str]) -> Path:
    """The path, if its suffix is one of ``suffixes`` and its directory exists; else a one-line input error naming
    ``option``. Called before a simulation so that a typo does not cost a whole run."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        valid = " or ".join(suffixes)
        raise FathomInputError(f"{option}: {str(path)!r} must end in {valid} (got {suffix or 'no suffix'})")
    if not path.parent.is_dir():
        raise FathomInputError(f"{option}: no such directory {str(path.parent)!r}")
    return path


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it into place: a failure leaves no half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise FathomInputError(f"{path}: cannot write: {' '.join(str(exc).split())}") from None
    finally:
        tmp.unlink(missing_ok=True)
