"""Activation CPU offloading (Megatron-Core --cpu-offloading-num-layers): fathom.training.activation_offload."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.errors import FathomInputError
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.plan import TrainingPlan
from fathom.training.activation_offload import RESIDENT_OFFLOADED_LAYERS
from fathom.training.estimator import estimate_training
from fathom.training.memory import activation_bytes_per_layer
from fathom.training.plans import PlanArrays
from fathom.training.shapes import plan_shapes
from small_gpt import GPT

LAYERS = GPT.num_layers


def _plan(offload: int = 0, micro_batch: int = 1, global_batch: int = 8, **kw) -> TrainingPlan:
    base = {"tp": 8, "pp": 1, "dp": 1, "seq_len": 2048, "recompute": "none", "attention": "flash2"}
    return TrainingPlan(
        micro_batch=micro_batch, global_batch=global_batch, activation_offload_layers=offload, **{**base, **kw}
    )


def _cluster(host_link_GBps: float | None = None) -> Cluster:
    cluster = resolve_cluster("a100-80gb", 8)
    if host_link_GBps is None:
        return cluster
    device = cluster.device.model_copy(update={"host_link_GBps": host_link_GBps})
    return cluster.model_copy(update={"device": device})


@settings(max_examples=25, deadline=None)
@given(offload=st.integers(0, LAYERS - 1), micro_batch=st.sampled_from([1, 2, 4]), steps=st.integers(1, 4))
def test_offloading_never_raises_memory_nor_lowers_step_time(offload, micro_batch, steps):
    cluster = _cluster()
    gb = micro_batch * steps
    base = estimate_training(GPT, cluster, _plan(0, micro_batch, gb))
    off = estimate_training(GPT, cluster, _plan(offload, micro_batch, gb))
    assert off.memory.peak_gib <= base.memory.peak_gib + 1e-9
    assert off.step_time_s >= base.step_time_s - 1e-12
    more = estimate_training(GPT, cluster, _plan(min(offload + 1, LAYERS - 1), micro_batch, gb))
    assert more.memory.peak_gib <= off.memory.peak_gib + 1e-9


def test_zero_layers_changes_nothing():
    cluster = _cluster()
    plain = TrainingPlan(tp=8, dp=1, seq_len=2048, global_batch=8, recompute="none")
    a = estimate_training(GPT, cluster, plain)
    b = estimate_training(GPT, cluster, plain.model_copy(update={"activation_offload_layers": 0}))
    assert a.step_time_s == b.step_time_s and a.memory.peak_gib == b.memory.peak_gib
    assert a.time_breakdown["activation_offload_wait"] == 0.0


def test_offloaded_layers_leave_the_device_but_one_reload():
    """N offloaded layers free N - 1 layers' stored activations at the peak (one reload is back before the last
    layer's backward, TE v2.8 AsyncDoubleBufferGroupOffloadHandler)."""
    cluster = _cluster()
    plan = _plan(10)
    p = PlanArrays.from_plans([plan])
    per_layer = float(activation_bytes_per_layer(GPT, p, plan_shapes(GPT, cluster, p))[0]) / GIB
    base = estimate_training(GPT, cluster, _plan(0)).memory.breakdown["activations"]
    off = estimate_training(GPT, cluster, plan).memory.breakdown["activations"]
    assert off == pytest.approx(base - (10 - RESIDENT_OFFLOADED_LAYERS) * per_layer)


@settings(max_examples=20, deadline=None)
@given(offload=st.integers(1, LAYERS - 1), slow=st.floats(0.05, 30.0), factor=st.floats(1.0, 100.0))
def test_a_slower_host_link_never_speeds_a_step(offload, slow, factor):
    fast = estimate_training(GPT, _cluster(slow * factor), _plan(offload)).step_time_s
    slower = estimate_training(GPT, _cluster(slow), _plan(offload)).step_time_s
    assert slower >= fast - 1e-12


def test_copies_hidden_by_compute_cost_nothing_and_a_slow_link_exposes_them():
    quick = estimate_training(GPT, _cluster(1e6), _plan(LAYERS - 1))
    assert quick.time_breakdown["activation_offload_wait"] == 0.0
    slow = estimate_training(GPT, _cluster(0.1), _plan(LAYERS - 1))
    assert slow.time_breakdown["activation_offload_wait"] > 0.0
    assert slow.step_time_s > quick.step_time_s


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"offload": LAYERS}, "--activation-offload-layers 24 must be 0..23"),
        ({"offload": -1}, "--activation-offload-layers -1 must be 0..23"),
        ({"offload": 4, "recompute": "selective"}, "needs --recompute none"),
        ({"offload": 4, "pp": 2, "tp": 4}, "needs --pp 1"),
    ],
)
def test_bad_input_names_the_field(kw, needle):
    with pytest.raises(FathomInputError, match="activation-offload-layers") as err:
        estimate_training(GPT, _cluster(), _plan(kw.pop("offload"), **kw))
    assert needle in str(err.value) and "\n" not in str(err.value)
