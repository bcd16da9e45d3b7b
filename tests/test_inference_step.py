"""Inference step model and replica memory: bounds that follow from bytes and FLOPs."""

from __future__ import annotations

import numpy as np
import pytest

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.costmodel.kernels import linear_s
from fathom.errors import FathomInputError
from fathom.inference.memory import kv_bytes_per_token_per_gpu, replica_memory
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.serving import ServingPlan

LLAMA8 = get_model("llama-3.1-8b")
H100 = resolve_cluster("h100-sxm", 1)


DEFAULT_PLAN = ServingPlan()


def _model(plan: ServingPlan = DEFAULT_PLAN, model=LLAMA8, cluster=H100) -> InferenceStepModel:
    return InferenceStepModel(model, cluster, plan)


def test_kv_bytes_per_token_gqa_and_mla():
    # Llama-3.1-8B: 32 layers x K,V x 8 KV heads x 128 dims x 2 bytes
    assert kv_bytes_per_token_per_gpu(LLAMA8, ServingPlan()) == 32 * 2 * 8 * 128 * 2
    assert kv_bytes_per_token_per_gpu(LLAMA8, ServingPlan(kv_dtype="fp8")) == 32 * 2 * 8 * 128
    ds = get_model("deepseek-v3")  # MLA: latent 512 + RoPE key 64 per layer
    assert kv_bytes_per_token_per_gpu(ds, ServingPlan(tp=8)) == 61 * (512 + 64) * 2


def test_batch1_decode_is_bounded_by_reading_the_weights():
    sm = _model()
    t = sm.step_time_s([], [], [1024])
    weights = sm.memory.weights_bytes
    assert t > weights / H100.device.mem_bw_bytes_per_s  # cannot beat the HBM roofline
    assert t < 3 * weights / H100.device.mem_bw_bytes_per_s


def test_weight_only_int4_gemm_speedup_follows_marlin():
    """MARLIN (Frantar et al. 2024): close to 4x at batch 1-16, shrinking toward larger batches."""
    dev = H100.device
    n, k = 14336, 4096
    speedups = [
        float(linear_s(dev, "bf16", b, n, k) / linear_s(dev, "bf16", b, n, k, weight_bytes=0.5 + 2 / 128))
        for b in (1, 16, 128, 1024)
    ]
    assert speedups[0] > 2.8 and speedups[1] > 2.8  # the fixed launch cost keeps it below 4x
    assert speedups == sorted(speedups, reverse=True) and speedups[-1] < 1.5


def test_weight_only_int4_speeds_up_decode_end_to_end():
    bf16, int4 = _model(), _model(ServingPlan(weight_dtype="int4"))
    speedups = [
        bf16.step_time_s([], [], np.full(b, 512)) / int4.step_time_s([], [], np.full(b, 512)) for b in (1, 64, 1024)
    ]
    assert speedups[0] > 1.3 and speedups == sorted(speedups, reverse=True)


def test_step_time_grows_with_work():
    sm = _model()
    assert sm.step_time_s([], [], [100]) < sm.step_time_s([], [], [100, 100])
    assert sm.step_time_s([], [], [100]) < sm.step_time_s([], [], [10_000])
    assert sm.step_time_s([512], [0], []) < sm.step_time_s([512], [4096], [])
    assert sm.step_time_s([], [], []) == 0.0


def test_tensor_parallel_cuts_decode_time_and_raises_kv_capacity():
    one = _model(model=get_model("llama-2-70b"), plan=ServingPlan(tp=2), cluster=resolve_cluster("h100-sxm", 2))
    two = _model(model=get_model("llama-2-70b"), plan=ServingPlan(tp=4), cluster=resolve_cluster("h100-sxm", 4))
    assert two.step_time_s([], [], np.full(32, 2048)) < one.step_time_s([], [], np.full(32, 2048))
    assert two.kv_capacity_tokens > one.kv_capacity_tokens


def test_eager_mode_has_a_host_floor():
    graphs, eager = _model(), _model(ServingPlan(cuda_graphs=False))
    assert eager.step_time_s([], [], [64]) >= graphs.step_time_s([], [], [64])


def test_model_that_does_not_fit_is_a_clear_error():
    with pytest.raises(FathomInputError, match="does not fit"):
        replica_memory(get_model("llama-2-70b"), H100.device, ServingPlan())


def test_sliding_window_caps_decode_attention_unless_the_engine_attends_over_the_whole_context():
    mistral = get_model("mistral-7b")  # window 4096 on every layer
    windowed, full = _model(model=mistral), _model(ServingPlan(sliding_window=False), model=mistral)
    short, long_ = [2048.0] * 64, [20000.0] * 64
    assert windowed.step_time_s([], [], short) == pytest.approx(full.step_time_s([], [], short))
    assert windowed.step_time_s([], [], long_) < full.step_time_s([], [], long_)
    # past the window, a windowed decode costs what a decode at the window costs; a full one keeps growing
    assert windowed.step_time_s([], [], long_) == pytest.approx(windowed.step_time_s([], [], [4096.0] * 64))
    assert full.step_time_s([], [], long_) > full.step_time_s([], [], [4096.0] * 64)


class _ContextsOnly:
    """The step model seen only through ``step_time_s`` (the simulator then builds the decode contexts itself)."""

    def __init__(self, inner: InferenceStepModel) -> None:
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.mark.parametrize("scheduler", ["continuous", "chunked-prefill"])
def test_simulating_with_the_kept_context_sum_gives_the_same_run_as_passing_the_contexts(scheduler):
    from fathom.serving.request import Request
    from fathom.serving.simulator import ReplicaConfig, simulate

    rng = np.random.default_rng(3)
    arrivals = np.cumsum(rng.exponential(0.05, 300))
    reqs = [Request(i, float(a), int(rng.integers(10, 900)), int(rng.integers(1, 200))) for i, a in enumerate(arrivals)]
    sm = _model()
    assert sm.prices_context_sum and not _model(model=get_model("mistral-7b")).prices_context_sum
    fast = simulate(reqs, [ReplicaConfig(sm, scheduler=scheduler)])
    slow = simulate(reqs, [ReplicaConfig(_ContextsOnly(sm), scheduler=scheduler)])
    flat = [t for r in fast.requests for t in r.token_times_s]
    assert len(flat) == sum(r.output_tokens for r in reqs)
    assert flat == pytest.approx([t for r in slow.requests for t in r.token_times_s], rel=1e-12)
