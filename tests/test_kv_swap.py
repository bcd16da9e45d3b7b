"""KV swap preemption: host-link time charged on the step that swaps, host memory bounding what is swapped out,
conservation and determinism under memory pressure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.inference.step_model import InferenceStepModel
from fathom.serving.cost import LinearCostModel
from fathom.serving.request import Request, RequestState
from fathom.serving.simulator import ReplicaConfig, _Simulation, simulate
from fathom.specs.hardware import GIB
from fathom.specs.serving import ServingPlan


class SwapCost(LinearCostModel):
    """LinearCostModel with the step model's swap hooks: whole blocks over the host link, a bounded host pool."""

    def __init__(self, host_swap_tokens: int | None = None, **kw) -> None:
        kw = {"base_s": 0.01, "per_prefill_token_s": 1e-5, "per_decode_s": 0.0, **kw}
        super().__init__(**kw)
        if host_swap_tokens is not None:
            self.host_swap_tokens = host_swap_tokens
        self.swapped_blocks: list[int] = []
        self.compute_s = 0.0

    def swap_time_s(self, blocks: int) -> float:
        self.swapped_blocks.append(blocks)
        return blocks * self.block_size * self.kv_bytes_per_token / self.host_link_bytes_per_s

    def step_time_s(self, prefill_tokens, prefill_context, decode_context) -> float:
        s = super().step_time_s(prefill_tokens, prefill_context, decode_context)
        self.compute_s += s
        return s


def req(i, at, n_in, n_out) -> Request:
    return Request(id=i, arrival_s=at, input_tokens=n_in, output_tokens=n_out)


def pressure(n=3):
    return [req(i, 0.0, 16, 30) for i in range(n)]


# -- the step model's hooks ----------------------------------------------------------------------------------------
def test_step_model_swap_time_is_blocks_over_the_host_link():
    model, plan = get_model("llama-3.1-8b"), ServingPlan()
    h100 = InferenceStepModel(model, resolve_cluster("h100-sxm", 1), plan)
    a100 = InferenceStepModel(model, resolve_cluster("a100-80gb", 1), plan)
    block_bytes = plan.block_size * h100.kv_bytes_per_token
    assert h100.swap_time_s(10) == pytest.approx(10 * block_bytes / 63e9)  # PCIe Gen5 x16, per direction
    assert h100.swap_time_s(20) == pytest.approx(2 * h100.swap_time_s(10))
    assert a100.swap_time_s(10) == pytest.approx(2 * h100.swap_time_s(10))  # Gen4: half the bandwidth


def test_host_swap_space_is_the_plan_swap_space_capped_by_the_node_share():
    model, cluster = get_model("llama-3.1-8b"), resolve_cluster("h100-sxm", 1)
    default = InferenceStepModel(model, cluster, ServingPlan())
    assert default.host_swap_tokens == int(4 * GIB // default.kv_bytes_per_token)  # vLLM's --swap-space 4 GiB
    huge = InferenceStepModel(model, cluster, ServingPlan(swap_space_gib=1e6))
    share = cluster.system.host_memory_gib * GIB / cluster.system.gpus_per_node
    assert huge.host_swap_tokens == int(share // huge.kv_bytes_per_token)


# -- the simulator charges it ----------------------------------------------------------------------------------------
def test_swap_time_is_charged_on_the_swapping_steps_in_whole_blocks():
    cost = SwapCost(kv_capacity_tokens=64, block_size=16, kv_bytes_per_token=1e6, host_link_bytes_per_s=1e9)
    res = simulate(pressure(), [ReplicaConfig(cost, preemption="swap")])
    st_ = res.replicas[0]
    assert st_.preemptions > 0 and cost.swapped_blocks
    swap_s = sum(cost.swapped_blocks) * 16 * 1e6 / 1e9
    assert st_.busy_s == pytest.approx(cost.compute_s + swap_s)
    assert all(r.state is RequestState.FINISHED and r.generated_tokens == 30 for r in res.requests)


@pytest.mark.parametrize("bandwidth", [5e8, 1e9, 4e9])
def test_swap_time_scales_inversely_with_host_bandwidth(bandwidth):
    base = SwapCost(kv_capacity_tokens=64, block_size=16, kv_bytes_per_token=1e6, host_link_bytes_per_s=1e9)
    other = SwapCost(kv_capacity_tokens=64, block_size=16, kv_bytes_per_token=1e6, host_link_bytes_per_s=bandwidth)
    runs = [simulate(pressure(), [ReplicaConfig(c, preemption="swap")]) for c in (base, other)]
    assert base.swapped_blocks == other.swapped_blocks  # the same swaps; only their duration differs
    swap = [r.replicas[0].busy_s - c.compute_s for r, c in zip(runs, (base, other), strict=True)]
    assert swap[1] == pytest.approx(swap[0] * 1e9 / bandwidth)


def test_full_host_memory_falls_back_to_recompute():
    cost = SwapCost(host_swap_tokens=16, kv_capacity_tokens=64, block_size=16, kv_bytes_per_token=1e6,
                    host_link_bytes_per_s=1e9)  # fmt: skip
    sim = _Simulation([req(i, 0.0, 16, 40) for i in range(4)], [ReplicaConfig(cost, preemption="swap")], "round-robin",
                      0, None, None, True)  # fmt: skip
    res = sim.run()
    rep = sim.all[0]
    assert rep.swap_fallbacks > 0 and not cost.swapped_blocks  # every victim holds more than the host's one block
    assert res.replicas[0].prefill_tokens > 4 * 16  # the fallbacks were recomputed
    assert all(r.state is RequestState.FINISHED and r.generated_tokens == 40 for r in res.requests)
    assert rep.host_blocks == 0 and rep.kv.used_blocks == 0


def test_swap_on_the_real_step_model_under_pressure():
    small = ServingPlan(memory_utilization=0.23)  # a KV cache of about 6,700 tokens
    model = InferenceStepModel(get_model("llama-3.1-8b"), resolve_cluster("h100-sxm", 1), small)
    reqs = [req(i, 0.0, 300, 200) for i in range(30)]
    res = simulate(reqs, [ReplicaConfig(model, preemption="swap")])
    st_ = res.replicas[0]
    assert st_.preemptions > 0 and st_.swap_in_bytes == st_.swap_out_bytes > 0
    assert all(r.state is RequestState.FINISHED for r in res.requests)
    rec = simulate(reqs, [ReplicaConfig(model, preemption="recompute")])
    assert rec.replicas[0].prefill_tokens > st_.prefill_tokens == 30 * 300


# -- invariants ------------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.data())
def test_conservation_and_determinism_with_swap_under_memory_pressure(data):
    draw = data.draw
    block = draw(st.sampled_from([1, 4, 16]))
    cost = SwapCost(host_swap_tokens=draw(st.sampled_from([None, 0, 16, 64, 400])), base_s=0.005,
                    per_decode_s=1e-4, kv_capacity_tokens=draw(st.integers(block, 300)), block_size=block,
                    max_context=150, kv_bytes_per_token=1e4, host_link_bytes_per_s=1e9)  # fmt: skip
    reqs = [req(i, draw(st.floats(0, 0.2)), draw(st.integers(1, 100)), draw(st.integers(1, 45))) for i in range(10)]
    max_batch = draw(st.integers(1, 6))
    config = ReplicaConfig(
        cost, scheduler=draw(st.sampled_from(["static", "continuous", "chunked-prefill", "decode-priority"])),
        max_batch=max_batch, max_batch_tokens=draw(st.integers(max_batch, 64)), preemption="swap",
        prefix_caching=draw(st.booleans()),
    )  # fmt: skip
    seed = draw(st.integers(0, 3))
    sim = _Simulation(reqs, [config], "round-robin", seed, None, None, True)
    res = sim.run()
    for r in res.requests:
        assert r.state in (RequestState.FINISHED, RequestState.REJECTED)
        if r.state is RequestState.REJECTED:
            assert r.reject_reason and not r.token_times_s
            continue
        assert r.generated_tokens == r.output_tokens == len(r.token_times_s)
        assert np.all(np.diff(r.token_times_s) > 0)
    rep = sim.all[0]
    assert rep.kv.used_blocks == 0 and rep.outstanding == 0 and rep.host_blocks == 0 and not rep.swapped
    again = simulate(reqs, [config], seed=seed)
    assert again.requests == res.requests and again.total_time_s == res.total_time_s
