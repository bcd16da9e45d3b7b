"""Synthetic and replayed workloads: who asks what, and when.

A workload is a list of ``Request``s sorted by arrival. Lengths come from ``LengthDist``s parsed from CLI specs;
arrivals from an open-loop process (Poisson, gamma, fixed-rate, offline) or a trace file. Every random draw goes
through the ``numpy.random.Generator`` the caller passes in, so one seed reproduces one workload.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fathom.errors import FathomInputError, close_matches
from fathom.serving.lengths import (  # noqa: F401  (re-exported: the public workload API)
    ARRIVAL_FIELDS,
    ARRIVAL_KINDS,
    INPUT_FIELDS,
    LENGTH_KINDS,
    MAX_REQUESTS,
    OUTPUT_FIELDS,
    EmpiricalLength,
    FixedLength,
    LengthDist,
    LognormalLength,
    NormalLength,
    UniformLength,
    parse_length_dist,
)
from fathom.serving.request import Request
from fathom.serving.trace import load_trace  # noqa: F401

# ---------------------------------------------------------------------------------------------- prefixes


@dataclass(frozen=True)
class PrefixSpec:
    """A fraction ``share`` of requests opens with one of ``num_prefixes`` shared prompts (system prompt,
    few-shot examples) of ``prefix_len`` tokens, chosen uniformly; ids ``"p0"``.. ``"p{num_prefixes-1}"``.
    The input length distribution is the whole prompt: a prefixed request gets max(input, prefix_len + 1)."""

    num_prefixes: int
    prefix_len: int
    share: float

    def __post_init__(self) -> None:
        if self.num_prefixes < 1 or self.prefix_len < 1:
            raise FathomInputError(
                f"prefix: num_prefixes and prefix_len must be >= 1 (got {self.num_prefixes}, {self.prefix_len})"
            )
        if not 0.0 <= self.share <= 1.0:
            raise FathomInputError(f"prefix: share must be in [0, 1] (got {self.share})")


def _draw(
    n: int, input_dist: LengthDist, output_dist: LengthDist, prefix: PrefixSpec | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input lengths, output lengths and prefix index per request (-1: none), in a fixed draw order."""
    inputs = np.asarray(input_dist.sample(rng, n), dtype=np.int64)
    outputs = np.asarray(output_dist.sample(rng, n), dtype=np.int64)
    which = np.full(n, -1, dtype=np.int64)
    if prefix is not None:
        shared = rng.random(n) < prefix.share
        pick = rng.integers(0, prefix.num_prefixes, size=n)
        which = np.where(shared, pick, -1)
        inputs = np.where(shared, np.maximum(inputs, prefix.prefix_len + 1), inputs)
    return inputs, outputs, which


def _build(ids, arrivals, inputs, outputs, which, prefix: PrefixSpec | None) -> list[Request]:
    plen = prefix.prefix_len if prefix is not None else 0
    columns = (list(ids), np.asarray(arrivals, float).tolist(), inputs.tolist(), outputs.tolist(), which.tolist())
    return [
        Request(i, t, a, b, prefix_id=f"p{k}" if k >= 0 else None, prefix_len=plen if k >= 0 else 0)
        for i, t, a, b, k in zip(*columns, strict=True)
    ]


def make_request_factory(
    input_dist: LengthDist, output_dist: LengthDist, prefix: PrefixSpec | None = None
) -> Callable[[int, float, np.random.Generator], Request]:
    """For closed-loop runs (C requests in flight): ``factory(id, now_s, rng)`` draws one request arriving now."""

    def factory(request_id: int, now_s: float, rng: np.random.Generator) -> Request:
        inputs, outputs, which = _draw(1, input_dist, output_dist, prefix, rng)
        return _build([request_id], [now_s], inputs, outputs, which, prefix)[0]

    return factory


# ---------------------------------------------------------------------------------------------- arrivals


def _gaps(kind: str, rate: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "poisson":
        return rng.exponential(1.0 / rate, size=n)
    shape = 1.0 / cv**2  # gamma: mean k*theta = 1/rate, CV = 1/sqrt(k)
    return rng.gamma(shape, 1.0 / (rate * shape), size=n)


def _arrivals(
    kind: str, rate: float, cv: float, n: int | None, duration: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Arrival times, the first at t=0, stopping at ``n`` requests or at the first arrival >= ``duration``."""
    if kind == "offline":
        return np.zeros(n or 0)
    if kind == "fixed-rate":
        count = n if duration is None else math.ceil(duration * rate) + 1
        times = np.arange(count if n is None else min(count, n)) / rate
        return times if duration is None else times[times < duration]
    if duration is None:
        return np.concatenate([[0.0], np.cumsum(_gaps(kind, rate, cv, n - 1, rng))])
    expected = rate * duration
    chunk = int(expected + 6 * math.sqrt(expected) * max(cv, 1.0) + 16)  # usually one chunk covers the duration
    chunk = chunk if n is None else min(chunk, n)
    parts, last, total = [np.zeros(1)], 0.0, 1
    while last < duration and (n is None or total < n):
        times = last + np.cumsum(_gaps(kind, rate, cv, chunk, rng))
        parts.append(times)
        last, total = float(times[-1]), total + chunk
    times = np.concatenate(parts)
    times = times[times < duration]
    return times if n is None else times[:n]


def generate_requests(
    *,
    arrival: str,
    rate: float | None,
    num_requests: int | None,
    duration_s: float | None,
    cv: float = 1.0,
    input_dist: LengthDist,
    output_dist: LengthDist,
    rng: np.random.Generator,
    prefix: PrefixSpec | None = None,
) -> list[Request]:
    """An open-loop workload sorted by arrival, ids from 0. The first request arrives at t=0; generation stops
    after ``num_requests`` or before the first arrival at or past ``duration_s``, whichever comes first.

    ``poisson``: exponential gaps at ``rate`` per second. ``gamma``: gamma gaps with mean 1/rate and coefficient
    of variation ``cv`` (burstier above 1; cv=1 is Poisson). ``fixed-rate``: a request every 1/rate seconds.
    ``offline``: all ``num_requests`` at t=0 (``rate`` is ignored).
    """
    kind = arrival.strip().lower()
    if kind not in ARRIVAL_KINDS:
        close = close_matches(kind, ARRIVAL_KINDS)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FathomInputError(f"arrival: unknown process {arrival!r}{hint} (valid: {', '.join(ARRIVAL_KINDS)})")
    if num_requests is not None and num_requests < 1:
        raise FathomInputError(f"num_requests: must be >= 1 (got {num_requests})")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise FathomInputError(f"duration_s: must be a positive number of seconds (got {duration_s})")
    if kind == "offline":
        if num_requests is None:
            raise FathomInputError("num_requests: offline arrival sends everything at t=0, so it needs num_requests")
        expected, rate = float(num_requests), 1.0
    else:
        if rate is None or not (math.isfinite(rate) and rate > 0):
            raise FathomInputError(f"rate: {kind} arrival needs a finite rate > 0 requests/s (got {rate})")
        if num_requests is None and duration_s is None:
            raise FathomInputError("num_requests: give num_requests or duration_s (or both) to end the workload")
        expected = min(num_requests or math.inf, rate * (duration_s or math.inf))
    if kind == "gamma" and not (math.isfinite(cv) and cv > 0):
        raise FathomInputError(f"cv: gamma arrival needs a coefficient of variation > 0 (got {cv})")
    if kind != "gamma" and cv != 1.0:
        raise FathomInputError(f"cv: only gamma arrival takes a coefficient of variation (arrival is {kind})")
    if expected > MAX_REQUESTS:
        raise FathomInputError(f"num_requests: about {expected:,.0f} requests; at most {MAX_REQUESTS:,} per run")
    arrivals = _arrivals(kind, rate, cv, num_requests, duration_s, rng)
    inputs, outputs, which = _draw(arrivals.size, input_dist, output_dist, prefix, rng)
    return _build(range(arrivals.size), arrivals, inputs, outputs, which, prefix)
