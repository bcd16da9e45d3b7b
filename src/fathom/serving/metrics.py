"""What a serving run delivered: latency percentiles, throughput, goodput under SLOs, energy and cost.

Conventions (the report's keys are a contract: scripts depend on them):
- TTFT = first_token_s - arrival_s (queueing included); E2E = finished_s - arrival_s.
- TPOT = mean time per output token AFTER the first, per request: (finished_s - first_token_s) / (output_tokens - 1).
  Requests with one output token have no TPOT: they are left out of the TPOT statistics and pass any TPOT SLO.
- ITL = every gap between consecutive entries of ``token_times_s``, pooled across requests (computed as distinct
  iteration durations with their counts, ``fathom.serving.token_times.itl_sample``).
- Latencies, throughput and goodput count FINISHED requests only; requests still in flight when the run ended are
  neither completed nor rejected. Throughput and goodput divide by the makespan: first arrival to last completion.
- Energy and cost are per OUTPUT token.
- ``kv_cache_gib`` is one replica's KV cache, all its GPUs together (per-GPU capacity x tp x pp); the simulator
  itself counts KV in tokens per replica, which every GPU of the replica holds its share of.
- ``rejected_reasons`` counts rejected requests per kind of limit (``exceed max_context 4096``), not per request.
- Parallel samples (``Request.samples`` = N, best-of-N): a request's TTFT is its first token (every sample gets its
  first token from the one prefill), its E2E ends with its last sample, its TPOT spans first token to last sample's
  end, its ITL gaps are its first sample's; throughput, energy and cost count the tokens of all N samples.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import compress
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from fathom.errors import FathomInputError
from fathom.serving.request import Request, RequestState
from fathom.serving.token_times import itl_sample

PERCENTILES = (50, 90, 95, 99)
TABLE_COLUMNS = (
    "id", "arrival_s", "input_tokens", "output_tokens", "replica", "ttft_s", "tpot_s", "e2e_s", "state", "preemptions",
)  # fmt: skip
TABLE_FORMATS = (".csv", ".parquet")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencyStats(_Strict):
    """Seconds; None when no request contributed a value."""

    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    mean: float | None


class Throughput(_Strict):
    requests_per_s: float
    output_tokens_per_s: float
    total_tokens_per_s: float  # input + output tokens of finished requests


class ServingReport(_Strict):
    ttft_s: LatencyStats
    tpot_s: LatencyStats
    itl_s: LatencyStats
    e2e_s: LatencyStats
    throughput: Throughput
    goodput_requests_per_s: float  # finished requests meeting both SLOs, per second of makespan
    completed: int
    rejected: int
    rejected_reasons: dict[str, int]
    max_concurrency: int
    kv_cache_gib: float | None  # KV cache of one replica, summed over its GPUs (disaggregated: a decode replica's)
    preemptions: int
    gpu_seconds: float | None
    energy_per_token_j: float | None  # per output token
    cost_per_million_tokens: float | None  # USD per million output tokens
    duration_s: float  # makespan: first arrival to last completion


def stats(values: np.ndarray) -> LatencyStats:
    """p50/p90/p95/p99 (numpy's linear interpolation) and mean of ``values``, NaNs dropped."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return LatencyStats(p50=None, p90=None, p95=None, p99=None, mean=None)
    p = np.percentile(values, PERCENTILES)
    return LatencyStats(p50=float(p[0]), p90=float(p[1]), p95=float(p[2]), p99=float(p[3]), mean=float(values.mean()))


def counted_stats(values: np.ndarray, counts: np.ndarray) -> LatencyStats:
    """``stats`` of the sample in which ``values[i]`` occurs ``counts[i]`` times, without expanding it: the same
    order statistics and numpy's linear interpolation between them (a day of traffic pools ~1e8 inter-token gaps
    that are a few million distinct iteration durations)."""
    values, counts = np.asarray(values, dtype=float), np.asarray(counts, dtype=float)
    keep = (counts > 0) & ~np.isnan(values)
    values, counts = values[keep], counts[keep]
    if values.size == 0:
        return LatencyStats(p50=None, p90=None, p95=None, p99=None, mean=None)
    order = np.argsort(values, kind="stable")
    values, upto = values[order], np.cumsum(counts[order])  # upto[i]: elements of the sorted sample through i
    n = upto[-1]
    rank = (n - 1) * np.asarray(PERCENTILES, dtype=float) / 100.0
    below = np.floor(rank)
    a = values[np.searchsorted(upto, below, side="right")]
    b = values[np.searchsorted(upto, np.minimum(below + 1, n - 1), side="right")]
    t = rank - below
    diff = b - a
    p = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)  # numpy's _lerp, so the result is numpy's to the bit
    mean = float(np.dot(values, counts[order]) / n)
    return LatencyStats(p50=float(p[0]), p90=float(p[1]), p95=float(p[2]), p99=float(p[3]), mean=mean)


def requests_table(requests: Sequence[Request]) -> dict[str, np.ndarray]:
    """One array per column of ``TABLE_COLUMNS``. Times a request never reached are NaN; ``replica`` is -1 for a
    request never placed; ``tpot_s`` is NaN for requests with fewer than two output tokens."""
    rows = [
        (r.id, r.arrival_s, r.input_tokens, r.output_tokens, r.replica, r.first_token_s, r.finished_s, r.preemptions)
        for r in requests
    ]
    grid = np.array(rows, dtype=float).reshape(len(rows), 8)  # None -> NaN
    ids, arrival, inputs, output, replica, first, finished, preemptions = grid.T
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(output > 1, (finished - first) / (output - 1), math.nan)
    return {
        "id": ids.astype(np.int64),
        "arrival_s": arrival,
        "input_tokens": inputs.astype(np.int64),
        "output_tokens": output.astype(np.int64),
        "replica": np.nan_to_num(replica, nan=-1).astype(np.int64),
        "ttft_s": first - arrival,
        "tpot_s": tpot,
        "e2e_s": finished - arrival,
        "state": np.array([str(r.state) for r in requests], dtype=str),
        "preemptions": preemptions.astype(np.int64),
    }


def _max_concurrency(table: dict[str, np.ndarray], series) -> int:
    """Peak of the summed per-replica step functions if given, else of requests in the system (arrival to
    completion; a completion and an arrival at the same instant do not overlap)."""
    if series is not None:
        pairs = [
            (np.asarray(t, float), np.asarray(v, float))
            for t, v in (series.values() if isinstance(series, Mapping) else series)
        ]
        pairs = [(t, v) for t, v in pairs if t.size]
        if not pairs:
            return 0
        grid = np.unique(np.concatenate([t for t, _ in pairs]))
        total = np.zeros(grid.size)
        for t, v in pairs:
            idx = np.searchsorted(t, grid, side="right") - 1
            total += np.where(idx >= 0, v[np.maximum(idx, 0)], 0.0)
        return int(round(total.max()))
    done = table["state"] == str(RequestState.FINISHED)
    starts, ends = table["arrival_s"][done], table["arrival_s"][done] + table["e2e_s"][done]
    if starts.size == 0:
        return 0
    times = np.concatenate([ends, starts])
    steps = np.concatenate([-np.ones(ends.size), np.ones(starts.size)])
    order = np.lexsort((steps, times))  # at equal times, -1 (completion) sorts before +1 (arrival)
    return int(np.cumsum(steps[order]).max())


def summarize(
    requests: Sequence[Request],
    *,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
    concurrency_series: Mapping[object, tuple] | Sequence[tuple] | None = None,
    busy_gpu_seconds: float | None = None,
    num_gpus: int | None = None,
    device_power_w: float | None = None,
    idle_power_w: float | None = None,
    pue: float = 1.0,
    price_per_gpu_hour: float | None = None,
    kv_cache_gib: float | None = None,
) -> ServingReport:
    """The report of one run.

    ``concurrency_series``: per replica, ``(times_s, in_flight)`` arrays read as step functions; their sum's peak
    is ``max_concurrency``. ``gpu_seconds`` is provisioned time, ``num_gpus`` x makespan, or ``busy_gpu_seconds``
    when ``num_gpus`` is not given; cost is ``price_per_gpu_hour`` x those GPU-hours. Energy charges busy GPU time
    at ``device_power_w`` and the rest at ``idle_power_w`` (default: ``device_power_w``, the training convention
    of power x GPUs x time), times ``pue``.
    """
    table = requests_table(requests)
    done = table["state"] == str(RequestState.FINISHED)
    rejected = table["state"] == str(RequestState.REJECTED)
    reasons = Counter(r.reject_reason or "unspecified" for r in compress(requests, rejected.tolist()))
    ttft, tpot, e2e = table["ttft_s"][done], table["tpot_s"][done], table["e2e_s"][done]
    completed = int(done.sum())
    samples = np.fromiter((r.samples for r in requests), dtype=np.int64, count=len(requests))
    output_tokens = int((table["output_tokens"][done] * samples[done]).sum())  # every sample's tokens
    total_tokens = output_tokens + int(table["input_tokens"][done].sum())
    duration = 0.0
    if completed and table["arrival_s"].size:
        duration = float((table["arrival_s"][done] + e2e).max() - table["arrival_s"].min())
    good = np.ones(completed, dtype=bool)
    if slo_ttft_s is not None:
        good &= ttft <= slo_ttft_s
    if slo_tpot_s is not None:
        good &= np.isnan(tpot) | (tpot <= slo_tpot_s)
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)

    gpu_seconds = num_gpus * duration if num_gpus is not None else busy_gpu_seconds
    energy_j = None
    if device_power_w is not None and gpu_seconds is not None:
        busy = gpu_seconds if busy_gpu_seconds is None else min(busy_gpu_seconds, gpu_seconds)
        idle_w = device_power_w if idle_power_w is None else idle_power_w
        energy_j = (busy * device_power_w + (gpu_seconds - busy) * idle_w) * pue
    has_tokens = output_tokens > 0
    cost = None
    if price_per_gpu_hour is not None and gpu_seconds is not None and has_tokens:
        cost = price_per_gpu_hour * gpu_seconds / 3600.0 / output_tokens * 1e6
    return ServingReport(
        ttft_s=stats(ttft),
        tpot_s=stats(tpot),
        itl_s=counted_stats(*itl_sample(r.token_times_s for r in compress(requests, done.tolist()))),
        e2e_s=stats(e2e),
        throughput=Throughput(
            requests_per_s=per_s(completed),
            output_tokens_per_s=per_s(output_tokens),
            total_tokens_per_s=per_s(total_tokens),
        ),
        goodput_requests_per_s=per_s(int(good.sum())),
        completed=completed,
        rejected=int(rejected.sum()),
        rejected_reasons=dict(sorted(reasons.items())),
        max_concurrency=_max_concurrency(table, concurrency_series),
        kv_cache_gib=kv_cache_gib,
        preemptions=int(table["preemptions"].sum()),
        gpu_seconds=gpu_seconds,
        energy_per_token_j=energy_j / output_tokens if energy_j is not None and has_tokens else None,
        cost_per_million_tokens=cost,
        duration_s=duration,
    )


def _csv_column(values: np.ndarray) -> list:
    """Floats as their shortest exact repr, NaN as an empty cell; other columns as they are."""
    if values.dtype.kind != "f":
        return values.tolist()
    return ["" if v != v else repr(v) for v in values.tolist()]


def write_requests(requests: Sequence[Request], path: str | Path) -> None:
    """The per-request table as ``.csv`` (NaN as an empty cell) or ``.parquet`` (needs pyarrow). The file is written
    beside its destination and renamed into place, so a failure leaves no half-written table."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise FathomInputError(
            f"{path}: unknown table format {suffix or '(none)'!r} (valid: {', '.join(TABLE_FORMATS)})"
        )
    if not path.parent.is_dir():
        raise FathomInputError(f"{path}: no such directory {str(path.parent)!r}")
    table = requests_table(requests)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise FathomInputError(
                    f"{path}: writing Parquet needs pyarrow (pip install pyarrow), or use .csv"
                ) from None
            pq.write_table(pa.table({k: table[k] for k in TABLE_COLUMNS}), tmp)
        else:
            with tmp.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(TABLE_COLUMNS)
                writer.writerows(zip(*(_csv_column(table[k]) for k in TABLE_COLUMNS), strict=True))
        os.replace(tmp, path)
    except OSError as exc:
        raise FathomInputError(f"{path}: cannot write: {' '.join(str(exc).split())}") from None
    finally:
        tmp.unlink(missing_ok=True)
