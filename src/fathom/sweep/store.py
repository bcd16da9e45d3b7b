"""Where sweep rows go. Each finished row is appended to a JSON-lines checkpoint beside the output
(``.<name>.partial.jsonl``) and flushed at once, so an interrupted sweep loses at most the rows in flight; the
table (Parquet or CSV, every column of every row) is written whole at the end and the checkpoint removed. A rerun
reads the ids in both and skips those scenarios."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from fathom.errors import FathomInputError
from fathom.reports.output import check_writable, write_atomic

FORMATS = (".parquet", ".csv")


def check_output(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise FathomInputError(f"--out: {str(path)!r} must end in {' or '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise FathomInputError(f"--out: no such directory {str(path.parent)!r}")
    check_writable(path, "--out")  # a directory, or a folder this process cannot write in: one line, now
    if path.exists() and not _is_sweep_table(path):
        raise FathomInputError(f"--out: {str(path)!r} exists and is not a sweep table (no scenario_id column); "
                               "give a new file, or move that one away")  # fmt: skip
    return path


def _is_sweep_table(path: Path) -> bool:
    """Whether an existing output is a sweep's own table (which a rerun resumes), not some other file."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return "scenario_id" in pq.read_schema(path).names
        with path.open(newline="", encoding="utf-8") as fh:
            return "scenario_id" in next(csv.reader(fh), [])
    except Exception:  # unreadable, not Parquet, not text: not ours either
        return False


def checkpoint_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial.jsonl")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows already in the table and in its checkpoint (a torn last checkpoint line is ignored)."""
    rows: list[dict[str, Any]] = []
    if path.exists():
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        else:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    ckpt = checkpoint_path(path)
    if ckpt.exists():
        for line in ckpt.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _parse(text: str) -> Any:
    """A CSV cell back to a value: empty = missing, numbers and booleans as JSON reads them, else the text."""
    if text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class Checkpoint:
    """Appends one JSON line per finished row."""

    def __init__(self, path: Path) -> None:
        self.path = checkpoint_path(path)
        self._fh = self.path.open("a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    lead = ["scenario_id", "kind", "status", "error"]
    rest = sorted({k for r in rows for k in r} - set(lead), key=lambda k: (not k.startswith("in."), k))
    return lead + rest


def write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    """Every row, every column (missing cells empty), written whole; then the checkpoint goes."""
    cols = _columns(rows)
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = {}
        for c in cols:
            values = [r.get(c) for r in rows]
            if any(isinstance(v, float) for v in values) and all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
            ):
                values = [None if v is None else float(v) for v in values]  # ints and floats in one column
            arrays[c] = values
        buf = pa.BufferOutputStream()
        pq.write_table(pa.table(arrays), buf)
        write_atomic(path, buf.getvalue().to_pybytes())
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(cols)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else (json.dumps(r[c]) if not isinstance(r[c], str) else r[c])
                             for c in cols])  # fmt: skip
        write_atomic(path, text.getvalue().encode("utf-8"))
    checkpoint_path(path).unlink(missing_ok=True)
