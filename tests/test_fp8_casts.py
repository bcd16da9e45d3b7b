"""FP8 training pays its quantisation casts and keeps the LM head in 16 bits (fathom.training.fp8_casts)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import get_device, resolve_cluster
from fathom.catalog.models import get_model
from fathom.specs.plan import TrainingPlan
from fathom.training.compute import layer_compute
from fathom.training.fp8_casts import CAST_BYTES_PER_ELEMENT, fp8_cast_s
from fathom.training.plans import PlanArrays
from fathom.training.shapes import plan_shapes


def _compute(model_name: str, precisions: tuple[str, ...], micro_batch: int = 8, seq_len: int = 2048):
    model = get_model(model_name)
    cluster = resolve_cluster("h100-sxm", 8)
    plans = [TrainingPlan(seq_len=seq_len, global_batch=8 * micro_batch, micro_batch=micro_batch, dp=8,
                          precision=p) for p in precisions]  # fmt: skip
    arrays = PlanArrays.from_plans(plans)
    return layer_compute(model, cluster.device, arrays, plan_shapes(model, cluster, arrays))


def test_fp8_adds_cast_traffic_but_keeps_the_head_16_bit():
    c = _compute("llama-3.1-8b", ("bf16", "fp8"))
    assert c.other_fwd[1] > c.other_fwd[0] and c.other_bwd[1] > c.other_bwd[0]
    assert c.gemm_fwd[1] < c.gemm_fwd[0]  # the layer's GEMMs still run at the FP8 rate
    np.testing.assert_allclose(c.head_fwd[1], c.head_fwd[0])
    np.testing.assert_allclose(c.head_bwd[1], c.head_bwd[0])


def test_fp8_layer_gain_stays_below_the_gemm_rate_ratio():
    c = _compute("llama-3.1-8b", ("bf16", "fp8"))
    layer = c.fwd + c.bwd
    gemm = c.gemm_fwd + c.gemm_bwd
    assert layer[1] < layer[0]
    assert layer[0] / layer[1] < gemm[0] / gemm[1]


def test_moe_layers_cast_their_expert_gemms():
    c = _compute("mixtral-8x7b", ("bf16", "fp8"), micro_batch=1, seq_len=4096)
    assert c.other_fwd[1] > c.other_fwd[0]


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 1 << 16),
    n=st.integers(1, 1 << 15),
    k=st.integers(1, 1 << 15),
    scale=st.sampled_from([2.0, 4.0, 8.0]),
)
def test_cast_time_grows_with_the_tensors(m, n, k, scale):
    dev = get_device("h100-sxm")
    f1, b1 = fp8_cast_s(dev, [(1.0, [(float(m), float(n), float(k), 1.0)])])
    f2, b2 = fp8_cast_s(dev, [(1.0, [(scale * m, float(n), float(k), 1.0)])])
    assert f2 > f1 and b2 > b1
    launch = dev.efficiency.kernel_launch_us * 1e-6
    expected_bwd = m * n * CAST_BYTES_PER_ELEMENT / (dev.mem_bw_bytes_per_s * dev.efficiency.memory) + launch
    np.testing.assert_allclose(b1, expected_bwd, rtol=1e-9)
