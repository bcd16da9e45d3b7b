"""Pipeline-parallel serving: micro-batches in flight through a replica's stages (fathom.serving.pipeline)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.serving.cost import LinearCostModel
from fathom.serving.pipeline import PipelineStages, merge_timeseries, pipeline_stages
from fathom.serving.request import Request, RequestState
from fathom.serving.schedulers import list_schedulers
from fathom.serving.simulator import ReplicaConfig, _Simulation, simulate


class Staged(LinearCostModel):
    """A linear cost model whose plan has ``pp`` pipeline stages; its step time is the whole pipeline's."""

    def __init__(self, pp: int, **kw) -> None:
        super().__init__(**kw)
        self.plan = SimpleNamespace(pp=pp)


def test_uniform_micro_batches_fill_the_pipeline():
    pipe = PipelineStages(2)
    assert pipe.run(0.0, 1.0) == pytest.approx(1.0)  # stage 1 for 0.5 s, then stage 2 for 0.5 s
    assert pipe.first_free_s() == pytest.approx(0.5)
    assert pipe.run(0.5, 1.0) == pytest.approx(1.5)  # enters stage 1 while the first is in stage 2
    assert pipe.busy_s == pytest.approx(1.5)


def test_a_long_micro_batch_leaves_a_bubble_behind_it():
    pipe = PipelineStages(2)
    assert pipe.run(0.0, 4.0) == pytest.approx(4.0)  # 2 s per stage
    # a 1 s micro-batch leaves stage 1 at 2.5 s but waits for stage 2 until 4 s: a 1.5 s bubble on stage 2
    assert pipe.run(2.0, 1.0) == pytest.approx(4.5)
    # formed at 2.1 s while stage 1 holds the last one until 2.5 s: it queues behind it (Sarathi-Serve's engine
    # forms a micro-batch whenever fewer than pp are in flight), stage 1 2.5-3 s, stage 2 4.5-5 s
    assert pipe.run(2.1, 1.0) == pytest.approx(5.0)


def test_pipeline_stages_reads_the_plan_through_wrappers():
    assert pipeline_stages(LinearCostModel()) == 1
    assert pipeline_stages(Staged(3)) == 3
    assert pipeline_stages(SimpleNamespace(base=Staged(2))) == 2


def test_decode_throughput_scales_with_stages_when_requests_fill_two_micro_batches():
    """Decodes costing per token: requests arriving while the first micro-batch is in flight form the second, and
    the two micro-batches, one per stage at a time, finish in half the time of one at a time through both stages."""
    kw = {"base_s": 0.0, "per_prefill_token_s": 0.0, "per_decode_s": 1e-3}
    reqs = [Request(i, 0.0 if i < 4 else 1e-4, 10, 200) for i in range(8)]
    one = simulate(reqs, [ReplicaConfig(Staged(1, **kw))]).total_time_s
    two = simulate(reqs, [ReplicaConfig(Staged(2, **kw))])
    assert two.total_time_s == pytest.approx(one / 2, rel=0.02)
    assert two.replicas[0].iterations == pytest.approx(2 * 200, abs=2)  # 200 per micro-batch


def test_requests_admitted_together_stay_in_one_micro_batch():
    """The artifact's scheduler puts every paused request into the next micro-batch it forms: requests that arrive
    together ride in one micro-batch, the other stays empty, and the pipeline gains nothing over one stage."""
    kw = {"base_s": 0.0, "per_prefill_token_s": 0.0, "per_decode_s": 1e-3}
    reqs = [Request(i, 0.0, 10, 200) for i in range(8)]
    one = simulate(reqs, [ReplicaConfig(Staged(1, **kw))]).total_time_s
    two = simulate(reqs, [ReplicaConfig(Staged(2, **kw))]).total_time_s
    assert two == pytest.approx(one, rel=0.02)


def test_an_arrival_joins_whichever_micro_batch_forms_first():
    """One waiting queue for the replica: a request arriving while one micro-batch is in flight and the other
    engine is idle starts at once in a second micro-batch, whichever engine the router handed it to."""
    cost = Staged(2, base_s=0.1, per_prefill_token_s=0.0, per_decode_s=0.0)
    res = simulate([Request(0, 0.0, 10, 50), Request(1, 0.01, 10, 50), Request(2, 0.02, 10, 50)],
                   [ReplicaConfig(cost)])  # fmt: skip
    first = [r.first_scheduled_s for r in res.requests]
    assert first[0] == 0.0 and first[1] == pytest.approx(0.01)  # the idle engine takes it at once
    # both engines busy: the third waits for the first micro-batch to come back at 0.1 s, and joins it
    assert first[2] == pytest.approx(0.1)
    assert res.requests[0].token_times_s[1] == pytest.approx(res.requests[2].token_times_s[0])


def test_virtual_engines_share_one_kv_cache():
    """The artifact's one block manager: a request needing more than half the blocks still fits."""
    cost = Staged(2, base_s=0.01, per_prefill_token_s=0.0, per_decode_s=0.0, kv_capacity_tokens=160, block_size=16,
                  max_context=200)  # fmt: skip
    res = simulate([Request(0, 0.0, 120, 20), Request(1, 0.0, 30, 5)], [ReplicaConfig(cost)])
    assert all(r.state is RequestState.FINISHED for r in res.requests)
    assert res.replicas[0].kv_capacity_blocks == 10
    assert res.replicas[0].timeseries["kv_blocks_used"].max() <= 10


def test_a_virtual_engine_waits_for_its_own_tokens_and_stats_merge_into_one_replica():
    cost = Staged(2, base_s=0.01, per_prefill_token_s=0.0, per_decode_s=0.0)
    res = simulate([Request(0, 0.0, 10, 5)], [ReplicaConfig(cost)])
    r = res.requests[0]
    assert np.diff(r.token_times_s) == pytest.approx([0.01] * 4)  # each token needs a whole trip through the stages
    assert len(res.replicas) == 1 and res.replicas[0].index == 0 and r.replica == 0
    whole = int(cost.kv_capacity_tokens) // int(cost.block_size)
    assert res.replicas[0].kv_capacity_blocks == whole  # one cache shared by the virtual engines
    assert res.replicas[0].busy_s == pytest.approx(res.total_time_s)


def test_merge_timeseries_sums_step_functions_and_keeps_the_latest_shared_sample():
    a = {"time_s": np.array([0.0, 2.0]), "running": np.array([1, 3]), "kv_blocks_used": np.array([4, 9])}
    b = {"time_s": np.array([1.0]), "running": np.array([5]), "kv_blocks_used": np.array([7])}
    out = merge_timeseries([a, b])
    assert list(out["time_s"]) == [0.0, 1.0, 2.0] and list(out["running"]) == [1, 6, 8]
    assert list(out["kv_blocks_used"]) == [4, 7, 9]  # one cache, sampled by either engine


def test_an_engine_that_preempts_its_own_request_wakes_the_others():
    """Found by the property test below: a virtual engine preempted its only request for blocks, then had nothing
    to run; the engine whose part-recomputed prompt needed those blocks was never stepped again (a stall)."""
    cost = Staged(3, base_s=0.005, per_prefill_token_s=1e-5, per_decode_s=1e-4, kv_capacity_tokens=75,
                  block_size=16, max_context=150, kv_bytes_per_token=1e4, host_link_bytes_per_s=1e9)  # fmt: skip
    config = ReplicaConfig(cost, scheduler="chunked-prefill", max_batch=2, max_batch_tokens=31, preemption="recompute")
    reqs = [Request(1, 0.023486223372273934, 34, 16), Request(6, 0.07342311346867261, 11, 30),
            Request(7, 0.08074927764245682, 2, 25)]  # fmt: skip
    res = _Simulation(reqs, [config] * 2, "least-loaded", 0, None, None, True).run()
    assert all(r.state is RequestState.FINISHED for r in res.requests)


@st.composite
def pipelined(draw):
    n = draw(st.integers(1, 20))
    gaps = draw(st.lists(st.floats(0.0, 0.02), min_size=n, max_size=n))
    reqs = [Request(i, float(t), draw(st.integers(1, 100)), draw(st.integers(1, 30))) for i, t in
            enumerate(np.cumsum(gaps))]  # fmt: skip
    block = draw(st.sampled_from([1, 4, 16]))
    cost = Staged(
        draw(st.integers(1, 4)), base_s=0.005, per_prefill_token_s=1e-5, per_decode_s=1e-4,
        kv_capacity_tokens=draw(st.integers(16 * 4, 600)), block_size=block, max_context=150,
        kv_bytes_per_token=1e4, host_link_bytes_per_s=1e9,
    )  # fmt: skip
    max_batch = draw(st.integers(1, 6))
    config = ReplicaConfig(
        cost, scheduler=draw(st.sampled_from(list_schedulers())),
        max_batch=max_batch, max_batch_tokens=draw(st.integers(max_batch, 64)),
        preemption=draw(st.sampled_from(["recompute", "swap"])),
    )  # fmt: skip
    return reqs, [config] * draw(st.integers(1, 2)), draw(st.sampled_from(["round-robin", "least-loaded"]))


@settings(max_examples=80, deadline=None)
@given(pipelined())
def test_pipelined_runs_conserve_requests_tokens_and_blocks(scenario):
    reqs, replicas, router = scenario
    sim = _Simulation(reqs, replicas, router, 0, None, None, True)
    res = sim.run()
    for r in res.requests:
        assert r.state in (RequestState.FINISHED, RequestState.REJECTED)
        if r.state is RequestState.FINISHED:
            assert r.generated_tokens == r.output_tokens == len(r.token_times_s)
            assert r.token_times_s == sorted(r.token_times_s) and r.prefilled_tokens == r.input_tokens
    for rep in sim.all:
        assert rep.kv.used_blocks == 0 and not rep.running and not rep.waiting
        if rep.pipeline is None:
            assert rep.outstanding == 0
        else:  # work moves between a replica's engines through their shared queue: only the sum is the load
            assert sum(e.outstanding for e in rep.pipeline.engines) == 0
    assert len(res.replicas) == len(replicas)
    for rep in sim.all:  # the stages are never busy for longer than the run
        if rep.pipeline is not None:
            assert rep.pipeline.busy_s <= res.total_time_s + 1e-9
    for stats, config in zip(res.replicas, replicas, strict=True):  # max_batch bounds all micro-batches together
        if stats.preemptions == 0:  # then a request runs from its admission to its finish
            spans = [(r.first_scheduled_s, r.finished_s) for r in res.requests if r.replica == stats.index and
                     r.state is RequestState.FINISHED]  # fmt: skip
            assert max_overlap(spans) <= config.max_batch


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """Most half-open intervals [start, end) holding at one instant (an end frees its slot for a start then)."""
    events = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    depth = best = 0
    for _, step in events:
        depth += step
        best = max(best, depth)
    return best


def test_virtual_engines_share_the_replicas_batch_slots():
    """One scheduler over every micro-batch in flight (Sarathi-Serve's PP engine): with max_batch 2 and two stages,
    four simultaneous requests run two at a time, not two per virtual engine."""
    reqs = [Request(i, 0.0, 10, 20) for i in range(4)]
    cost = Staged(2, base_s=0.01, per_prefill_token_s=0.0, per_decode_s=0.0)
    res = simulate(reqs, [ReplicaConfig(cost, max_batch=2)])
    assert max_overlap([(r.first_scheduled_s, r.finished_s) for r in res.requests]) == 2
    starts = sorted(r.first_scheduled_s for r in res.requests)
    assert starts[1] == 0.0 and starts[2] > 0.0  # the last two wait for slots the first two free
    wide = simulate(reqs, [ReplicaConfig(cost, max_batch=4)])
    assert max_overlap([(r.first_scheduled_s, r.finished_s) for r in wide.requests]) == 4
    assert wide.total_time_s < res.total_time_s


def test_prompt_first_pauses_the_decodes_while_a_prompt_runs():
    """vLLM v0: a waiting prompt runs alone; the running decode's next token waits for it and one decode run."""
    cost = LinearCostModel(base_s=0.01, per_prefill_token_s=1e-4, per_decode_s=0.0)
    reqs = [Request(0, 0.0, 100, 3), Request(1, 0.025, 1000, 2)]
    fused = simulate(reqs, [ReplicaConfig(cost, scheduler="continuous")]).requests[0].token_times_s
    res = simulate(reqs, [ReplicaConfig(cost, scheduler="prompt-first")])
    paused = res.requests[0].token_times_s
    assert fused == pytest.approx([0.02, 0.03, 0.14])  # its third token rides in request 1's prompt iteration
    assert paused == pytest.approx([0.02, 0.03, 0.15])  # prompt run 0.03-0.14, then a decode run
    assert res.requests[1].token_times_s == pytest.approx([0.14, 0.15])
    assert res.replicas[0].iterations == 4  # two prompt runs and two decode runs


def test_padded_prompt_first_keeps_prompts_of_unequal_length_apart():
    cost = LinearCostModel(base_s=0.01, per_prefill_token_s=1e-4, per_decode_s=0.0)
    reqs = [Request(0, 0.0, 100, 1), Request(1, 0.0, 1000, 1)]
    summed = simulate(reqs, [ReplicaConfig(cost, scheduler="prompt-first", max_batch_tokens=4096)])
    padded = simulate(reqs, [ReplicaConfig(cost, scheduler="prompt-first-padded", max_batch_tokens=4096)])
    assert summed.replicas[0].iterations == 1  # 1100 tokens in one prompt run
    assert padded.replicas[0].iterations == 2  # padding 900 tokens exceeds vLLM v0.2's max_paddings (256)
