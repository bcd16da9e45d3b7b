"""Splitwise's mixed machine pool (fathom.serving.mixed_pool): when machines are lent, where requests run, and that
the simulator conserves requests and KV with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.api.serving import Workload, simulate_serving
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.serving.cost import LinearCostModel
from fathom.serving.mixed_pool import PROMPT_QUEUE_TOKENS, MixedPool, MixedPoolPolicy
from fathom.serving.replica import Replica
from fathom.serving.request import Request, RequestState
from fathom.serving.simulator import Disaggregation, ReplicaConfig, simulate
from fathom.specs.serving import ServingPlan

COST = dict(base_s=0.01, per_prefill_token_s=1e-4, per_decode_s=1e-3, per_context_token_s=1e-6)


def _pool(n_prefill=2, n_decode=2, decode_kv=100_000, queue=PROMPT_QUEUE_TOKENS, prefill_kv=100_000):
    p_cfg = ReplicaConfig(cost=LinearCostModel(**COST, kv_capacity_tokens=prefill_kv))
    d_cfg = ReplicaConfig(cost=LinearCostModel(**COST, kv_capacity_tokens=decode_kv))
    prefill = [Replica(i, p_cfg, "prefill") for i in range(n_prefill)]
    decode = [Replica(n_prefill + i, d_cfg, "decode") for i in range(n_decode)]
    return MixedPool(prefill, decode, MixedPoolPolicy(prompt_queue_tokens=queue)), prefill, decode


def test_light_load_splits_every_request_like_plain_disaggregation():
    """Requests far apart: the least-pending prompt machine and the emptiest token machine are the first of each
    pool, as with the least-loaded router, so the timings are those of plain disaggregation."""
    reqs = [Request(i, 10.0 * i, 300 + 50 * i, 20) for i in range(6)]
    cost = LinearCostModel(**COST)

    def go(policy):
        split = Disaggregation([ReplicaConfig(cost=cost)] * 2, [ReplicaConfig(cost=cost)] * 2, 1e9, mixed_pool=policy)
        return simulate(reqs, [], router="least-loaded", disaggregation=split)

    plain, mixed = go(None), go(MixedPoolPolicy())
    assert mixed.mixed_pool == {"machine_moves": 0, "requests_whole": 0, "requests_split": 6, "mixed_at_end": 0}
    assert plain.mixed_pool is None
    for a, b in zip(plain.requests, mixed.requests, strict=True):
        assert (a.first_token_s, a.finished_s) == pytest.approx((b.first_token_s, b.finished_s))


def test_a_long_prompt_queue_lends_the_least_pending_token_machine():
    pool, prefill, decode = _pool(n_prefill=1, queue=1000)
    first = Request(0, 0.0, 800, 10)
    assert pool.admit(first) is prefill[0]  # nothing waits there yet: not too long whatever its tokens
    second = Request(1, 0.0, 300, 10)  # 800 waiting + 300 > 1000: the prompt pool is too long
    p, d = pool.place(second)
    assert p in decode and p in pool.mixed and p not in pool.token
    assert pool.moves == 1


def test_a_full_token_machine_lends_a_prompt_machine_and_it_goes_home_when_idle():
    pool, prefill, decode = _pool(n_prefill=3, n_decode=1, decode_kv=1000)
    for i in range(2):  # 401 KV tokens each on the one token machine, prompts on the first two prompt machines
        assert pool.admit(Request(i, 0.0, 300, 100)) is prefill[i]
    assert pool.decode_replica(Request(1, 0.0, 1, 1)) is decode[0]
    third = Request(2, 0.0, 300, 100)  # 802 + 401 >= 1000: full, and no mixed machine yet
    p, d = pool.place(third)
    assert p is prefill[2] and d is prefill[2]  # the prompt machine with the least KV scheduled: runs it whole
    assert pool.mixed == [d] and d not in pool.prompt
    pool.place(Request(3, 0.0, 300, 100))
    busy = pool.mixed[-1]
    pool.idle(d)  # nothing queued or running there: home again
    assert d in pool.prompt and d not in pool.mixed
    if busy is not d and busy.waiting:
        pool.idle(busy)  # still has a prompt queued: stays
        assert busy in pool.mixed


def test_nothing_left_anywhere_runs_the_request_whole_on_the_least_pending_machine():
    """Every token and mixed machine full and no prompt machine left to lend: the request runs whole on the machine
    with the fewest pending tokens of all pools (Splitwise's devolution to a non-split cluster)."""
    pool, prefill, decode = _pool(n_prefill=1, n_decode=1, decode_kv=500, prefill_kv=800)
    assert pool.admit(Request(0, 0.0, 300, 100)) is prefill[0]  # 401 KV tokens fill the token machine
    assert pool.place(Request(1, 0.0, 300, 100)) == (prefill[0], prefill[0])  # the prompt machine, lent, runs it
    assert pool.admit(Request(1, 0.0, 300, 100)) is prefill[0] and pool.mixed == [prefill[0]]
    # now the mixed machine holds 301 + 401 KV tokens of 800 and 600 pending prompt tokens: the token machine, with
    # one pending decode, takes the next request whole
    assert pool.place(Request(2, 0.0, 300, 100)) == (decode[0], decode[0])


def test_overload_lends_machines_and_runs_requests_whole():
    """Far more load than the pools take apart: machines move into the mixed pool, many requests run whole, every
    request still finishes, and every machine is home again once the cluster has drained."""
    rng = np.random.default_rng(1)
    arrivals = np.cumsum(rng.exponential(1 / 80.0, 600))
    reqs = [
        Request(i, float(t), int(rng.integers(50, 2000)), int(rng.integers(5, 200))) for i, t in enumerate(arrivals)
    ]
    cfg = ReplicaConfig(cost=LinearCostModel(**COST))
    split = Disaggregation([cfg] * 3, [cfg] * 2, 1e10, mixed_pool=MixedPoolPolicy())
    result = simulate(reqs, [], disaggregation=split)
    stats = result.mixed_pool
    assert stats["machine_moves"] > 0 and stats["requests_whole"] > 0 and stats["mixed_at_end"] == 0
    assert len(result.finished) == 600
    sent = {t.request_id: t for t in result.transfers}
    assert len(sent) == len(result.transfers) == stats["requests_split"]  # one transfer per split request
    assert all(sent[r.id].decode_replica == r.replica for r in result.requests if r.id in sent)
    lent = [t for t in result.transfers if t.prefill_replica >= 3 or t.decode_replica < 3]
    assert lent  # some KV left a token machine lent to prompts, or landed on a prompt machine lent to tokens


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(1, 600), st.integers(1, 60)), min_size=1, max_size=40),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(64, 4096),
)
def test_requests_and_kv_are_conserved(shapes, n_prefill, n_decode, queue):
    """Whatever the load and pools: every request finishes with all its tokens, one transfer per split request,
    and the pool's scheduled KV, decodes and every replica's queued prompt tokens are back to zero at the end."""
    reqs = [Request(i, t, p, o) for i, (t, p, o) in enumerate(shapes)]
    cfg = ReplicaConfig(cost=LinearCostModel(**COST, kv_capacity_tokens=4000), max_batch=4)
    split = Disaggregation([cfg] * n_prefill, [cfg] * n_decode, 1e9, mixed_pool=MixedPoolPolicy(queue))
    from fathom.serving.simulator import _Simulation

    sim = _Simulation(reqs, [], "round-robin", 0, split, None, False)
    result = sim.run()
    assert all(r.state is RequestState.FINISHED and r.generated_tokens == r.output_tokens for r in result.requests)
    assert len(result.transfers) == result.mixed_pool["requests_split"]
    assert result.mixed_pool["requests_split"] + result.mixed_pool["requests_whole"] == len(reqs)
    pool = sim.pool
    assert not any(pool._kv) and not any(pool._decoding) and not pool._placed
    assert all(rep.queued_prompt_tokens == 0 and rep.kv.available == rep.kv.capacity_blocks for rep in sim.all)


def test_api_and_cli_take_the_mixed_pool(capsys):
    plan = ServingPlan(tp=1, max_batch=32)
    w = Workload(arrival="poisson", rate=4.0, num_requests=20, input_len="300", output_len="16")
    out = simulate_serving(model="llama-2-7b", gpu="h100-sxm", plan=plan, workload=w, disaggregate=(1, 1),
                           mixed_pool=True)  # fmt: skip
    assert out.extras["mixed_pool"]["requests_split"] + out.extras["mixed_pool"]["requests_whole"] == 20
    plain = simulate_serving(model="llama-2-7b", gpu="h100-sxm", plan=plan, workload=w, disaggregate=(1, 1))
    assert "mixed_pool" not in plain.extras  # opt-in only
    with pytest.raises(FathomInputError, match="disaggregate"):
        simulate_serving(model="llama-2-7b", gpu="h100-sxm", plan=plan, workload=w, mixed_pool=True)
    with pytest.raises(FathomInputError, match="capacity-policy"):
        simulate_serving(model="llama-2-7b", gpu="h100-sxm", plan=plan, workload=w, disaggregate=(1, 1),
                         mixed_pool=True, capacity_policy="guaranteed-no-evict")  # fmt: skip
    argv = ["serve", "--model", "llama-2-7b", "--gpu", "h100-sxm", "--input-len", "300", "--output-len", "16",
            "--rate", "4", "--num-requests", "20", "--disaggregate", "1:1", "--mixed-pool", "--json"]  # fmt: skip
    assert run(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["completed"] == 20 and data["mixed_pool"] == out.extras["mixed_pool"]
    assert run(argv[:-4] + ["--mixed-pool"]) == 2  # no --disaggregate: a one-line input error
