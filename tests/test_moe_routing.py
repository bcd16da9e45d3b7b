"""Dropless MoE routing (busiest EP rank) and the combined-1F1B EP overlap: invariants that can fail."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.specs.plan import TrainingPlan
from fathom.training.ep_overlap import EP_COMM_SM_SHARE, exposed_ep_s, unpaired_share
from fathom.training.estimator import estimate_training
from fathom.training.plans import PlanArrays

CLUSTER = resolve_cluster("h100-sxm", 256)
QWEN = get_model("qwen3-235b-a22b")
# The model zoo's long-context layout (yanring/Megatron-MoE-ModelZoo, best_practice/qwen3/readme.md).
BASE = dict(seq_len=16384, global_batch=256, tp=4, pp=8, dp=8, ep=8, vpp=4, schedule="interleaved",
            moe_dispatcher="deepep")  # fmt: skip


def _step(model, **kw) -> tuple[float, dict[str, float]]:
    est = estimate_training(model, CLUSTER, TrainingPlan(**{**BASE, **kw}))
    return est.step_time_s, est.time_breakdown


def test_balanced_is_the_default():
    assert TrainingPlan(seq_len=1, global_batch=1).moe_routing == "balanced"
    assert _step(QWEN)[0] == _step(QWEN, moe_routing="balanced")[0]


def test_dropless_scales_the_busiest_ranks_ep_traffic_and_slows_the_step():
    (t_bal, b_bal), (t_drop, b_drop) = _step(QWEN), _step(QWEN, moe_routing="dropless")
    load = QWEN.moe.dropless_ep_imbalance
    assert load > 1.0
    assert b_drop["ep_comm"] == pytest.approx(load * b_bal["ep_comm"])
    assert b_drop["gemm"] > b_bal["gemm"]
    assert b_bal["attention"] == pytest.approx(b_drop["attention"])  # attention is not routed
    assert t_drop > t_bal


def test_dropless_without_ep_or_moe_changes_nothing():
    assert _step(QWEN, ep=1)[0] == _step(QWEN, ep=1, moe_routing="dropless")[0]
    dense = get_model("llama-2-70b")
    plan = dict(seq_len=4096, global_batch=512, tp=4, pp=8, dp=8, vpp=5, schedule="interleaved")
    a = estimate_training(dense, CLUSTER, TrainingPlan(**plan))
    b = estimate_training(dense, CLUSTER, TrainingPlan(**plan, moe_routing="dropless"))
    assert a.step_time_s == b.step_time_s


@settings(max_examples=15, deadline=None)
@given(st.floats(1.0, 3.0), st.floats(0.0, 1.0))
def test_step_time_grows_with_the_routers_imbalance(low, gap):
    moe = QWEN.moe
    slow = QWEN.model_copy(update={"moe": moe.model_copy(update={"dropless_ep_imbalance": low + gap})})
    fast = QWEN.model_copy(update={"moe": moe.model_copy(update={"dropless_ep_imbalance": low})})
    assert _step(slow, moe_routing="dropless")[0] >= _step(fast, moe_routing="dropless")[0]


def test_unpaired_share_follows_megatrons_warmup():
    # Interleaved, first stage: (pp - 1) * 2 + (v - 1) * pp warm-up chunk passes of m * v.
    p = PlanArrays.from_columns(
        seq_len=1, global_batch=1, pp=[8, 8, 4], vpp=[4, 1, 1], schedule=["interleaved", "1f1b", "1f1b"]
    )
    share = unpaired_share(p, np.array([128.0, 128.0, 2.0]))
    assert share == pytest.approx([38.0 / 512.0, 7.0 / 128.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 16),
    st.integers(1, 4),
    st.integers(1, 512),
    st.floats(0.0, 10.0),
    st.floats(0.0, 10.0),
)
def test_overlap_never_exposes_more_than_the_traffic(pp, vpp, m, ep_total, compute):
    schedule = "interleaved" if vpp > 1 else "1f1b"
    on = PlanArrays.from_columns(
        seq_len=1, global_batch=1, pp=[pp], vpp=[vpp], schedule=[schedule], overlap_moe_comm=[True]
    )
    off = PlanArrays.from_columns(
        seq_len=1, global_batch=1, pp=[pp], vpp=[vpp], schedule=[schedule], overlap_moe_comm=[False]
    )
    exposed = float(exposed_ep_s(on, np.array([float(m)]), np.array([ep_total]), np.array([compute]))[0])
    assert exposed <= ep_total + 1e-12
    assert exposed >= EP_COMM_SM_SHARE * min(ep_total, compute) - 1e-12
    assert float(exposed_ep_s(off, np.array([float(m)]), np.array([ep_total]), np.array([compute]))[0]) == ep_total
