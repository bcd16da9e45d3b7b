"""Training defects a QA sweep found: fine-tuning FLOPs, cross-node CP rings, ZeRO-3 buffers, plan checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.api import estimate_training_plan
from fathom.budget.planner import plan_budget
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.costmodel.collectives import ring_exchange_s
from fathom.costmodel.flops import finetune_flops_per_token, model_flops_per_token
from fathom.errors import FathomInputError

BASE = dict(model="llama-2-7b", gpu="h100-sxm", num_gpus=8, seq_len=2048, global_batch=64)


def test_full_training_counts_six_flops_per_parameter():
    model = get_model("llama-3.1-8b")
    full = finetune_flops_per_token(model, 4096, 1.0, True, True)
    assert full == pytest.approx(model_flops_per_token(model, 4096))


@settings(max_examples=25, deadline=None)
@given(
    frozen=st.integers(0, 31),
    finetune=st.sampled_from(["none", "lora", "qlora"]),
    recompute=st.sampled_from(["none", "selective", "full"]),
)
def test_utilisation_stays_physical_when_fine_tuning(frozen, finetune, recompute):
    """Model FLOPs count what the fine-tuning needs, so MFU <= HFU <= 1 however many layers are frozen."""
    precision = "bf16"
    est = estimate_training_plan(
        **BASE, frozen_layers=frozen, finetune=finetune, recompute=recompute, precision=precision
    )
    assert 0.0 < est.mfu <= est.hfu + 1e-12 <= 1.0
    if recompute == "none":
        assert est.mfu == pytest.approx(est.hfu)


def test_frozen_layers_lower_the_model_flops():
    full = estimate_training_plan(**BASE, recompute="none")
    frozen = estimate_training_plan(**BASE, recompute="none", frozen_layers=31)
    full_flops = full.tflops_per_gpu * full.step_time_s
    assert frozen.tflops_per_gpu * frozen.step_time_s < 0.5 * full_flops  # forward everywhere, backward on 1 layer


def test_context_parallel_ring_across_nodes_pays_the_network():
    system = resolve_cluster("h100-sxm", 16).system
    inside = ring_exchange_s(system, 1e8, 8, 1)
    across = ring_exchange_s(system, 1e8, 16, 1)
    assert across > inside
    assert across == pytest.approx(1e8 / system.inter_bytes_per_s + system.inter_node_latency_us * 1e-6)
    kw = dict(model="llama-3.1-8b", gpu="h100-sxm", seq_len=32768, global_batch=16, recompute="selective")
    slow = estimate_training_plan(**kw, num_gpus=16, cp=16, system_overrides={"inter_node_bw_GBps": 0.5})
    fast = estimate_training_plan(**kw, num_gpus=16, cp=16)
    assert slow.time_breakdown["cp_comm"] > fast.time_breakdown["cp_comm"] > 0.0


def test_odd_sequence_lengths_need_no_context_parallel_rule():
    assert estimate_training_plan(**{**BASE, "seq_len": 4097}).step_time_s > 0
    with pytest.raises(FathomInputError, match="divisible by 2\\*cp"):
        estimate_training_plan(**{**BASE, "seq_len": 4097}, cp=2)


def test_bf16_training_needs_bf16_hardware():
    with pytest.raises(FathomInputError, match="v100 has no BF16 support \\(choices there: fp16, fp32\\)"):
        estimate_training_plan(**{**BASE, "gpu": "v100"})
    assert estimate_training_plan(**{**BASE, "gpu": "v100"}, precision="fp16").step_time_s > 0


def test_zero3_prefetch_buffers_hold_this_rank_s_tensor_parallel_slice():
    kw = dict(model="llama-3.1-70b", gpu="h100-sxm", num_gpus=64, pp=4, seq_len=4096, global_batch=128)
    buffers = [estimate_training_plan(**kw, tp=tp, zero=3).memory.breakdown["comm_buffers"] for tp in (2, 4, 8)]
    assert buffers[0] > buffers[1] > buffers[2]
    zero2 = estimate_training_plan(**kw, tp=8, zero=2).memory.peak_gib
    assert estimate_training_plan(**kw, tp=8, zero=3).memory.peak_gib < zero2  # dp=2 halves the weights


def test_adapter_ranks_stay_below_the_hidden_size():
    with pytest.raises(FathomInputError, match="--lora-rank 100000 must be 1..4096"):
        estimate_training_plan(**BASE, finetune="lora", lora_rank=100000)
    with pytest.raises(FathomInputError, match="--galore-rank"):
        estimate_training_plan(**BASE, optimizer="galore", galore_rank=8192)


def test_budget_without_a_fitting_plan_is_an_input_error():
    with pytest.raises(FathomInputError, match="has no plan on 8 x rtx-4090: no plan fits in memory"):
        plan_budget(gpu="rtx-4090", num_gpus=8, flops=1e24)


def test_price_zero_is_a_price():
    est = estimate_training_plan(**BASE, tokens=1e9, price_per_gpu_hour=0.0)
    assert est.run.cost_usd == 0.0
    assert np.isfinite(est.run.gpu_hours)


def test_searches_bound_their_inputs_before_enumerating():
    from fathom.cli.app import run

    huge = "100000000000000000000000000"
    assert run(["plan", "train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", huge,
                "--seq-len", "4096", "--global-batch", "64"]) == 2  # fmt: skip


def test_failures_faster_than_restarts_are_an_input_error():
    with pytest.raises(FathomInputError, match="would never make progress"):
        estimate_training_plan(**BASE, tokens=1e9, mtbf_hours=0.001)
    assert 0.99 < estimate_training_plan(**BASE, tokens=1e9, mtbf_hours=50_000).reliability.goodput < 1.0
