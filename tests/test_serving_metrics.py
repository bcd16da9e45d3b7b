"""Serving metrics: exact percentiles on hand-made timelines, SLO goodput, rejection counts, stable JSON keys."""

from __future__ import annotations

import csv
import json
import math
import sys
import time

import numpy as np
import pytest

from fathom.errors import FathomInputError
from fathom.serving.metrics import TABLE_COLUMNS, requests_table, summarize, write_requests
from fathom.serving.request import Request, RequestState


def _finished(i, arrival, ttft, tpot, output_tokens=11, input_tokens=10, **kw) -> Request:
    first = arrival + ttft
    return Request(
        id=i, arrival_s=arrival, input_tokens=input_tokens, output_tokens=output_tokens,
        state=RequestState.FINISHED, prefilled_tokens=input_tokens, generated_tokens=output_tokens,
        first_token_s=first, finished_s=first + tpot * (output_tokens - 1), **kw,
    )  # fmt: skip


def _rejected(i, arrival, reason) -> Request:
    return Request(
        id=i, arrival_s=arrival, input_tokens=10, output_tokens=5, state=RequestState.REJECTED, reject_reason=reason
    )


def _ladder() -> list[Request]:
    """101 requests, request i arriving at t=i with TTFT i/100 s and TPOT i/1000 s over 11 output tokens, so
    E2E = i/50 s. Percentile q of 0..100 is exactly q; the last completion is at 100 + 2 = 102 s."""
    return [_finished(i, float(i), i / 100, i / 1000, replica=i % 2, preemptions=int(i % 3 == 0)) for i in range(101)]


def test_exact_percentiles_on_a_ladder():
    report = summarize(_ladder())
    for stats, scale in ((report.ttft_s, 0.01), (report.tpot_s, 0.001), (report.e2e_s, 0.02)):
        assert stats.p50 == pytest.approx(50 * scale, rel=1e-9)
        assert stats.p90 == pytest.approx(90 * scale, rel=1e-9)
        assert stats.p95 == pytest.approx(95 * scale, rel=1e-9)
        assert stats.p99 == pytest.approx(99 * scale, rel=1e-9)
        assert stats.mean == pytest.approx(50 * scale, rel=1e-9)
    assert report.itl_s.p50 is None  # no token times recorded: no ITL, rather than a made-up one


def test_throughput_over_the_makespan():
    report = summarize(_ladder())
    assert report.duration_s == pytest.approx(102.0)
    assert report.completed == 101 and report.rejected == 0
    assert report.throughput.requests_per_s == pytest.approx(101 / 102)
    assert report.throughput.output_tokens_per_s == pytest.approx(101 * 11 / 102)
    assert report.throughput.total_tokens_per_s == pytest.approx(101 * 21 / 102)
    assert report.preemptions == 34  # i % 3 == 0 for i in 0..100
    assert report.goodput_requests_per_s == pytest.approx(101 / 102)  # no SLO, no constraint


@pytest.mark.parametrize(
    ("ttft", "tpot", "good"),
    [(None, None, 101), (0.505, None, 51), (None, 0.0305, 31), (0.505, 0.0305, 31), (0.205, 0.0505, 21), (0.0, 0.0, 1)],
)
def test_goodput_respects_slos(ttft, tpot, good):
    report = summarize(_ladder(), slo_ttft_s=ttft, slo_tpot_s=tpot)
    assert report.goodput_requests_per_s == pytest.approx(good / 102)


def test_single_token_requests_have_no_tpot_and_pass_the_tpot_slo():
    requests = [_finished(0, 0.0, 0.1, 0.0, output_tokens=1), _finished(1, 0.0, 0.1, 0.5, output_tokens=3)]
    report = summarize(requests, slo_tpot_s=0.1)
    assert report.tpot_s.p50 == pytest.approx(0.5) and report.tpot_s.mean == pytest.approx(0.5)
    assert report.goodput_requests_per_s == pytest.approx(1 / 1.1)
    assert math.isnan(requests_table(requests)["tpot_s"][0])


def test_itl_pools_gaps_within_requests_only():
    a = _finished(0, 0.0, 0.0, 0.15, output_tokens=3, token_times_s=[0.0, 0.1, 0.3])
    b = _finished(1, 5.0, 0.0, 0.5, output_tokens=2, token_times_s=[5.0, 5.5])
    report = summarize([a, b])
    assert report.itl_s.p50 == pytest.approx(0.2)  # gaps 0.1, 0.2, 0.5; not the 4.7 s between requests
    assert report.itl_s.mean == pytest.approx(0.8 / 3)
    assert report.itl_s.p99 == pytest.approx(0.2 + 0.98 * 0.3)


def test_rejections_counted_with_reasons_and_excluded_from_latency():
    requests = _ladder() + [
        _rejected(101, 0.0, "prompt too long"), _rejected(102, 1.0, "prompt too long"),
        _rejected(103, 2.0, "queue full"), _rejected(104, 3.0, None),
    ]  # fmt: skip
    unfinished = Request(id=105, arrival_s=50.0, input_tokens=10, output_tokens=5, state=RequestState.RUNNING)
    report = summarize(requests + [unfinished])
    assert report.completed == 101 and report.rejected == 4
    assert report.rejected_reasons == {"prompt too long": 2, "queue full": 1, "unspecified": 1}
    assert report.ttft_s.p50 == pytest.approx(0.5)


def test_max_concurrency_from_requests_and_from_series():
    requests = [_finished(0, 0.0, 10.0, 0.0, 1), _finished(1, 5.0, 1.0, 0.0, 1), _finished(2, 10.0, 2.0, 0.0, 1)]
    assert summarize(requests).max_concurrency == 2  # request 2 arrives as request 0 leaves
    series = {0: ([0.0, 2.0, 4.0], [1, 3, 0]), 1: ([1.0, 3.0], [2, 1])}
    assert summarize(requests, concurrency_series=series).max_concurrency == 5  # 3 + 2 during [2, 3)
    assert summarize(requests, concurrency_series=list(series.values())).max_concurrency == 5


def test_gpu_seconds_energy_and_cost():
    report = summarize(
        _ladder(), num_gpus=4, busy_gpu_seconds=200.0, device_power_w=700.0, idle_power_w=100.0, pue=1.5,
        price_per_gpu_hour=2.0, kv_cache_gib=12.5,
    )  # fmt: skip
    tokens = 101 * 11
    assert report.gpu_seconds == pytest.approx(4 * 102)
    assert report.energy_per_token_j == pytest.approx((200 * 700 + 208 * 100) * 1.5 / tokens)
    assert report.cost_per_million_tokens == pytest.approx(2.0 * 408 / 3600 / tokens * 1e6)
    assert report.kv_cache_gib == 12.5
    plain = summarize(_ladder(), num_gpus=4, device_power_w=700.0)  # idle counted at full power, PUE 1
    assert plain.energy_per_token_j == pytest.approx(408 * 700 / tokens)
    assert plain.cost_per_million_tokens is None
    assert summarize(_ladder()).gpu_seconds is None and summarize(_ladder()).energy_per_token_j is None


STATS = {"p50", "p90", "p95", "p99", "mean"}
TOP = {
    "ttft_s", "tpot_s", "itl_s", "e2e_s", "throughput", "goodput_requests_per_s", "completed", "rejected",
    "rejected_reasons", "max_concurrency", "kv_cache_gib", "preemptions", "gpu_seconds", "energy_per_token_j",
    "cost_per_million_tokens", "duration_s",
}  # fmt: skip


@pytest.mark.parametrize("requests", [[], _ladder()])
def test_json_keys_exactly(requests):
    data = json.loads(summarize(requests).model_dump_json())
    assert set(data) == TOP
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(data[key]) == STATS
    assert set(data["throughput"]) == {"requests_per_s", "output_tokens_per_s", "total_tokens_per_s"}


def test_table_columns_and_csv_round_trip(tmp_path):
    requests = _ladder()[:5] + [_rejected(5, 6.0, "kv")]
    table = requests_table(requests)
    assert tuple(table) == TABLE_COLUMNS and all(len(v) == 6 for v in table.values())
    assert table["replica"][-1] == -1 and math.isnan(table["ttft_s"][-1])
    path = tmp_path / "requests.csv"
    write_requests(requests, path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == TABLE_COLUMNS and len(rows) == 6
    for name, column in table.items():
        back = [row[name] for row in rows]
        if column.dtype.kind == "f":
            np.testing.assert_array_equal(np.array([float(x) if x else math.nan for x in back]), column)
        elif column.dtype.kind == "i":
            np.testing.assert_array_equal(np.array(back, dtype=np.int64), column)
        else:
            assert back == column.tolist()
    assert rows[-1]["state"] == "rejected" and rows[0]["state"] == "finished"


def test_write_errors(tmp_path, monkeypatch):
    with pytest.raises(FathomInputError, match="valid: .csv, .parquet"):
        write_requests(_ladder(), tmp_path / "requests.xlsx")
    with pytest.raises(FathomInputError, match="no such directory"):
        write_requests(_ladder(), tmp_path / "missing" / "requests.csv")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(FathomInputError, match="pyarrow"):
        write_requests(_ladder(), tmp_path / "requests.parquet")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_parquet_round_trip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "requests.parquet"
    write_requests(_ladder(), path)
    back = pq.read_table(path).to_pydict()
    np.testing.assert_array_equal(back["ttft_s"], requests_table(_ladder())["ttft_s"])


def test_hundred_thousand_requests_summarise_quickly():
    rng = np.random.default_rng(0)
    ttft, tpot = rng.exponential(0.2, 100_000), rng.exponential(0.02, 100_000)
    requests = [_finished(i, i * 0.01, ttft[i], tpot[i], output_tokens=1 + i % 200) for i in range(100_000)]
    start = time.perf_counter()
    report = summarize(requests, slo_ttft_s=0.5, slo_tpot_s=0.05)
    assert time.perf_counter() - start < 2.0  # well under a second on a laptop; loose for shared CI
    assert report.completed == 100_000
