"""Speculative decoding: Leviathan et al.'s expected tokens per step, the simulator's sampled acceptance, its cost,
memory, conservation and determinism, and the `fathom serve` flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.inference.speculative import (
    SpeculativeStepModel,
    expected_tokens_per_step,
    parse_speculative,
    speculative_step_model,
)
from fathom.inference.step_model import InferenceStepModel
from fathom.serving.cost import LinearCostModel
from fathom.serving.request import Request, RequestState
from fathom.serving.simulator import ReplicaConfig, _Simulation, simulate
from fathom.serving.speculative_slots import accepted_tokens
from fathom.specs.serving import ServingPlan, SpeculativeSpec

PLAN = ServingPlan()
CLUSTER = resolve_cluster("h100-sxm", 1)
TARGET = InferenceStepModel(get_model("llama-3.1-8b"), CLUSTER, PLAN)


def ngram(k: int = 4, alpha: float = 0.7) -> SpeculativeSpec:
    return SpeculativeSpec(method="ngram", num_tokens=k, acceptance=alpha)


def req(i, at, n_in, n_out) -> Request:
    return Request(id=i, arrival_s=at, input_tokens=n_in, output_tokens=n_out)


# -- the formula and the sampler -------------------------------------------------------------------------------
def test_expected_tokens_formula_edges():
    assert expected_tokens_per_step(0.0, 5) == 1.0
    assert expected_tokens_per_step(1.0, 5) == 6.0
    assert expected_tokens_per_step(0.5, 1) == pytest.approx(1.5)
    assert expected_tokens_per_step(0.8, 4) == pytest.approx(sum(0.8**i for i in range(5)))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.6, 0.85, 1.0])
@pytest.mark.parametrize("k", [1, 4, 8])
def test_sampler_mean_matches_the_formula(alpha, k):
    x = accepted_tokens(np.random.default_rng(0), alpha, k, 200_000)
    assert x.min() >= 1 and x.max() <= k + 1
    assert x.mean() == pytest.approx(expected_tokens_per_step(alpha, k), abs=5 * x.std() / np.sqrt(x.size) + 1e-12)


@pytest.mark.parametrize("alpha", [0.4, 0.75, 0.95])
def test_simulated_tokens_per_step_match_the_formula(alpha):
    """One long request alone: its decode steps yield the formula's mean (within 5 standard errors)."""
    out = 30_001
    res = simulate([req(0, 0.0, 10, out)], [ReplicaConfig(LinearCostModel(), speculative=ngram(4, alpha), seed=2)])
    r = res.requests[0]
    assert r.state is RequestState.FINISHED and r.generated_tokens == out == len(r.token_times_s)
    steps = res.replicas[0].iterations - 1  # the first iteration is the prefill
    mean, expect = (out - 1) / steps, expected_tokens_per_step(alpha, 4)
    sd = accepted_tokens(np.random.default_rng(0), alpha, 4, 100_000).std()
    assert mean == pytest.approx(expect, abs=5 * sd / np.sqrt(steps) + 1e-3)  # the last step is cut at the output
    assert res.replicas[0].decode_tokens == out - 1


def test_acceptance_zero_emits_one_token_per_step_like_plain_decoding():
    reqs = [req(i, 0.003 * i, 50 + 7 * i, 40 + 3 * i) for i in range(12)]
    plain = simulate(reqs, [ReplicaConfig(LinearCostModel())])
    spec = simulate(reqs, [ReplicaConfig(LinearCostModel(), speculative=ngram(4, 0.0))])
    assert spec.replicas[0].iterations == plain.replicas[0].iterations
    assert spec.replicas[0].decode_tokens == plain.replicas[0].decode_tokens
    assert [r.token_times_s for r in spec.requests] == [r.token_times_s for r in plain.requests]


# -- the cost of a speculative step --------------------------------------------------------------------------------
def test_verification_prices_k_plus_one_tokens_per_sequence():
    pt, pc, dc = np.array([200.0]), np.array([0.0]), np.full(32, 1500.0)
    one = TARGET.step_time_s(pt, pc, dc)
    assert TARGET.verify_step_time_s(pt, pc, dc, 1) == one
    times = [TARGET.verify_step_time_s(pt, pc, dc, q) for q in (2, 4, 8)]
    assert one < times[0] < times[1] < times[2]
    model = SpeculativeStepModel(TARGET, ngram(4))
    assert model.step_time_s(pt, pc, dc) > TARGET.verify_step_time_s(pt, pc, dc, 5)  # plus the host lookup
    assert model.step_time_s(pt, pc, dc) - TARGET.verify_step_time_s(pt, pc, dc, 5) < 1e-3  # a small one


def test_draft_model_runs_k_steps_and_takes_memory():
    spec = SpeculativeSpec(method="draft", draft_model="llama-3.2-1b", num_tokens=4, acceptance=0.7)
    model = speculative_step_model(TARGET, spec, CLUSTER, PLAN)
    draft = model.draft
    dc = np.full(16, 800.0)
    e = np.zeros(0)
    expect = sum(draft.step_time_s(e, e, dc + j) for j in range(4)) + TARGET.verify_step_time_s(e, e, dc, 5)
    assert model.step_time_s(e, e, dc) == pytest.approx(expect)
    assert model.kv_capacity_tokens < TARGET.kv_capacity_tokens
    assert model.kv_bytes_per_token == TARGET.kv_bytes_per_token + draft.kv_bytes_per_token
    assert model.memory.weights_bytes == pytest.approx(TARGET.memory.weights_bytes + draft.memory.weights_bytes)


def test_draft_must_share_the_tokenizer():
    spec = SpeculativeSpec(method="draft", draft_model="llama-2-7b", num_tokens=4, acceptance=0.7)
    with pytest.raises(FathomInputError, match="--speculative"):
        speculative_step_model(TARGET, spec, CLUSTER, PLAN)


# -- simulator properties ------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 3000), st.integers(2, 400)), min_size=1, max_size=4),
    st.integers(1, 8), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 50),
)  # fmt: skip
def test_higher_acceptance_never_lowers_throughput_at_low_load(lengths, k, a1, a2, seed):
    lo, hi = sorted((a1, a2))
    reqs = [req(i, 100.0 * i, n_in, n_out) for i, (n_in, n_out) in enumerate(lengths)]  # never overlapping
    cost = SpeculativeStepModel(TARGET, ngram(k, 0.5))  # the step cost does not depend on alpha
    runs = [simulate(reqs, [ReplicaConfig(cost, speculative=ngram(k, a), seed=seed)]) for a in (lo, hi)]
    busy = [r.replicas[0].busy_s for r in runs]
    tokens = sum(n for _, n in lengths)
    # never more steps (common random numbers); a step may read a few more KV tokens, worth well under 1e-4
    assert tokens / busy[1] >= tokens / busy[0] * (1 - 1e-4)
    for slow, fast in zip(runs[0].requests, runs[1].requests, strict=True):
        assert fast.finished_s - fast.arrival_s <= (slow.finished_s - slow.arrival_s) * (1 + 1e-4)
    assert runs[1].replicas[0].iterations <= runs[0].replicas[0].iterations


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_conservation_under_memory_pressure(data):
    draw = data.draw
    block = draw(st.sampled_from([1, 4, 16]))
    cost = LinearCostModel(base_s=0.005, per_prefill_token_s=1e-5, per_decode_s=1e-4, block_size=block,
                           kv_capacity_tokens=draw(st.integers(block, 300)), max_context=150,
                           kv_bytes_per_token=1e4, host_link_bytes_per_s=1e9)  # fmt: skip
    reqs = [req(i, draw(st.floats(0, 0.3)), draw(st.integers(1, 100)), draw(st.integers(1, 45))) for i in range(12)]
    max_batch = draw(st.integers(1, 6))
    config = ReplicaConfig(
        cost, scheduler=draw(st.sampled_from(["static", "continuous", "chunked-prefill", "decode-priority"])),
        max_batch=max_batch, max_batch_tokens=draw(st.integers(max_batch, 64)),
        preemption=draw(st.sampled_from(["recompute", "swap"])), prefix_caching=draw(st.booleans()),
        speculative=ngram(draw(st.integers(1, 6)), draw(st.floats(0, 1))), seed=draw(st.integers(0, 5)),
    )  # fmt: skip
    sim = _Simulation(reqs, [config, config], "least-loaded", 0, None, None, True)
    res = sim.run()
    for r in res.requests:
        assert r.state in (RequestState.FINISHED, RequestState.REJECTED)
        if r.state is RequestState.REJECTED:
            assert r.reject_reason
            continue
        assert r.generated_tokens == r.output_tokens == len(r.token_times_s)
        assert r.token_times_s == sorted(r.token_times_s) and r.finished_s == r.token_times_s[-1]
    for rep in sim.all:
        assert rep.kv.used_blocks == 0 and rep.outstanding == 0 and rep.n_dec == 0 and rep.host_blocks == 0
        assert not rep._need[rep.it :].any()  # the blocks a preempted path would have needed were taken back
    again = simulate(reqs, [config, config], router="least-loaded")
    assert again.requests == res.requests and again.total_time_s == res.total_time_s


def test_same_seed_same_run_other_seed_other_run():
    reqs = [req(i, 0.01 * i, 100, 120) for i in range(30)]

    def go(seed):
        return simulate(reqs, [ReplicaConfig(LinearCostModel(), speculative=ngram(4, 0.6), seed=seed)])

    assert go(1).requests == go(1).requests
    assert [r.token_times_s for r in go(1).requests] != [r.token_times_s for r in go(2).requests]


# -- flags -----------------------------------------------------------------------------------------------------------
BASE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "2", "--num-requests", "40",
        "--input-len", "512", "--output-len", "128", "--json"]  # fmt: skip


def test_cli_speculation_lowers_tpot(capsys):
    assert run(BASE) == 0
    plain = json.loads(capsys.readouterr().out)
    assert run(BASE + ["--speculative", "draft:llama-3.2-1b", "--spec-tokens", "4", "--spec-acceptance", "0.8"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["completed"] == plain["completed"] == 40
    assert spec["tpot_s"]["mean"] < plain["tpot_s"]["mean"]
    assert spec["kv_cache_gib"] < plain["kv_cache_gib"]  # the draft's weights and KV share the GPU


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--speculative", "medusa", "--spec-acceptance", "0.5"], "--speculative"),
        (["--speculative", "draft:llama-9", "--spec-acceptance", "0.5"], "--speculative"),
        (["--speculative", "ngram", "--spec-tokens", "0", "--spec-acceptance", "0.5"], "--spec-tokens"),
        (["--speculative", "ngram", "--spec-acceptance", "1.5"], "--spec-acceptance"),
        (["--speculative", "ngram"], "--spec-acceptance"),
        (["--spec-tokens", "3"], "--speculative"),
    ],
)
def test_cli_bad_speculative_flags_exit_2_naming_the_flag(capsys, extra, flag):
    assert run(BASE + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and flag in err and len(err.strip().splitlines()) == 1


def test_parse_speculative():
    assert parse_speculative(None, None, None) is None
    spec = parse_speculative("draft:llama-3.2-1b", None, 0.6)
    assert (spec.method, spec.draft_model, spec.num_tokens, spec.acceptance) == ("draft", "llama-3.2-1b", 4, 0.6)
