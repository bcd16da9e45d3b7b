"""Phase-mix invariants of the power model and the throughput diagnostics of ``fathom validate energy``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.energy.power import power_profile, step_power

H100 = resolve_cluster("h100-sxm", 8).device
COMPONENTS = ("gemm", "recompute", "memory_bound", "tp_comm", "pipeline_bubble")
times = st.lists(st.floats(0.0, 10.0), min_size=len(COMPONENTS), max_size=len(COMPONENTS))


def _power(breakdown: dict[str, float]) -> float:
    return float(step_power(breakdown, power_profile(H100)).avg_power_w)


@settings(max_examples=60, deadline=None)
@given(times, st.floats(0.01, 10.0))
def test_more_compute_time_never_lowers_power_and_more_stall_never_raises_it(values, extra):
    """Compute phases draw the most and stalls the least, so e.g. recomputation raises a step's average power."""
    base = dict(zip(COMPONENTS, values, strict=True))
    for component in ("gemm", "recompute"):
        assert _power({**base, component: base[component] + extra}) >= _power(base) - 1e-9
    assert _power({**base, "pipeline_bubble": base["pipeline_bubble"] + extra}) <= _power(base) + 1e-9


@pytest.fixture(scope="module")
def checks():
    from fathom.validation.energy import validate_energy

    return {c.row_id: c for c in validate_energy()}


def test_power_stays_within_the_device_envelope(checks):
    share = power_profile(H100).host_share_of_server
    for c in checks.values():
        if c.avg_power_w is None:
            continue
        ceiling = c.tdp_w if c.scope == "gpu" else c.tdp_w / (1.0 - share)
        assert 0.0 < c.avg_power_w <= ceiling + 1e-6, c.row_id


def test_throughput_diagnostics(checks):
    """Each predicted row reports its plan's TFLOPs/GPU; rows whose source gives one report it beside."""
    assert checks["gpt3-175b"].published_tflops_per_gpu == pytest.approx(24.6)  # Patterson et al. 2021, Table 4
    assert checks["llama-3.1-405b"].published_tflops_per_gpu == pytest.approx(400.0)  # Llama 3 paper, Table 4
    assert checks["llama-2-7b"].published_tflops_per_gpu is None
    assert checks["opt-175b"].tflops_per_gpu is None  # skipped row
    for c in checks.values():
        if c.avg_power_w is not None:
            peak = {"v100": 125.0, "a100-80gb": 312.0, "h100-sxm": 989.4}[c.gpu]
            assert 0.0 < c.tflops_per_gpu < peak, c.row_id


def test_dropping_recomputation_lowers_the_405b_layouts_power():
    """ENERGY_SOURCES.md: pricing Meta's layout without recomputation moves the prediction further below 700 W."""
    from fathom.catalog.models import get_model
    from fathom.specs.plan import TrainingPlan
    from fathom.training.estimator import estimate_training

    model, cluster = get_model("llama-3.1-405b"), resolve_cluster("h100-sxm", 16384)
    layout = dict(seq_len=8192, global_batch=2048, micro_batch=1, tp=8, pp=16, cp=1, dp=128, vpp=4,
                  schedule="interleaved", zero=1, precision="bf16")  # fmt: skip
    watts = {}
    for recompute in ("none", "full"):
        est = estimate_training(model, cluster, TrainingPlan(**layout, recompute=recompute))
        watts[recompute] = _power(est.time_breakdown)
    assert watts["none"] < watts["full"] < 0.8 * cluster.device.tdp_w
