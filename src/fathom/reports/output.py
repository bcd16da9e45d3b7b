"""Where a plot or report goes: its path checked before any work is done, and written whole or not at all."""

from __future__ import annotations

import os
import tempfile
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


def check_writable(path: str | Path, option: str) -> Path:
    """The path, if it is not a directory and a file can be created beside it (tried with a temporary file, as
    ``write_atomic`` writes); else a one-line input error naming ``option``. For outputs checked before long work."""
    path = Path(path)
    if path.is_dir():
        raise FathomInputError(f"{option}: {str(path)!r} is a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise FathomInputError(f"{option}: cannot create a file in {path.parent} ({exc.strerror or exc})") from None
    return path


def write_atomic(path: str | Path, data: bytes | str, option: str | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place: a failure leaves no half-written
    file. The file gets the permissions a plain ``open`` would have given; errors name ``option`` (else the path)."""
    path = Path(path)
    where = option or str(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise FathomInputError(f"{where}: cannot create a file in {path.parent} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what a plain open() would have given
        os.replace(tmp, path)
    except OSError as exc:
        raise FathomInputError(f"{where}: cannot write {path} ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
