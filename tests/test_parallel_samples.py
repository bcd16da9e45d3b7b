"""Parallel samples (best-of-N): one prefill, N decode streams sharing the prompt's KV blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.api.serving import Workload, simulate_serving
from fathom.cli.app import run
from fathom.serving.cost import LinearCostModel
from fathom.serving.metrics import summarize
from fathom.serving.request import Request, RequestState
from fathom.serving.simulator import ReplicaConfig, simulate
from fathom.specs.serving import ServingPlan


def sampled(i: int, at: float, n_in: int, n_out: int, samples: int) -> Request:
    return Request(i, at, n_in, n_out, samples=samples)


def test_prompt_prefilled_once_and_blocks_shared():
    reqs = [sampled(0, 0.0, 1024, 16, 4)]
    result = simulate(reqs, [ReplicaConfig(cost=LinearCostModel(kv_capacity_tokens=100_000, block_size=16))])
    stats, req = result.replicas[0], result.requests[0]
    assert req.state is RequestState.FINISHED
    assert stats.prefill_tokens == 1024  # once, not four times
    assert stats.decode_tokens == 4 * 15  # each sample's tokens after the shared first one
    # 64 full prompt blocks shared + one private block per sample, against 4 x 65 for four separate requests
    assert stats.timeseries["kv_blocks_used"].max() == 64 + 4
    assert stats.timeseries["running"].max() == 4
    assert req.first_token_s < req.finished_s and len(req.token_times_s) == 16


def test_throughput_counts_every_sample_and_ttft_is_the_first_token():
    one = simulate([sampled(0, 0.0, 512, 32, 1)], [ReplicaConfig(cost=LinearCostModel())])
    four = simulate([sampled(0, 0.0, 512, 32, 4)], [ReplicaConfig(cost=LinearCostModel())])
    r1, r4 = summarize(one.requests), summarize(four.requests)
    assert r4.ttft_s.p50 == pytest.approx(r1.ttft_s.p50)  # the same single prefill
    assert r4.throughput.output_tokens_per_s * r4.duration_s == pytest.approx(4 * 32)
    assert r4.e2e_s.p50 >= r1.e2e_s.p50


def test_samples_over_max_batch_are_rejected_with_a_reason():
    result = simulate([sampled(0, 0.0, 10, 10, 8)], [ReplicaConfig(cost=LinearCostModel(), max_batch=4)])
    assert result.requests[0].state is RequestState.REJECTED and "max_batch" in result.requests[0].reject_reason


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    samples=st.integers(1, 6),
    capacity=st.sampled_from([1024, 2048, 8192]),
    preemption=st.sampled_from(["recompute", "swap"]),
    scheduler=st.sampled_from(["continuous", "chunked-prefill", "decode-priority", "static"]),
)
def test_conservation_and_determinism_under_kv_pressure(seed, samples, capacity, preemption, scheduler):
    rng = np.random.default_rng(seed)
    reqs = [sampled(i, float(rng.uniform(0, 1)), int(rng.integers(1, 600)), int(rng.integers(1, 120)), samples)
            for i in range(30)]  # fmt: skip

    def once():
        cost = LinearCostModel(kv_capacity_tokens=capacity, block_size=16)
        config = ReplicaConfig(
            cost=cost, scheduler=scheduler, max_batch=12, max_batch_tokens=512, preemption=preemption
        )
        return simulate(reqs, [config], seed=seed)

    a, b = once(), once()
    for r in a.requests:
        assert r.state in (RequestState.FINISHED, RequestState.REJECTED)
        assert r.state is RequestState.FINISHED or r.reject_reason
        if r.state is RequestState.FINISHED:
            assert r.first_token_s <= r.finished_s and r.generated_tokens == r.output_tokens
    assert a.replicas[0].timeseries["running"].max() <= 12
    assert [r.finished_s for r in a.requests] == [r.finished_s for r in b.requests]
    done = [r for r in a.requests if r.state is RequestState.FINISHED]
    decoded = sum(samples * (r.output_tokens - 1) for r in done)
    # each decode emits one token after a sample's first; a recomputed sample emits its next one from a prefill
    assert a.replicas[0].decode_tokens <= decoded
    assert a.replicas[0].preemptions or a.replicas[0].decode_tokens >= decoded - samples * len(done)


def test_api_samples_are_deterministic_and_raise_throughput():
    kw = dict(model="llama-3.1-8b", gpu="h100-sxm", plan=ServingPlan(), seed=5,
              workload=Workload(arrival="poisson", rate=2, num_requests=60, input_len="800", output_len="100"),
    )  # fmt: skip
    base = simulate_serving(**kw)
    a, b = simulate_serving(**kw, samples=8), simulate_serving(**kw, samples=8)
    assert a.report == b.report and a.extras == {"samples": 8}
    assert a.report.completed == 60
    assert a.report.throughput.output_tokens_per_s > 4 * base.report.throughput.output_tokens_per_s


BASE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "4", "--num-requests", "20",
        "--input-len", "200", "--output-len", "20"]  # fmt: skip


def test_cli_samples_json(capsys):
    assert run(BASE + ["--samples", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["completed"] == 20 and data["samples"] == 4


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--samples", "0"], "--samples"),
        (["--samples", "2", "--prefix-caching"], "--samples"),
        (["--samples", "2", "--disaggregate", "1:1"], "--disaggregate"),
    ],
)
def test_bad_samples_flags_exit_2_naming_the_flag(capsys, extra, flag):
    assert run(BASE + extra) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
