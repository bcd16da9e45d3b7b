"""Training estimator: published formulas, vectorised == scalar, and invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan
from fathom.training.estimator import estimate_arrays, estimate_training
from fathom.training.memory import activation_bytes_per_layer
from fathom.training.plans import PlanArrays
from fathom.training.shapes import plan_shapes

GPT = ModelSpec(
    name="gpt-test",
    num_layers=24,
    hidden_size=2048,
    num_heads=16,
    num_kv_heads=16,
    head_dim=128,
    ffn_size=8192,
    gated_mlp=False,
    vocab_size=51200,
    norm_type="layernorm",
    hidden_dropout=True,
    position_embedding="learned",
    tied_embeddings=True,
)


@pytest.mark.parametrize(
    "tp, sp, recompute",
    [(1, False, "none"), (8, False, "none"), (8, True, "none"), (8, True, "selective"), (8, False, "full")],
)
def test_activation_memory_matches_korthikanti(tp, sp, recompute):
    """Korthikanti et al. 2022, Table 2: bytes per layer for a GPT layer with dropout, unfused attention."""
    s, b, h, a = 2048, 1, GPT.hidden_size, GPT.num_heads
    plan = TrainingPlan(
        seq_len=s,
        global_batch=8,
        tp=tp,
        sequence_parallel=sp,
        recompute=recompute,
        attention="unfused",
        dp=1,
    )
    cluster = resolve_cluster("a100-80gb", tp)
    p = PlanArrays.from_plans([plan])
    got = activation_bytes_per_layer(GPT, p, plan_shapes(GPT, cluster, p))[0]
    expected = {
        (1, False, "none"): s * b * h * (34 + 5 * a * s / h),
        (8, False, "none"): s * b * h * (10 + 24 / tp + 5 * a * s / (h * tp)),
        (8, True, "none"): s * b * h / tp * (34 + 5 * a * s / h),
        (8, True, "selective"): s * b * h / tp * 34,
        (8, False, "full"): 2 * s * b * h,
    }[(tp, sp, recompute)]
    assert got == pytest.approx(expected, rel=1e-9)


def _plans(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return PlanArrays.from_columns(
        seq_len=np.full(n, 4096),
        global_batch=np.full(n, 512),
        micro_batch=rng.choice([1, 2, 4], n),
        tp=np.full(n, 8),
        pp=np.full(n, 4),
        dp=np.full(n, 8),
        vpp=np.ones(n, int),
        zero=rng.integers(0, 4, n),
        recompute=rng.choice(["none", "selective", "full"], n),
        precision=rng.choice(["bf16", "fp8"], n),
        schedule=rng.choice(["1f1b", "zero-bubble"], n),
        sequence_parallel=rng.integers(0, 2, n).astype(bool),
    )


def test_vectorised_equals_scalar():
    model = get_model("llama-2-70b")
    cluster = resolve_cluster("h100-sxm", 256)
    plans = _plans()
    arrays = estimate_arrays(model, cluster, plans)
    for i in range(0, len(plans), 7):
        single = estimate_training(model, cluster, plans.plan(i))
        assert single.step_time_s == pytest.approx(arrays.step_time_s[i], rel=1e-12)
        assert single.memory.peak_gib * 2**30 == pytest.approx(arrays.peak_memory_bytes[i], rel=1e-12)


def test_breakdowns_add_up_and_mfu_bounded():
    model = get_model("llama-2-70b")
    arrays = estimate_arrays(model, resolve_cluster("h100-sxm", 256), _plans(seed=3))
    assert np.all(np.isfinite(arrays.step_time_s)) and np.all(arrays.step_time_s > 0)
    assert np.all((arrays.mfu > 0) & (arrays.mfu < 1)) and np.all(arrays.hfu >= arrays.mfu - 1e-12)


def test_no_bubble_without_pipeline_and_interleaving_helps():
    model = get_model("llama-2-70b")
    cluster = resolve_cluster("a100-80gb", 64)
    base = dict(seq_len=4096, global_batch=64, tp=8, dp=8 // 4 * 1, micro_batch=1)
    one = estimate_training(model, resolve_cluster("a100-80gb", 16), TrainingPlan(**{**base, "pp": 1}))
    assert one.time_breakdown["pipeline_bubble"] == 0
    f1b = estimate_training(model, cluster, TrainingPlan(**{**base, "pp": 4}))
    inter = estimate_training(model, cluster, TrainingPlan(**{**base, "pp": 4, "vpp": 2, "schedule": "interleaved"}))
    zb = estimate_training(model, cluster, TrainingPlan(**{**base, "pp": 4, "schedule": "zero-bubble"}))
    assert inter.time_breakdown["pipeline_bubble"] < f1b.time_breakdown["pipeline_bubble"]
    assert zb.time_breakdown["pipeline_bubble"] < f1b.time_breakdown["pipeline_bubble"]
    assert inter.memory.breakdown["activations"] >= f1b.memory.breakdown["activations"]


@settings(max_examples=40, deadline=None)
@given(
    schedule=st.sampled_from(["1f1b", "interleaved", "zero-bubble", "zero-bubble-2p"]),
    pp=st.sampled_from([2, 4, 8]),
    micro_batches=st.integers(1, 20),
)
def test_more_micro_batches_never_shorten_the_step(schedule, pp, micro_batches):
    """A pipeline with one more micro-batch of work never finishes sooner, even before its warm-up is filled."""
    model = get_model("llama-2-13b")
    cluster = resolve_cluster("a100-80gb", 8 * pp)
    base = dict(seq_len=2048, tp=8, pp=pp, dp=1, micro_batch=1, schedule=schedule)
    base["vpp"] = 2 if schedule == "interleaved" else 1
    times = [
        estimate_training(model, cluster, TrainingPlan(global_batch=m, **base)).step_time_s
        for m in (micro_batches, micro_batches + 1)
    ]
    assert times[1] >= times[0]


def test_one_micro_batch_leaves_little_to_fill():
    """With one micro-batch the stages run in turn: interleaving saves nothing, zero-bubble only the deferred W."""
    model = get_model("llama-2-13b")
    cluster = resolve_cluster("a100-80gb", 32)
    base = dict(seq_len=2048, global_batch=1, tp=8, pp=4, dp=1, micro_batch=1)
    bubble = lambda **kw: estimate_training(model, cluster, TrainingPlan(**base, **kw)).time_breakdown[  # noqa: E731
        "pipeline_bubble"
    ]
    reference = bubble(schedule="1f1b")
    assert bubble(schedule="zero-bubble") == pytest.approx(bubble(schedule="zero-bubble-2p"))
    assert 0.5 * reference < bubble(schedule="zero-bubble") < reference  # only deferred weight gradients overlap
    assert bubble(schedule="interleaved", vpp=2) == pytest.approx(reference, rel=0.05)  # chunk p2p differs


@settings(max_examples=30, deadline=None)
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    sequence_parallel=st.booleans(),
    recompute=st.sampled_from(["none", "selective", "full"]),
)
def test_async_tp_collectives_only_hide_backward_traffic(tp, sequence_parallel, recompute):
    """Megatron's asynchronous backward TP collectives never slow a step, touch only TP traffic, and leave at least
    the sequence-parallel all-gathers behind the row-parallel GEMMs exposed."""
    model = get_model("llama-2-13b")
    cluster = resolve_cluster("a100-80gb", tp * 2)
    base = dict(seq_len=4096, global_batch=8, tp=tp, dp=2, micro_batch=1, recompute=recompute,
                sequence_parallel=sequence_parallel)  # fmt: skip
    on = estimate_training(model, cluster, TrainingPlan(**base))
    off = estimate_training(model, cluster, TrainingPlan(**base, async_tp_allreduce=False))
    assert on.step_time_s <= off.step_time_s
    assert on.time_breakdown["gemm"] == off.time_breakdown["gemm"]
    if tp == 1:
        assert on.step_time_s == off.step_time_s
    elif sequence_parallel:
        forward_and_recompute = off.time_breakdown["tp_comm"] / 2
        assert on.time_breakdown["tp_comm"] >= 0.5 * forward_and_recompute * (1 - 1e-9)


def test_parameter_tensors_per_layer_follow_megatron_layout():
    assert get_model("gpt3-175b").param_tensors_per_layer == 12  # 2 LayerNorms (w, b), QKV, proj, fc1, fc2 (w, b)
    assert get_model("llama-2-7b").param_tensors_per_layer == 6  # 2 RMSNorms, QKV, out, gate+up, down


@settings(max_examples=20, deadline=None)
@given(zero=st.integers(0, 3), dp=st.sampled_from([2, 8, 64]))
def test_per_parameter_zero3_gathers_are_exposed(zero, dp):
    """DeepSpeed's first ZeRO-3 (a device sync before every per-parameter gather) is never faster than prefetched
    per-layer gathers, and changes nothing below stage 3."""
    model = get_model("llama-2-13b")
    cluster = resolve_cluster("a100-80gb", dp)
    base = dict(seq_len=2048, global_batch=2 * dp, dp=dp, micro_batch=1, zero=zero)
    prefetch = estimate_training(model, cluster, TrainingPlan(**base))
    sync = estimate_training(model, cluster, TrainingPlan(**base, zero3_gather="per-parameter-sync"))
    if zero < 3:
        assert sync.step_time_s == prefetch.step_time_s
    else:
        assert sync.time_breakdown["dp_comm"] > prefetch.time_breakdown["dp_comm"]


plan_strategy = st.fixed_dictionaries(
    {
        "tp": st.sampled_from([1, 2, 4, 8]),
        "pp": st.sampled_from([1, 2, 4]),
        "dp": st.sampled_from([1, 2, 4, 8]),
        "micro_batch": st.sampled_from([1, 2]),
        "recompute": st.sampled_from(["none", "selective", "full"]),
        "zero": st.integers(0, 3),
        "sequence_parallel": st.booleans(),
        "attention": st.sampled_from(["flash3", "flash2", "flash1", "unfused"]),
    }
)


def _mem(model, plan_kwargs, **change):
    kw = {**plan_kwargs, **change}
    plan = TrainingPlan(seq_len=2048, global_batch=16 * kw["dp"], **kw)
    cluster = resolve_cluster("a100-80gb", plan.num_gpus)
    return estimate_training(model, cluster, plan).memory.breakdown


@settings(max_examples=60, deadline=None)
@given(plan_strategy)
def test_more_sharding_never_needs_more_memory(kw):
    model = get_model("llama-2-13b")
    mem = _mem(model, kw)
    per_gpu_states = lambda m: m["weights"] + m["gradients"] + m["optimizer"]  # noqa: E731
    if kw["zero"] < 3:
        assert per_gpu_states(_mem(model, kw, zero=kw["zero"] + 1)) <= per_gpu_states(mem) + 1e-9
    if kw["tp"] < 8:
        more_tp = _mem(model, kw, tp=kw["tp"] * 2)
        assert per_gpu_states(more_tp) <= per_gpu_states(mem) + 1e-9
        assert more_tp["activations"] <= mem["activations"] * (1 + 1e-9) or not kw["sequence_parallel"]
    if kw["pp"] < 4:
        assert per_gpu_states(_mem(model, kw, pp=kw["pp"] * 2)) <= per_gpu_states(mem) + 1e-9


@settings(max_examples=60, deadline=None)
@given(plan_strategy)
def test_recompute_trades_memory_for_time(kw):
    model = get_model("llama-2-13b")
    order = ["none", "selective", "full"]
    results = []
    for rc in order:
        plan = TrainingPlan(seq_len=2048, global_batch=16 * kw["dp"], **{**kw, "recompute": rc})
        results.append(estimate_training(model, resolve_cluster("a100-80gb", plan.num_gpus), plan))
    acts = [r.memory.breakdown["activations"] for r in results]
    times = [r.step_time_s for r in results]
    assert acts[0] >= acts[1] >= acts[2]
    assert times[0] <= times[1] * (1 + 1e-9) and times[1] <= times[2] * (1 + 1e-9)


def test_moe_expert_parallel_shards_experts():
    model = get_model("mixtral-8x7b")
    cluster = resolve_cluster("h100-sxm", 64)
    plans = [TrainingPlan(seq_len=4096, global_batch=256, tp=2, pp=1, dp=32, ep=ep) for ep in (1, 2, 4, 8)]
    weights = [estimate_training(model, cluster, p).memory.breakdown["weights"] for p in plans]
    assert weights == sorted(weights, reverse=True) and weights[-1] < weights[0] / 3


def test_fp8_is_faster_than_bf16():
    model = get_model("llama-3.1-70b")
    cluster = resolve_cluster("h100-sxm", 64)
    t = [
        estimate_training(
            model, cluster, TrainingPlan(seq_len=8192, global_batch=64, tp=8, dp=8, precision=p)
        ).step_time_s
        for p in ("bf16", "fp8")
    ]
    assert t[1] < t[0]


def test_offload_frees_gpu_memory_and_costs_time():
    model = get_model("llama-2-13b")
    cluster = resolve_cluster("a100-80gb", 8)
    base = dict(seq_len=2048, global_batch=64, dp=8, zero=2)
    on = estimate_training(model, cluster, TrainingPlan(**base, offload="cpu"))
    off = estimate_training(model, cluster, TrainingPlan(**base))
    assert on.memory.breakdown["optimizer"] == 0 < off.memory.breakdown["optimizer"]
    assert on.time_breakdown["optimizer"] > off.time_breakdown["optimizer"]
