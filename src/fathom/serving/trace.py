"""Trace replay: requests read from JSONL or CSV, with one-line errors that name the line."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from fathom.errors import FathomInputError, read_user_file
from fathom.serving.lengths import ARRIVAL_FIELDS, INPUT_FIELDS, OUTPUT_FIELDS, _whole  # noqa: F401
from fathom.serving.request import Request

# ----------------------------------------------------------------------------------------------- traces


def _trace_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line number, record) per request; JSONL for .jsonl/.ndjson/.json, CSV for .csv, else by the first byte."""
    suffix = path.suffix.lower()
    is_json = suffix in (".jsonl", ".ndjson", ".json") or (suffix != ".csv" and text.lstrip().startswith("{"))
    rows: list[tuple[int, dict]] = []
    if is_json:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FathomInputError(f"{path} line {n}: malformed JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise FathomInputError(f"{path} line {n}: expected a JSON object per line")
            rows.append((n, record))
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    for record in reader:
        if any(v not in (None, "") for v in record.values()):
            rows.append((reader.line_num, record))
    return rows


def _field(path: Path, n: int, record: dict, names: tuple[str, ...]) -> float:
    for name in names:
        if record.get(name) not in (None, ""):
            raw = record[name]
            try:
                value = float(raw) if not isinstance(raw, bool) else math.nan
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise FathomInputError(f"{path} line {n}: {name}={raw!r} is not a number")
            return value
    raise FathomInputError(f"{path} line {n}: missing field {names[0]} (or {', '.join(names[1:])})")


def _tokens(path: Path, n: int, record: dict, names: tuple[str, ...]) -> int:
    value = _field(path, n, record, names)
    if not value.is_integer() or value < 1:
        raise FathomInputError(f"{path} line {n}: {names[0]} must be a whole number >= 1 (got {value:g})")
    return int(value)


def load_trace(path: str | Path) -> list[Request]:
    """Requests from a JSONL or CSV trace, one per line/row, ids from 0 in file order. Fields: ``arrival_s``
    (or ``timestamp``/``arrival_time``, seconds, non-negative, sorted), ``input_tokens`` (or ``prompt_tokens``/
    ``input_len``), ``output_tokens`` (or ``output_len``/``completion_tokens``), optional ``prefix_id`` with
    ``prefix_len``. Times are kept as written. Any bad line fails the whole load with its line number."""
    path = Path(path)
    rows = _trace_rows(path, read_user_file(path))
    if not rows:
        raise FathomInputError(f"{path}: empty trace (no requests)")
    requests: list[Request] = []
    previous = 0.0
    for n, record in rows:
        arrival = _field(path, n, record, ARRIVAL_FIELDS)
        if arrival < 0:
            raise FathomInputError(f"{path} line {n}: negative arrival time {arrival:g}")
        if arrival < previous:
            raise FathomInputError(
                f"{path} line {n}: arrival {arrival:g} is before the previous {previous:g} (sort the trace by time)"
            )
        previous = arrival
        inputs = _tokens(path, n, record, INPUT_FIELDS)
        outputs = _tokens(path, n, record, OUTPUT_FIELDS)
        raw_id = record.get("prefix_id")
        prefix_id = None if raw_id in (None, "") else str(raw_id)
        has_len = record.get("prefix_len") not in (None, "")
        if prefix_id is None and has_len and _field(path, n, record, ("prefix_len",)) != 0:
            raise FathomInputError(f"{path} line {n}: prefix_len without a prefix_id")
        prefix_len = 0
        if prefix_id is not None:
            if not has_len:
                raise FathomInputError(f"{path} line {n}: prefix_id {prefix_id!r} needs a prefix_len")
            prefix_len = _tokens(path, n, record, ("prefix_len",))
            if prefix_len > inputs:
                raise FathomInputError(f"{path} line {n}: prefix_len {prefix_len} exceeds input_tokens {inputs}")
        requests.append(Request(len(requests), arrival, inputs, outputs, prefix_id=prefix_id, prefix_len=prefix_len))
    return requests
