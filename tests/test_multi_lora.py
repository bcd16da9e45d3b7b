"""Multi-LoRA serving (S-LoRA / Punica): the adapter pool, the batched adapter kernels, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.api.serving import Workload, simulate_serving
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.inference.lora_cost import LoRAStepModel
from fathom.inference.step_model import InferenceStepModel
from fathom.serving.cost import LinearCostModel
from fathom.serving.lora_pool import LoRAPool, adapter_probabilities
from fathom.serving.request import Request, RequestState
from fathom.serving.simulator import ReplicaConfig, simulate
from fathom.specs.serving import LoRAServingSpec, ServingPlan

H100 = resolve_cluster("h100-sxm", 1)
L8 = get_model("llama-3.1-8b")


class LoRALinearCost(LinearCostModel):
    """A hand-checkable cost with an adapter pool; records the distinct adapters each step was priced with."""

    def __init__(self, lora: LoRAServingSpec, load_s: float = 0.01, **kw) -> None:
        super().__init__(**kw)
        self.lora, self.load_s, self.seen = lora, load_s, []

    def adapter_load_s(self, from_disk: bool) -> float:
        return self.load_s * (2 if from_disk else 1)

    def step_time_s(self, prefill_tokens, prefill_context, decode_context, distinct_adapters=1) -> float:
        self.seen.append(distinct_adapters)
        return super().step_time_s(prefill_tokens, prefill_context, decode_context) + 1e-3 * distinct_adapters


def workload(n: int, adapters: int, seed: int, max_out: int = 40) -> list[Request]:
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        r = Request(i, float(rng.uniform(0, 2)), int(rng.integers(1, 300)), int(rng.integers(1, max_out)))
        r.adapter = int(rng.integers(0, adapters))
        reqs.append(r)
    return reqs


def in_batch_at(result, t: float) -> set[int]:
    return {
        r.adapter
        for r in result.requests
        if r.first_scheduled_s is not None and r.first_scheduled_s <= t < r.finished_s
    }


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 4), adapters=st.integers(1, 12), seed=st.integers(0, 10_000),
       scheduler=st.sampled_from(["continuous", "chunked-prefill", "static"]))  # fmt: skip
def test_a_batch_never_mixes_more_than_k_adapters(k, adapters, seed, scheduler):
    spec = LoRAServingSpec(num_adapters=adapters, max_loras_per_batch=k)
    cost = LoRALinearCost(spec, kv_capacity_tokens=1_000_000)  # no preemption: admission to finish is in the batch
    result = simulate(workload(40, adapters, seed), [ReplicaConfig(cost=cost, scheduler=scheduler, max_batch=16,
                                                                   max_batch_tokens=512)])  # fmt: skip
    assert all(r.state is RequestState.FINISHED for r in result.requests)
    assert max(cost.seen) <= k
    for r in result.requests:
        assert len(in_batch_at(result, r.first_scheduled_s)) <= k


@settings(max_examples=40, deadline=None)
@given(adapters=st.integers(1, 30), k=st.integers(1, 6), seed=st.integers(0, 10_000),
       preemption=st.sampled_from(["recompute", "swap"]), cpu=st.integers(1, 10))  # fmt: skip
def test_conservation_and_determinism_with_adapter_swapping(adapters, k, seed, preemption, cpu):
    spec = LoRAServingSpec(num_adapters=adapters, max_loras_per_batch=k, max_cpu_loras=cpu)
    reqs = workload(60, adapters, seed, max_out=200)
    reqs.append(Request(60, 0.5, 5000, 10))  # larger than the whole cache: rejected with a reason

    def once():
        cost = LoRALinearCost(spec, kv_capacity_tokens=2048, block_size=16)  # KV pressure: preemptions happen
        return simulate(reqs, [ReplicaConfig(cost=cost, max_batch=32, preemption=preemption)], seed=seed)

    a, b = once(), once()
    states = [r.state for r in a.requests]
    assert all(s in (RequestState.FINISHED, RequestState.REJECTED) for s in states)
    assert all(r.reject_reason for r in a.requests if r.state is RequestState.REJECTED)
    assert states.count(RequestState.REJECTED) == 1
    assert [r.finished_s for r in a.requests] == [r.finished_s for r in b.requests]
    assert a.replicas[0].lora == b.replicas[0].lora and a.replicas[0].lora["adapter_loads"] >= min(adapters, 1)


def test_loads_are_charged_to_the_iteration_that_admits():
    spec = LoRAServingSpec(num_adapters=2, max_loras_per_batch=1)
    reqs = [Request(i, 0.0, 100, 5, adapter=i % 2) for i in range(6)]
    slow = simulate(reqs, [ReplicaConfig(cost=LoRALinearCost(spec, load_s=0.5))])
    same = simulate(
        [Request(i, 0.0, 100, 5, adapter=0) for i in range(6)], [ReplicaConfig(cost=LoRALinearCost(spec, load_s=0.5))]
    )
    assert slow.replicas[0].lora["adapter_loads"] > same.replicas[0].lora["adapter_loads"] == 1
    assert slow.total_time_s > same.total_time_s + 0.5


def test_pool_evicts_least_recently_used_idle_adapter():
    pool = LoRAPool(LoRAServingSpec(num_adapters=10, max_loras_per_batch=2, max_cpu_loras=10), lambda disk: 1.0)
    assert pool.acquire(1) == 1.0 and pool.acquire(1) == 0.0 and pool.acquire(2) == 1.0
    assert not pool.can_take(3)
    pool.release(1)
    pool.release(1)
    assert pool.can_take(3) and pool.acquire(3) == 1.0  # evicts 1
    pool.release(2)
    assert pool.acquire(2) == 0.0  # still on the device, idle
    assert pool.active == 2 and pool.disk_loads == 3


@settings(max_examples=60, deadline=None)
@given(n=st.tuples(st.integers(1, 64), st.integers(1, 64)), decodes=st.integers(0, 64), prefill=st.integers(0, 4096),
       rank=st.sampled_from([8, 16, 64]), targets=st.sampled_from(["attention", "all-linear"]))  # fmt: skip
def test_more_distinct_adapters_never_lower_step_time(n, decodes, prefill, rank, targets):
    cost = lora_cost(LoRAServingSpec(num_adapters=64, rank=rank, targets=targets))
    pt, pc = ([float(prefill)], [0.0]) if prefill else ([], [])
    dc = np.full(decodes, 700.0)
    lo, hi = sorted(n)
    assert cost.step_time_s(pt, pc, dc, hi) >= cost.step_time_s(pt, pc, dc, lo)
    assert cost.step_time_s(pt, pc, dc, lo) >= cost.base.step_time_s(pt, pc, dc)


def lora_cost(spec: LoRAServingSpec) -> LoRAStepModel:
    return LoRAStepModel(InferenceStepModel(L8, H100, ServingPlan()), H100, spec)


def test_adapter_size_and_pool_memory():
    spec = LoRAServingSpec(num_adapters=100, rank=16, max_loras_per_batch=8)
    cost = lora_cost(spec)
    # q, k, v, o of Llama-3.1-8B: r x (in + out) per matrix, 32 layers, 2 bytes
    per_layer = 16 * ((4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096))
    assert cost.adapter_bytes == pytest.approx(32 * per_layer * 2)
    lost = (cost.base.kv_capacity_tokens - cost.kv_capacity_tokens) * cost.kv_bytes_per_token
    assert lost == pytest.approx(8 * cost.adapter_bytes, rel=0.01)
    decode = np.full(64, 1000.0)
    assert (
        cost.step_time_s([], [], decode, 8)
        > cost.step_time_s([], [], decode, 1)
        > cost.base.step_time_s([], [], decode)
    )


def test_zipf_is_skewed_and_normalised():
    p = adapter_probabilities(LoRAServingSpec(num_adapters=1000, distribution="zipf:a=1.2"))
    assert p.sum() == pytest.approx(1.0) and np.all(np.diff(p) < 0) and p[0] > 50 * p[-1]


def test_api_is_deterministic_and_reports_the_pool():
    kw = dict(model="llama-3.1-8b", gpu="h100-sxm", plan=ServingPlan(), seed=3,
              workload=Workload(arrival="poisson", rate=6, num_requests=120, input_len="300", output_len="40"),
              lora=LoRAServingSpec(num_adapters=1000, rank=16, distribution="zipf:a=1.2", max_loras_per_batch=4),
    )  # fmt: skip
    a, b = simulate_serving(**kw), simulate_serving(**kw)
    assert a.report == b.report and a.extras == b.extras
    assert a.report.completed == 120 and a.extras["lora"]["adapter_loads"] > 4
    plain = simulate_serving(**{**kw, "lora": None})
    assert a.report.tpot_s.p50 > plain.report.tpot_s.p50


BASE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "4", "--num-requests", "30",
        "--input-len", "200", "--output-len", "20"]  # fmt: skip


def test_cli_lora_json(capsys):
    assert run(BASE + ["--lora-adapters", "1000", "--adapter-rank", "16", "--adapter-dist", "zipf:a=1.2",
                       "--max-loras-per-batch", "8", "--max-cpu-loras", "100", "--json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["completed"] == 30 and data["lora"]["num_adapters"] == 1000 and data["lora"]["adapter_mib"] > 0


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--adapter-rank", "16"], "--adapter-rank"),
        (["--lora-adapters", "10", "--adapter-dist", "pareto"], "--adapter-dist"),
        (["--lora-adapters", "10", "--adapter-dist", "zipf:a=-1"], "--adapter-dist"),
        (["--lora-adapters", "10", "--max-loras-per-batch", "0"], "--max-loras-per-batch"),
        (["--lora-adapters", "0"], "--lora-adapters"),
        (["--lora-adapters", "10", "--adapter-targets", "mlp"], "--adapter-targets"),
        (["--lora-adapters", "10", "--speculative", "ngram", "--spec-acceptance", "0.5"], "--speculative"),
    ],
)
def test_bad_lora_flags_exit_2_naming_the_flag(capsys, extra, flag):
    assert run(BASE + extra) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
