"""FP8 saved activations (fathom.training.memory with fathom.training.fp8_casts.saved_gemm_input_bytes).

Transformer Engine's FP8 linears keep one FP8 copy of each input for the weight-gradient GEMM instead of the 16-bit
tensor; torchao's Float8Linear keeps the 16-bit input (``fp8_saved_inputs=False``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model, list_models
from fathom.specs.plan import TrainingPlan
from fathom.training.memory import activation_bytes_per_layer, training_memory
from fathom.training.plans import PlanArrays
from fathom.training.shapes import plan_shapes

MODELS = [m if isinstance(m, str) else m.name for m in list_models()]


def _per_layer(model, **kw) -> float:
    plan = TrainingPlan(global_batch=kw.get("micro_batch", 1), **kw)
    cluster = resolve_cluster("h100-sxm", plan.num_gpus)
    p = PlanArrays.from_plans([plan])
    return float(activation_bytes_per_layer(model, p, plan_shapes(model, cluster, p))[0])


def _full_memory(model, **kw):
    plan = TrainingPlan(global_batch=kw.get("micro_batch", 1), **kw)
    cluster = resolve_cluster("h100-sxm", plan.num_gpus)
    p = PlanArrays.from_plans([plan])
    return training_memory(model, cluster, p, plan_shapes(model, cluster, p))


def test_one_llama_layer_matches_a_hand_count():
    """Llama 3 70B, TP 1, 2 x 8192 tokens, flash attention, no recomputation."""
    model = get_model("llama-3-70b")
    kw = dict(seq_len=8192, micro_batch=2, recompute="none", attention="flash2", sequence_parallel=False)
    t, h, ffn = 2 * 8192, 8192, 28672
    q, kv = 64 * 128, 8 * 128
    common = 2 * t * h * 2 + t * (q + 2 * kv) * 2 + t * 64 * 4  # norm inputs, q/k/v, log-sum-exp (fp32)
    bf16 = common + 2 * t * h * 2 + t * q * 2 + t * ffn * 3 * 2
    # FP8: the two norm outputs and the FC2 input as one FP8 byte each; the attention output kept 16-bit by the
    # fused kernel plus the output projection's FP8 copy; the FC1 output (gate and up) stays 16-bit.
    fp8 = common + 2 * t * h * 1 + t * q * (2 + 1) + t * ffn * (2 * 2 + 1)
    assert _per_layer(model, precision="bf16", **kw) == bf16
    assert _per_layer(model, precision="fp8", **kw) == fp8
    assert bf16 - fp8 == t * (h + ffn)


def test_unfused_attention_keeps_only_the_projection_fp8_copy():
    model = get_model("llama-3-8b")
    kw = dict(seq_len=2048, micro_batch=1, recompute="none", attention="unfused", sequence_parallel=False)
    t, h, ffn = 2048, 4096, 14336
    bf16 = _per_layer(model, precision="bf16", **kw)
    fp8 = _per_layer(model, precision="fp8", **kw)
    assert bf16 - fp8 == t * (2 * h + h + ffn)  # norm outputs, projection input, FC2 input: 2 -> 1 byte


def test_torchao_style_fp8_and_16_bit_plans_are_unchanged():
    """``fp8_saved_inputs=False`` (torchao) stores what bf16 stores; the flag does nothing outside FP8."""
    model = get_model("llama-3.1-8b")
    kw = dict(seq_len=4096, micro_batch=2, tp=2, recompute="selective")
    bf16 = _per_layer(model, precision="bf16", **kw)
    assert _per_layer(model, precision="fp8", fp8_saved_inputs=False, **kw) == bf16
    for precision in ("bf16", "fp16", "fp32"):
        assert _per_layer(model, precision=precision, fp8_saved_inputs=False, **kw) == _per_layer(
            model, precision=precision, **kw
        )


def test_full_recompute_stores_the_16_bit_layer_input_in_fp8_too():
    model = get_model("llama-3-8b")
    kw = dict(seq_len=4096, micro_batch=1, recompute="full")
    assert _per_layer(model, precision="fp8", **kw) == _per_layer(model, precision="bf16", **kw)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(MODELS),
    tp=st.sampled_from([1, 2, 4, 8]),
    sp=st.booleans(),
    seq=st.sampled_from([512, 2048, 8192]),
    mb=st.integers(1, 4),
    recompute=st.sampled_from(["none", "selective", "full"]),
    attention=st.sampled_from(["flash2", "unfused"]),
)
def test_fp8_never_stores_more_than_bf16(name, tp, sp, seq, mb, recompute, attention):
    model = get_model(name)
    if model.num_heads % tp:
        tp = 1
    kw = dict(tp=tp, sequence_parallel=sp and tp > 1, seq_len=seq, micro_batch=mb, recompute=recompute)
    kw["attention"] = attention
    bf16 = _full_memory(model, precision="bf16", **kw)
    fp8 = _full_memory(model, precision="fp8", **kw)
    assert np.all(fp8.activations <= bf16.activations)
    assert np.all(fp8.activations + fp8.recompute <= bf16.activations + bf16.recompute)


def test_validation_rows_name_the_fp8_stack():
    """torchtitan's FP8 (torchao) rows keep 16-bit inputs; the Transformer Engine rows take the default."""
    from fathom.validation.runs import load_runs
    from fathom.validation.training import row_plan

    fp8 = [r for r in load_runs("published") if r["precision"] == "fp8"]
    for r in fp8:
        te = "torchtitan" not in r["source"].lower()
        assert r.flag("fp8_saved_inputs", default=True) == te, r["id"]
        if r.complete:
            assert row_plan(r).fp8_saved_inputs == te, r["id"]
