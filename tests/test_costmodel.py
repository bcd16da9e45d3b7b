"""Cost-model kernels and collectives: bounds and monotonicity that any correct model must respect."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import get_device, get_system
from fathom.catalog.models import get_model
from fathom.costmodel.collectives import all_gather_s, all_reduce_s, all_to_all_s, p2p_s
from fathom.costmodel.flops import attention_flops_per_token_fwd, model_flops_per_token
from fathom.costmodel.kernels import attention_s, gemm_s, gemm_utilisation

A100 = get_device("a100-80gb")
H100 = get_device("h100-sxm")
DGX = get_system("dgx-h100")
dims = st.integers(min_value=1, max_value=1 << 16)


@settings(max_examples=200, deadline=None)
@given(dims, dims, dims, st.integers(min_value=1, max_value=512))
def test_gemm_utilisation_is_a_fraction(m, n, k, batch):
    u = gemm_utilisation(A100, np.float64(m), np.float64(n), np.float64(k), np.float64(batch))
    assert 0.0 < u <= 1.0


@settings(max_examples=100, deadline=None)
@given(dims, dims, dims)
def test_gemm_never_beats_the_device_peak(m, n, k):
    t = gemm_s(H100, "bf16", m, n, k)
    assert 2.0 * m * n * k / t <= H100.peak_flops_per_s("bf16")


def test_bigger_gemms_take_longer_and_run_closer_to_peak():
    sizes = [256, 1024, 4096, 16384]
    times = [float(gemm_s(A100, "bf16", s, s, s)) for s in sizes]
    rates = [2.0 * s**3 / t for s, t in zip(sizes, times, strict=True)]
    assert times == sorted(times) and rates == sorted(rates)


def test_fp8_gemm_is_faster_than_bf16_on_hopper():
    assert gemm_s(H100, "fp8", 8192, 8192, 8192) < gemm_s(H100, "bf16", 8192, 8192, 8192)


def test_attention_kernel_classes_are_ordered():
    flops, seq = 1e12, 8192
    t = {k: float(attention_s(H100, k, flops, seq)) for k in ("flash1", "flash2", "flash3")}
    assert t["flash3"] < t["flash2"] < t["flash1"]


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1e3, max_value=1e10), st.sampled_from([2, 4, 8, 16, 64, 256]), st.sampled_from([1, 2, 8]))
def test_collectives_grow_with_bytes_and_vanish_for_one_rank(nbytes, n, stride):
    for op in (all_reduce_s, all_gather_s, all_to_all_s):
        assert op(DGX, nbytes, 1, stride) == 0.0
        assert op(DGX, 2 * nbytes, n, stride) > op(DGX, nbytes, n, stride) > 0.0
    if nbytes >= 1e9:  # bandwidth-bound: an all-reduce moves twice an all-gather's bytes (tiny messages are
        # latency-bound, where NCCL's tree all-reduce can beat a ring all-gather, which has no tree)
        assert all_reduce_s(DGX, nbytes, n, stride) >= all_gather_s(DGX, nbytes, n, stride)


def test_leaving_the_node_costs_more():
    inside = all_reduce_s(DGX, 1e9, 8, 1)
    across = all_reduce_s(DGX, 1e9, 8, 8)  # one member per node: the network is the bottleneck
    assert across > inside
    assert p2p_s(DGX, 1e8, 8) > p2p_s(DGX, 1e8, 1)
    assert all_to_all_s(DGX, 1e9, 32, 1) > all_to_all_s(DGX, 1e9, 8, 1)


def test_model_flops_match_the_6n_rule_for_short_sequences():
    """PaLM App. B: about 6 N FLOPs per token when attention is negligible."""
    model = get_model("llama-2-70b")
    per_token = float(model_flops_per_token(model, 16))
    assert abs(per_token / (6 * model.num_params) - 1) < 0.03


def test_causal_attention_counts_half():
    model = get_model("llama-3.1-8b")
    full = float(attention_flops_per_token_fwd(model, 8192))
    assert float(attention_flops_per_token_fwd(model, 8192, causal=True)) == 0.5 * full
