"""Serving engine: hand-checkable scenarios with LinearCostModel, and conservation properties of random runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.errors import FathomInputError
from fathom.serving.cost import LinearCostModel
from fathom.serving.events import ARRIVAL, ITERATION_DONE, STEP, EventHeap
from fathom.serving.kv_manager import KVCacheManager
from fathom.serving.replica_config import CAPACITY_POLICIES
from fathom.serving.request import Request, RequestState
from fathom.serving.router import get_router, list_routers
from fathom.serving.schedulers import get_scheduler, list_schedulers
from fathom.serving.simulator import ClosedLoop, Disaggregation, ReplicaConfig, _Simulation, simulate

SCHEDULERS = ("static", "continuous", "chunked-prefill", "decode-priority", "prompt-first", "prompt-first-padded")


class Recording(LinearCostModel):
    """LinearCostModel that remembers every batch it timed."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.batches: list[tuple[list[float], list[float], list[float]]] = []

    def step_time_s(self, prefill_tokens, prefill_context, decode_context) -> float:
        self.batches.append((list(prefill_tokens), list(prefill_context), list(decode_context)))
        return super().step_time_s(prefill_tokens, prefill_context, decode_context)


def flat(**kw) -> LinearCostModel:
    """Every iteration costs 10 ms plus 10 us per prefill token; decodes are free beyond the base."""
    kw = {"base_s": 0.01, "per_prefill_token_s": 1e-5, "per_decode_s": 0.0, **kw}
    return Recording(**kw)


def req(i, at, n_in, n_out, **kw) -> Request:
    return Request(id=i, arrival_s=at, input_tokens=n_in, output_tokens=n_out, **kw)


# -- single replica, hand-checked ------------------------------------------------------------------------------
def test_one_request_ttft_is_one_prefill_iteration_and_tpot_one_decode_step():
    res = simulate([req(0, 0.0, 1000, 5)], [ReplicaConfig(flat())])
    r = res.requests[0]
    assert r.state is RequestState.FINISHED
    assert r.first_token_s == pytest.approx(0.01 + 1000 * 1e-5)  # one prefill iteration
    assert np.diff(r.token_times_s) == pytest.approx([0.01] * 4)  # then one decode step per token
    assert r.finished_s == r.token_times_s[-1] == pytest.approx(0.02 + 4 * 0.01)
    assert r.generated_tokens == 5 and r.prefilled_tokens == 1000 and r.first_scheduled_s == 0.0
    stats = res.replicas[0]
    assert stats.iterations == 5 and stats.prefill_tokens == 1000 and stats.decode_tokens == 4
    assert stats.busy_s == pytest.approx(res.total_time_s)


def test_decode_context_grows_by_one_token_per_iteration():
    cost = flat()
    simulate([req(0, 0.0, 10, 4)], [ReplicaConfig(cost)])
    assert cost.batches[0] == ([10.0], [0.0], [])
    assert [b[2] for b in cost.batches[1:]] == [[11.0], [12.0], [13.0]]  # prompt + tokens generated so far


def test_static_batching_holds_a_late_request_until_the_batch_drains():
    reqs = [req(0, 0.0, 10, 10), req(1, 0.005, 10, 2)]
    cost = {"per_prefill_token_s": 0.0}
    static = simulate(reqs, [ReplicaConfig(flat(**cost), scheduler="static")]).requests[1]
    cont = simulate(reqs, [ReplicaConfig(flat(**cost), scheduler="continuous")]).requests[1]
    # request 0 runs 10 iterations (0 .. 0.10); static admits request 1 only then, continuous at the next iteration
    assert static.first_token_s == pytest.approx(0.11) and static.finished_s == pytest.approx(0.12)
    assert cont.first_token_s == pytest.approx(0.02) and cont.finished_s == pytest.approx(0.03)


def test_continuous_prefill_joins_the_decodes_in_one_iteration():
    cost = flat()
    simulate([req(0, 0.0, 100, 4), req(1, 0.005, 300, 2)], [ReplicaConfig(cost, scheduler="continuous")])
    assert cost.batches[1] == ([300.0], [0.0], [101.0])  # request 1's whole prompt rides with request 0's decode


def test_chunked_prefill_splits_a_long_prompt_into_budget_sized_chunks():
    cost = flat()
    res = simulate([req(0, 0.0, 1000, 3)], [ReplicaConfig(cost, scheduler="chunked-prefill", max_batch_tokens=256)])
    assert [b[0] for b in cost.batches[:4]] == [[256.0], [256.0], [256.0], [232.0]]  # ceil(1000 / 256) = 4
    assert [b[1] for b in cost.batches[:4]] == [[0.0], [256.0], [512.0], [768.0]]
    assert res.requests[0].first_token_s == pytest.approx(4 * 0.01 + 1000 * 1e-5)


def test_chunked_prefill_puts_decodes_first_and_fills_the_budget_with_prefill():
    cost = flat()
    cfg = ReplicaConfig(cost, scheduler="chunked-prefill", max_batch=4, max_batch_tokens=64)
    simulate([req(0, 0.0, 10, 20), req(1, 0.005, 200, 2)], [cfg])
    mixed = cost.batches[1]
    assert mixed[2] == [11.0] and mixed[0] == [63.0]  # one decode token + 63 prompt tokens = the budget of 64
    assert all(sum(p) + len(d) <= 64 for p, _, d in cost.batches)


def test_decode_priority_never_lets_a_prompt_push_decodes_past_the_budget():
    cost = flat()
    cfg = ReplicaConfig(cost, scheduler="decode-priority", max_batch=8, max_batch_tokens=100)
    reqs = [req(0, 0.0, 10, 10), req(1, 0.005, 500, 2), req(2, 0.006, 50, 2)]
    res = simulate(reqs, [cfg]).requests
    # 500 > 100 - 1: request 1 waits (head of line) until request 0 has drained, then runs alone over the budget
    assert res[1].first_scheduled_s == pytest.approx(res[0].finished_s)
    assert ([500.0], [0.0], []) in cost.batches
    assert all(sum(p) + len(d) <= 100 for p, _, d in cost.batches if d)
    assert res[2].first_scheduled_s >= res[1].first_scheduled_s  # first-come first-served


def test_decode_priority_lets_a_small_prompt_ride_with_decodes():
    cost = flat()
    cfg = ReplicaConfig(cost, scheduler="decode-priority", max_batch=8, max_batch_tokens=100)
    simulate([req(0, 0.0, 10, 10), req(1, 0.005, 50, 2)], [cfg])
    assert cost.batches[1] == ([50.0], [0.0], [11.0])


def test_prefix_cache_saves_the_shared_prefix_for_the_second_request():
    reqs = [req(0, 0.0, 600, 2, prefix_id="sys", prefix_len=512), req(1, 1.0, 600, 2, prefix_id="sys", prefix_len=512)]
    on = simulate(reqs, [ReplicaConfig(flat(), prefix_caching=True)])
    off = simulate(reqs, [ReplicaConfig(flat(), prefix_caching=False)])
    assert on.replicas[0].prefix_hit_tokens == 512 and on.replicas[0].prefill_tokens == 600 + 88
    assert off.replicas[0].prefix_hit_tokens == 0 and off.replicas[0].prefill_tokens == 1200
    ttft = [r.first_token_s - r.arrival_s for r in on.requests]
    assert ttft[0] == pytest.approx(0.01 + 600e-5) and ttft[1] == pytest.approx(0.01 + 88e-5)


def test_prefix_cache_reuses_only_full_blocks_and_always_computes_one_token():
    reqs = [req(0, 0.0, 40, 2, prefix_id="p", prefix_len=40), req(1, 1.0, 40, 2, prefix_id="p", prefix_len=40)]
    res = simulate(reqs, [ReplicaConfig(flat(block_size=16), prefix_caching=True)])
    assert res.replicas[0].prefix_hit_tokens == 32  # two full blocks of 16; the partial third is recomputed


def test_recompute_preemption_when_kv_is_tiny_and_everything_still_finishes():
    cost = flat(kv_capacity_tokens=64, block_size=16)  # 4 blocks; each request needs 3 at its end
    reqs = [req(i, 0.0, 16, 30) for i in range(3)]
    res = simulate(reqs, [ReplicaConfig(cost, scheduler="continuous", preemption="recompute")])
    assert res.replicas[0].preemptions > 0
    assert all(r.state is RequestState.FINISHED and r.generated_tokens == 30 for r in res.requests)
    assert res.replicas[0].prefill_tokens > 3 * 16  # prompts (and generated tokens) of victims were recomputed
    victim = max(res.requests, key=lambda r: r.preemptions)
    assert victim.id != 0  # the most recently admitted request goes first; the oldest is never the victim
    assert len(victim.token_times_s) == 30 and victim.token_times_s == sorted(victim.token_times_s)


def test_guaranteed_no_evict_admits_only_what_its_whole_output_fits_and_never_preempts():
    cost = flat(kv_capacity_tokens=64, block_size=16)  # 4 blocks; each request reserves 3 (16 + 30 tokens)
    reqs = [req(i, 0.0, 16, 30) for i in range(3)]
    res = simulate(reqs, [ReplicaConfig(cost, scheduler="continuous", capacity_policy="guaranteed-no-evict")])
    assert res.replicas[0].preemptions == 0
    assert all(r.state is RequestState.FINISHED and r.generated_tokens == 30 for r in res.requests)
    first, second = sorted(res.requests, key=lambda r: r.first_scheduled_s)[:2]
    assert second.first_scheduled_s >= first.finished_s  # one reservation at a time: the second waits for the first
    with pytest.raises(FathomInputError, match="capacity_policy"):
        ReplicaConfig(cost, capacity_policy="guaranteed")


def test_swap_preemption_adds_host_link_time_to_the_iterations():
    cost = flat(kv_capacity_tokens=64, block_size=16, kv_bytes_per_token=1e6, host_link_bytes_per_s=1e9)
    res = simulate([req(i, 0.0, 16, 30) for i in range(3)], [ReplicaConfig(cost, preemption="swap")])
    st = res.replicas[0]
    assert st.preemptions > 0 and st.swap_out_bytes > 0 and st.swap_in_bytes == st.swap_out_bytes
    compute = sum(LinearCostModel.step_time_s(cost, *b) for b in cost.batches)
    assert st.busy_s == pytest.approx(compute + (st.swap_out_bytes + st.swap_in_bytes) / 1e9)
    assert st.prefill_tokens == 3 * 16  # nothing recomputed
    assert all(r.state is RequestState.FINISHED and r.generated_tokens == 30 for r in res.requests)


def test_requests_that_can_never_fit_are_rejected_with_a_reason():
    cost = flat(max_context=100, kv_capacity_tokens=64, block_size=16)
    reqs = [req(0, 0.0, 90, 20), req(1, 0.0, 50, 30), req(2, 0.0, 20, 10), req(3, 0.0, 0, 5)]
    res = simulate(reqs, [ReplicaConfig(cost)])
    states = [r.state for r in res.requests]
    assert states == [RequestState.REJECTED, RequestState.REJECTED, RequestState.FINISHED, RequestState.REJECTED]
    assert "max_context" in res.requests[0].reject_reason and "KV blocks" in res.requests[1].reject_reason
    assert res.requests[0].replica is None


def test_input_requests_are_not_modified_and_reruns_are_identical():
    reqs = [req(i, 0.01 * i, 50 + i, 5) for i in range(20)]
    a = simulate(reqs, [ReplicaConfig(flat())], seed=3)
    b = simulate(reqs, [ReplicaConfig(flat())], seed=3)
    assert all(r.state is RequestState.WAITING and not r.token_times_s for r in reqs)
    assert a.requests == b.requests and a.total_time_s == b.total_time_s


def test_timeseries_counts_running_waiting_and_blocks():
    res = simulate([req(i, 0.0, 32, 3) for i in range(3)], [ReplicaConfig(flat(block_size=16), max_batch=2)])
    ts = res.replicas[0].timeseries
    assert list(ts["running"][:2]) == [2, 2] and list(ts["waiting"][:2]) == [1, 1]
    assert ts["kv_blocks_used"][0] == 2 * 3  # 33 tokens (prompt + the first token's slot) = 3 blocks each
    assert np.all(np.diff(ts["time_s"]) > 0)


def test_max_sim_time_stops_early_with_consistent_partial_requests():
    res = simulate([req(0, 0.0, 10, 100)], [ReplicaConfig(flat(per_prefill_token_s=0.0))], max_sim_time_s=0.105)
    r = res.requests[0]
    assert res.truncated and res.total_time_s == 0.105 and r.state is RequestState.RUNNING
    assert r.generated_tokens == len(r.token_times_s) == 10 and r.token_times_s[-1] == pytest.approx(0.10)


# -- configuration errors ----------------------------------------------------------------------------------------
def test_unknown_names_are_one_line_errors_with_suggestions():
    with pytest.raises(FathomInputError, match="did you mean 'chunked-prefill'"):
        get_scheduler("chunked")
    with pytest.raises(FathomInputError, match="least-loaded"):
        get_router("least")
    with pytest.raises(FathomInputError, match="preemption"):
        ReplicaConfig(flat(), preemption="drop")
    with pytest.raises(FathomInputError, match="max_batch_tokens"):
        ReplicaConfig(flat(), scheduler="chunked-prefill", max_batch=512, max_batch_tokens=256)
    assert list_schedulers() == sorted(SCHEDULERS)
    assert list_routers() == ["least-loaded", "prefix-affinity", "round-robin"]


def test_event_heap_orders_by_time_then_priority_then_push_order():
    heap = EventHeap()
    heap.push(1.0, STEP, "step")
    heap.push(1.0, ARRIVAL, "a1")
    heap.push(0.5, STEP, "early")
    heap.push(1.0, ITERATION_DONE, "done")
    heap.push(1.0, ARRIVAL, "a2")
    assert [heap.pop()[4] for _ in range(len(heap))] == ["early", "done", "a1", "a2", "step"]
    with pytest.raises(ValueError):
        heap.push(math.nan, ARRIVAL)


def test_kv_manager_evicts_least_recently_released_prefix_blocks():
    kv = KVCacheManager(LinearCostModel(kv_capacity_tokens=64, block_size=16))  # 4 blocks
    kv.admit(1, "a", 0, 33)  # 3 blocks
    kv.commit_prefix(1, "a", 2)  # its first two blocks become cached prefix blocks
    kv.free(1, 33)
    assert kv.used_blocks == 0 and kv.cached_blocks == 2 and kv.available == 4
    assert kv.cached_prefix_blocks("a", 5) == 2
    kv.admit(2, None, 0, 48)  # 3 blocks: one free block is not enough, so one cached block goes (the tail one)
    assert kv.evictions == 2 - 1 and kv.cached_prefix_blocks("a", 5) == 1
    assert kv.swap_out(2, 48, 48) == pytest.approx(48 * 131072.0 / 25e9) and kv.used_blocks == 0


# -- routers -------------------------------------------------------------------------------------------------
def test_round_robin_alternates_and_least_loaded_balances_tokens():
    reqs = [req(0, 0.0, 5000, 10), req(1, 0.0, 10, 10), req(2, 0.0, 10, 10), req(3, 0.0, 10, 10)]
    rr = simulate(reqs, [ReplicaConfig(flat())] * 2, router="round-robin")
    assert [r.replica for r in rr.requests] == [0, 1, 0, 1]
    ll = simulate(reqs, [ReplicaConfig(flat())] * 2, router="least-loaded")
    assert [r.replica for r in ll.requests] == [0, 1, 1, 1]  # replica 0 holds 5010 outstanding tokens


def test_prefix_affinity_sends_a_prefix_back_to_its_replica():
    reqs = [req(i, 0.001 * i, 100, 2, prefix_id=f"p{i % 2}", prefix_len=64) for i in range(8)]
    res = simulate(reqs, [ReplicaConfig(flat(), prefix_caching=True)] * 3, router="prefix-affinity")
    homes = {r.prefix_id: set() for r in res.requests}
    for r in res.requests:
        homes[r.prefix_id].add(r.replica)
    assert all(len(h) == 1 for h in homes.values()) and homes["p0"] != homes["p1"]
    assert sum(s.prefix_hit_tokens for s in res.replicas) == 6 * 64


# -- disaggregation and closed loop --------------------------------------------------------------------------
def test_disaggregation_kv_transfer_sits_between_the_first_and_second_token():
    p, d = flat(kv_bytes_per_token=1000.0), flat(kv_bytes_per_token=1000.0)
    dis = Disaggregation(prefill=[ReplicaConfig(p)], decode=[ReplicaConfig(d)], kv_link_bytes_per_s=1e8)
    res = simulate([req(0, 0.0, 1000, 3)], [], disaggregation=dis)
    r = res.requests[0]
    transfer = 1000 * 1000.0 / 1e8  # 10 ms
    assert r.first_token_s == pytest.approx(0.01 + 1000e-5)  # prefilled (and first token) on the prefill replica
    assert r.token_times_s[1] - r.token_times_s[0] == pytest.approx(transfer + 0.01)  # transfer + one decode step
    assert r.replica == 1 and res.replicas[0].role == "prefill" and res.replicas[1].role == "decode"
    (t,) = res.transfers
    assert (t.prefill_replica, t.decode_replica, t.bytes) == (0, 1, 1e6)
    assert t.end_s - t.start_s == pytest.approx(transfer)
    assert res.replicas[1].prefill_tokens == 0 and res.replicas[0].decode_tokens == 0


def test_disaggregated_transfers_share_the_prefill_replicas_link():
    dis = Disaggregation(
        prefill=[ReplicaConfig(flat(kv_bytes_per_token=1000.0))],
        decode=[ReplicaConfig(flat()), ReplicaConfig(flat())],
        kv_link_bytes_per_s=1e8,
    )
    res = simulate([req(0, 0.0, 1000, 3), req(1, 0.0, 1000, 3)], [], disaggregation=dis)
    a, b = res.transfers
    assert a.start_s == pytest.approx(0.03) and b.start_s == pytest.approx(a.end_s)  # FIFO on one link
    assert {a.decode_replica, b.decode_replica} == {1, 2}  # round-robin over the decode pool


def test_closed_loop_keeps_concurrency_requests_in_flight():
    def make(i, at, rng):
        return Request(i, at, int(rng.integers(10, 100)), int(rng.integers(1, 20)))

    loop = ClosedLoop(concurrency=3, num_requests=12, make_request=make)
    res = simulate(loop, [ReplicaConfig(flat())], seed=7)
    assert [r.id for r in res.requests] == list(range(12))
    assert all(r.state is RequestState.FINISHED for r in res.requests)
    events = sorted([(r.arrival_s, 1) for r in res.requests] + [(r.finished_s, -1) for r in res.requests])
    assert max(np.cumsum([e[1] for e in events])) == 3
    finishes = {r.finished_s for r in res.requests}
    assert all(r.arrival_s in finishes for r in res.requests[3:])  # each new request replaces a finished one
    again = simulate(loop, [ReplicaConfig(flat())], seed=7)
    assert again.requests == res.requests


# -- conservation ----------------------------------------------------------------------------------------------
@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 25))
    rate = draw(st.floats(1.0, 500.0))
    gaps = draw(st.lists(st.floats(0.0, 3.0 / rate), min_size=n, max_size=n))
    reqs = []
    for i, at in enumerate(np.cumsum(gaps)):
        n_in = draw(st.integers(1, 120))
        prefix = draw(st.sampled_from([None, "a", "b"]))
        plen = draw(st.integers(0, n_in)) if prefix else 0
        reqs.append(Request(i, float(at), n_in, draw(st.integers(1, 40)), prefix, plen))
    block = draw(st.sampled_from([1, 4, 16]))
    cost = LinearCostModel(
        base_s=0.005, per_prefill_token_s=1e-5, per_decode_s=1e-4,
        per_context_token_s=draw(st.sampled_from([0.0, 1e-6])),
        kv_capacity_tokens=draw(st.integers(block, 400)), block_size=block, max_context=150,
        kv_bytes_per_token=1e4, host_link_bytes_per_s=1e9,
    )  # fmt: skip
    max_batch = draw(st.integers(1, 6))

    def config():
        return ReplicaConfig(
            cost, scheduler=draw(st.sampled_from(SCHEDULERS)), max_batch=max_batch,
            max_batch_tokens=draw(st.integers(max_batch, 64)), preemption=draw(st.sampled_from(["recompute", "swap"])),
            prefix_caching=draw(st.booleans()), capacity_policy=draw(st.sampled_from(CAPACITY_POLICIES)),
        )  # fmt: skip

    if draw(st.booleans()):
        dis = Disaggregation([config() for _ in range(draw(st.integers(1, 2)))], [config()], kv_link_bytes_per_s=1e9)
        return reqs, [], dis, draw(st.sampled_from(list_routers()))
    return reqs, [config() for _ in range(draw(st.integers(1, 3)))], None, draw(st.sampled_from(list_routers()))


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.integers(0, 3))
def test_every_request_finishes_or_is_rejected_and_nothing_leaks(scenario, seed):
    reqs, replicas, dis, router = scenario
    sim = _Simulation(reqs, replicas, router, seed, dis, None, True)
    res = sim.run()
    assert len(res.requests) == len(reqs)
    for r in res.requests:
        assert r.state in (RequestState.FINISHED, RequestState.REJECTED)
        if r.state is RequestState.REJECTED:
            assert r.reject_reason and not r.token_times_s
            continue
        assert r.generated_tokens == r.output_tokens == len(r.token_times_s)
        assert r.token_times_s == sorted(r.token_times_s)
        assert r.arrival_s <= r.first_scheduled_s < r.first_token_s == r.token_times_s[0]
        assert r.finished_s == r.token_times_s[-1] and r.prefilled_tokens == r.input_tokens
    for rep in sim.all:  # every block and every outstanding token is accounted for once the run is over
        assert rep.kv.used_blocks == 0 and rep.outstanding == 0 and not rep.running and not rep._pinned
        assert rep.kv.available == rep.kv.capacity_blocks
        assert rep._kv_reserved == 0 and not rep._kv_reservations
        if rep.config.capacity_policy == "guaranteed-no-evict" and rep.role != "prefill":
            assert rep.preemptions == 0  # whole outputs were reserved at admission: nothing is ever evicted
    again = simulate(reqs, replicas, router=router, seed=seed, disaggregation=dis)
    assert again.requests == res.requests and again.total_time_s == res.total_time_s
