"""Token-length distributions parsed from CLI specs (``fixed:N``, ``lognormal:mean=M,sigma=S``, ...).

Every draw goes through the caller's ``numpy.random.Generator``, so one seed reproduces one workload.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fathom.errors import FathomInputError, close_matches, read_user_file

LENGTH_KINDS: tuple[str, ...] = ("fixed", "uniform", "normal", "lognormal", "empirical")
ARRIVAL_KINDS: tuple[str, ...] = ("poisson", "gamma", "fixed-rate", "offline")
MAX_REQUESTS = 10_000_000  # a guard against a rate x duration typo filling memory
# Longest request length a distribution may ask for or draw, in tokens: far past any model's context, and small
# enough that sums and products of lengths stay well inside int64. Parameters past it (fixed N, uniform high,
# normal/lognormal mean, normal std, empirical values) are one-line errors; normal and lognormal draws are clipped
# to [1, MAX_LENGTH_TOKENS] before they become integers, so no draw overflows.
MAX_LENGTH_TOKENS = 10**9
# Lognormal sigma (log-space spread): at 10 the mean is e^50 times the median already; past it only rounding is left.
MAX_LOGNORMAL_SIGMA = 10.0
# Column names accepted in traces and empirical CSVs, preferred first.
ARRIVAL_FIELDS: tuple[str, ...] = ("arrival_s", "timestamp", "arrival_time")
INPUT_FIELDS: tuple[str, ...] = ("input_tokens", "prompt_tokens", "input_len")
OUTPUT_FIELDS: tuple[str, ...] = ("output_tokens", "output_len", "completion_tokens")
_USAGE = "fixed:N, uniform:low=A,high=B, normal:mean=M,std=S, lognormal:mean=M,sigma=S or empirical:PATH[,column=NAME]"


# ----------------------------------------------------------------------------------------------- lengths


class LengthDist(Protocol):
    """A distribution of token counts; ``sample`` returns int64 values >= 1."""

    spec: str

    @property
    def mean(self) -> float: ...

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FixedLength:
    value: int
    spec: str = ""

    @property
    def mean(self) -> float:
        return float(self.value)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


@dataclass(frozen=True)
class UniformLength:
    """Integers in [low, high], both ends included."""

    low: int
    high: int
    spec: str = ""

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int64)


@dataclass(frozen=True)
class NormalLength:
    """Rounded normal draws, truncated at 1: draws that round below 1 are redrawn (not clipped), so ``mean`` is
    the requested mean only while ``std`` is small next to it. Parsing requires mean >= 1, which bounds the redraws.
    Draws above ``MAX_LENGTH_TOKENS`` are clipped to it."""

    mean_tokens: float
    std: float
    spec: str = ""

    @property
    def mean(self) -> float:
        return self.mean_tokens

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.rint(rng.normal(self.mean_tokens, self.std, size=n))
        bad = out < 1
        while bad.any():
            out[bad] = np.rint(rng.normal(self.mean_tokens, self.std, size=int(bad.sum())))
            bad = out < 1
        return np.minimum(out, MAX_LENGTH_TOKENS).astype(np.int64)


@dataclass(frozen=True)
class LognormalLength:
    """Lognormal token counts. ``mean_tokens`` is the MEAN of the distribution in tokens, not the log-space mu:
    mu = ln(mean) - sigma^2/2, so the draws average ``mean_tokens`` (before rounding, the floor at 1 and the clip at
    ``MAX_LENGTH_TOKENS``)."""

    mean_tokens: float
    sigma: float
    spec: str = ""

    @property
    def mean(self) -> float:
        return self.mean_tokens

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        mu = math.log(self.mean_tokens) - self.sigma**2 / 2
        return np.clip(np.rint(rng.lognormal(mu, self.sigma, size=n)), 1, MAX_LENGTH_TOKENS).astype(np.int64)


@dataclass(frozen=True)
class EmpiricalLength:
    """Resamples (with replacement) the lengths observed in a file."""

    values: tuple[int, ...]
    spec: str = ""

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        pool = np.asarray(self.values, dtype=np.int64)
        return pool[rng.integers(0, pool.size, size=n)]


def _whole(text: object) -> int | None:
    """``text`` as a whole number (``"12"``, ``"12.0"``, ``12``), or None."""
    if isinstance(text, bool):
        return None
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def _params(field: str, kind: str, body: str, names: tuple[str, ...]) -> dict[str, float]:
    """``low=1,high=9`` -> floats, exactly the keys ``names``."""
    got: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, eq, raw = (s.strip() for s in part.partition("="))
        if not eq or key not in names:
            close = close_matches(key, names) if eq else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FathomInputError(f"{field}: {kind} takes {', '.join(n + '=' for n in names)} (got {part!r}){hint}")
        try:
            got[key] = float(raw)
        except ValueError:
            raise FathomInputError(f"{field}: {kind} {key}={raw!r} is not a number") from None
        if not math.isfinite(got[key]):
            raise FathomInputError(f"{field}: {kind} {key}={raw!r} must be finite")
    missing = [n for n in names if n not in got]
    if missing:
        example = ",".join(f"{n}=..." for n in names)
        raise FathomInputError(f"{field}: {kind} needs {', '.join(n + '=' for n in missing)} ({kind}:{example})")
    return got


def _load_empirical(field: str, body: str, spec: str) -> EmpiricalLength:
    path, column = body, None
    head, sep, tail = body.rpartition(",column=")
    if sep:
        path, column = head, tail.strip()
    path = path.strip()
    if not path:
        raise FathomInputError(f"{field}: empirical needs a file: empirical:PATH[,column=NAME]")
    where = f"{field}: {path}"
    lines = read_user_file(path, where).splitlines()
    numbered = [(i, s) for i, line in enumerate(lines, 1) if (s := line.strip()) and not s.startswith("#")]
    if not numbered:
        raise FathomInputError(f"{where}: no lengths in the file")
    if column is None and "," not in numbered[0][1] and _whole(numbered[0][1]) is not None:
        cells = numbered  # one integer per line
    else:
        rows = [next(csv.reader([line])) for _, line in numbered]
        header = [h.strip() for h in rows[0]]
        if column is None:
            aliases = OUTPUT_FIELDS if "output" in field.lower() else INPUT_FIELDS
            found = [h for h in aliases if h in header]
            column = header[0] if len(header) == 1 else (found[0] if found else None)
            if column is None:
                raise FathomInputError(
                    f"{where}: columns {', '.join(header)}; pick one with empirical:PATH,column=NAME"
                )
        if column not in header:
            close = close_matches(column, header)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FathomInputError(f"{where}: no column {column!r}{hint} (columns: {', '.join(header)})")
        j = header.index(column)
        cells = [
            (n, row[j].strip() if j < len(row) else "") for (n, _), row in zip(numbered[1:], rows[1:], strict=True)
        ]
    values = []
    for line_no, cell in cells:
        value = _whole(cell)
        if value is None or not 1 <= value <= MAX_LENGTH_TOKENS:
            raise FathomInputError(
                f"{where} line {line_no}: {cell!r} is not a whole number of tokens in 1..{MAX_LENGTH_TOKENS}"
            )
        values.append(value)
    if not values:
        raise FathomInputError(f"{where}: no lengths in the file")
    return EmpiricalLength(tuple(values), spec)


def parse_length_dist(spec: str, field: str) -> LengthDist:
    """A ``LengthDist`` from a CLI spec; ``field`` (e.g. ``--input-len``) names the flag in one-line errors."""
    text = spec.strip()
    if _whole(text) is not None:
        text = f"fixed:{text}"
    kind, colon, body = text.partition(":")
    kind = kind.strip().lower()
    if not colon or kind not in LENGTH_KINDS:
        close = close_matches(kind, LENGTH_KINDS) if kind else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FathomInputError(f"{field}: unknown length distribution {spec!r}{hint} (valid: {_USAGE})")
    if kind == "fixed":
        value = _whole(body.strip())
        if value is None or not 1 <= value <= MAX_LENGTH_TOKENS:
            what = "a length" if text != spec.strip() else "fixed:N"  # a bare number was made fixed:N above
            raise FathomInputError(
                f"{field}: {what} needs a whole number N >= 1 and <= {MAX_LENGTH_TOKENS} tokens (got {body.strip()!r})"
            )
        return FixedLength(value, spec)
    if kind == "empirical":
        return _load_empirical(field, body, spec)
    if kind == "uniform":
        p = _params(field, kind, body, ("low", "high"))
        low, high = _whole(p["low"]), _whole(p["high"])
        if low is None or high is None or not 1 <= low <= high <= MAX_LENGTH_TOKENS:
            raise FathomInputError(
                f"{field}: uniform needs whole numbers 1 <= low <= high <= {MAX_LENGTH_TOKENS} (got {body.strip()!r})"
            )
        return UniformLength(low, high, spec)
    if kind == "normal":
        p = _params(field, kind, body, ("mean", "std"))
        if not (1 <= p["mean"] <= MAX_LENGTH_TOKENS and 0 <= p["std"] <= MAX_LENGTH_TOKENS):
            raise FathomInputError(
                f"{field}: normal needs mean >= 1 and std >= 0, both <= {MAX_LENGTH_TOKENS} tokens "
                f"(got {body.strip()!r})"
            )
        return NormalLength(p["mean"], p["std"], spec)
    p = _params(field, kind, body, ("mean", "sigma"))
    if not (1 <= p["mean"] <= MAX_LENGTH_TOKENS and 0 <= p["sigma"] <= MAX_LOGNORMAL_SIGMA):
        raise FathomInputError(
            f"{field}: lognormal needs mean >= 1 and <= {MAX_LENGTH_TOKENS} (in tokens) and sigma >= 0 and <= "
            f"{MAX_LOGNORMAL_SIGMA:g} (got {body.strip()!r})"
        )
    return LognormalLength(p["mean"], p["sigma"], spec)
