"""MoE host-issue model (fathom.training.moe_host): sourced kernel counts, CUDA graphs, local experts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.errors import FathomInputError
from fathom.specs.plan import CUDA_GRAPHS, MOE_DISPATCHERS, TrainingPlan
from fathom.training.compute import layer_compute
from fathom.training.moe_host import (
    EP_COMM_OPS,
    EXPERT_ACTIVATION_OPS,
    GROUPED_LINEARS,
    PERMUTE_OPS,
    moe_block_ops,
    router_preprocess_kernels,
)
from fathom.training.plans import PlanArrays, check_plan
from fathom.training.shapes import plan_shapes

CLUSTER = resolve_cluster("h100-sxm", 256)
QWEN = get_model("qwen3-235b-a22b")  # 128 experts, no shared expert
DSV3 = get_model("deepseek-v3")  # 256 experts + 1 shared
DENSE = get_model("llama-2-70b")
EAGER_TAIL = PERMUTE_OPS + EP_COMM_OPS + GROUPED_LINEARS + EXPERT_ACTIVATION_OPS


def _arrays(**kw) -> PlanArrays:
    return PlanArrays.from_plans([TrainingPlan(seq_len=4096, global_batch=2048, **kw)])


def _host(model, cluster=CLUSTER, **kw) -> tuple[float, float]:
    plan = TrainingPlan(seq_len=4096, global_batch=2048, **kw)
    p = PlanArrays.from_plans([plan])
    c = layer_compute(model, cluster.device, p, plan_shapes(model, cluster, p))
    return float(c.host_fwd[0]), float(c.host_bwd[0])


def test_router_counts_match_the_dsv3_gb200_guide():
    # Megatron-LM docs/discussions/deepseek-v3-gb200-optimization, Sec. 2.1.4 (72 -> 31) and Sec. 2.2.1 (17).
    assert router_preprocess_kernels(_arrays(moe_dispatcher="alltoall"))[0] == 72
    assert router_preprocess_kernels(_arrays(moe_dispatcher="alltoall", moe_router_fusion=True))[0] == 31
    assert router_preprocess_kernels(_arrays(moe_dispatcher="deepep", moe_router_fusion=True))[0] == 17
    # Inferred: router fusion removes the same 41 router kernels with the flex dispatcher.
    assert router_preprocess_kernels(_arrays(moe_dispatcher="deepep"))[0] == 17 + 41


def test_block_ops_graph_the_router_preprocess_and_shared_experts_into_one_launch():
    p = _arrays(moe_dispatcher="alltoall", ep=32)
    eager = moe_block_ops(DSV3.moe, p)
    assert eager.python_ops[0] == 72 + 2 + EAGER_TAIL  # router, 2 shared-expert GEMMs, the rest
    graphed = moe_block_ops(DSV3.moe, _arrays(moe_dispatcher="alltoall", ep=32, cuda_graphs="attn-moe-router"))
    assert graphed.python_ops[0] == 1 + EAGER_TAIL
    assert eager.cpp_launches[0] == graphed.cpp_launches[0] == GROUPED_LINEARS * 256 / 32  # one GEMM per expert


def test_defaults_are_megatrons():
    plan = TrainingPlan(seq_len=1, global_batch=1)
    assert plan.cuda_graphs == "none" and plan.moe_router_fusion is False


def test_dense_models_host_time_is_unchanged_by_moe_levers():
    base = _host(DENSE, tp=8, pp=1)
    assert _host(DENSE, tp=8, moe_router_fusion=True, moe_dispatcher="deepep") == base


def test_full_graphs_reject_moe_models():
    plan = TrainingPlan(seq_len=4096, global_batch=2048, tp=4, pp=8, dp=8, ep=8, cuda_graphs="full")
    with pytest.raises(FathomInputError, match="cuda-graphs full"):
        check_plan(QWEN, CLUSTER, plan)


def test_full_graphs_make_a_dense_layer_one_launch_per_pass():
    f, b = _host(DENSE, tp=8, cuda_graphs="full")
    assert f == pytest.approx(CLUSTER.device.efficiency.host_op_us * 1e-6)
    assert b == pytest.approx(2 * f)


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([QWEN, DSV3, DENSE]),
    st.sampled_from(MOE_DISPATCHERS),
    st.booleans(),
    st.sampled_from([1, 2, 4]),
    st.sampled_from(CUDA_GRAPHS),
)
def test_graphs_never_increase_host_time(model, dispatcher, fusion, tp, graphs):
    if model.moe is not None and graphs == "full":
        graphs = "attn-moe-router"
    ep = 8 if model.moe is not None else 1
    kw = dict(tp=tp, ep=ep, moe_dispatcher=dispatcher, moe_router_fusion=fusion)
    eager = _host(model, **kw)
    graphed = _host(model, cuda_graphs=graphs, **kw)
    assert graphed[0] <= eager[0] + 1e-15 and graphed[1] <= eager[1] + 1e-15


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([QWEN, DSV3]), st.sampled_from(MOE_DISPATCHERS), st.booleans(), st.sampled_from(CUDA_GRAPHS[:3]))
def test_more_local_experts_never_lower_host_time(model, dispatcher, fusion, graphs):
    kw = dict(moe_dispatcher=dispatcher, moe_router_fusion=fusion, cuda_graphs=graphs)
    # Fewer EP ranks leave more experts on each GPU.
    hosts = [_host(model, tp=1, ep=ep, **kw)[0] for ep in (64, 32, 16, 8, 4)]
    assert all(np.diff(hosts) >= 0)


def test_router_fusion_and_flex_dispatch_lower_host_time():
    kw = dict(tp=1, ep=32)
    baseline = _host(DSV3, moe_dispatcher="alltoall", **kw)[0]
    fused = _host(DSV3, moe_dispatcher="alltoall", moe_router_fusion=True, **kw)[0]
    flex = _host(DSV3, moe_dispatcher="deepep", moe_router_fusion=True, **kw)[0]
    assert baseline > fused > flex


def test_dense_layer_count_is_fathoms_per_kernel_count():
    # Llama-2-70B at TP8 (flash, no dropout, RoPE): attention 2 GEMMs + core + 1 norm + rotary + residual + collective,
    # MLP norm + residual + collective + 2 GEMMs + activation = 13 ops forward, twice backward.
    f, b = _host(DENSE, tp=8)
    assert f == pytest.approx(13 * CLUSTER.device.efficiency.host_op_us * 1e-6)
    assert b == pytest.approx(2 * f)
