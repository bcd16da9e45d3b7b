"""Offloaded inference (FlexGen-style weight and KV streaming over the host link): memory placement and step time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.inference.offload import OffloadStepModel
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.hardware import GIB
from fathom.specs.serving import ServingPlan

RTX = resolve_cluster("rtx-4090", 1)
L70, L7 = get_model("llama-2-70b"), get_model("llama-2-7b")


def offload(model, plan: ServingPlan, cluster=RTX, deployed: int = 1) -> OffloadStepModel:
    return OffloadStepModel(InferenceStepModel(model, cluster, plan), cluster, deployed)


def test_offloading_makes_70b_fit_a_24gb_gpu():
    with pytest.raises(FathomInputError, match="does not fit"):
        InferenceStepModel(L70, RTX, ServingPlan())
    cost = offload(L70, ServingPlan(offload_weights="cpu"))
    mem = cost.memory
    assert 0.0 < mem.resident_weight_fraction < 0.2
    assert cost.kv_capacity_tokens >= L70.max_seq_len  # the automatic fraction leaves one longest sequence
    assert mem.weights_bytes + mem.kv_cache_bytes <= RTX.device.memory_bytes
    assert mem.offloaded_weights_bytes / GIB > 100  # bf16 70B: ~128 GiB of weights, most of them on the host


def test_automatic_fraction_streams_what_does_not_fit_to_fill_the_device_with_kv():
    """FlexGen-style choice by decode throughput: weights that cannot all stay cost KV room byte for byte while saving
    streamed bytes, and with the batch KV-bound the room wins."""
    for dtype in ("bf16", "int4"):
        auto = offload(L70, ServingPlan(offload_weights="cpu", weight_dtype=dtype))
        assert auto.memory.resident_weight_fraction < 0.05
        assert auto.kv_capacity_tokens >= L70.max_seq_len
        given = offload(L70, ServingPlan(offload_weights="cpu", weight_dtype=dtype, resident_weight_fraction=0.1))
        assert given.memory.resident_weight_fraction == 0.1  # a given fraction is kept
        assert auto.kv_capacity_tokens > given.kv_capacity_tokens


def test_automatic_fraction_with_a_capped_batch_is_the_largest_leaving_one_sequence():
    """One sequence at a time: more KV room buys nothing, so as much weight stays as leaves one longest sequence."""
    plan = dict(offload_weights="cpu", weight_dtype="int4", max_batch=1)
    auto = offload(L70, ServingPlan(**plan)).memory.resident_weight_fraction
    below = offload(L70, ServingPlan(**plan, resident_weight_fraction=auto - 0.02))
    assert below.kv_capacity_tokens > L70.max_seq_len
    try:
        higher = offload(L70, ServingPlan(**plan, resident_weight_fraction=auto + 0.02))
    except FathomInputError:
        return  # no KV room at all
    assert higher.kv_capacity_tokens < L70.max_seq_len  # a few blocks, not one longest sequence


def test_offloaded_is_slower_than_resident_when_both_fit():
    resident = InferenceStepModel(L7, RTX, ServingPlan())
    half = offload(L7, ServingPlan(offload_weights="cpu", resident_weight_fraction=0.5))
    auto = offload(L7, ServingPlan(offload_weights="cpu"))
    decode = np.full(8, 1000.0)
    assert half.step_time_s([], [], decode) > 2 * resident.step_time_s([], [], decode)
    assert auto.memory.resident_weight_fraction == 1.0  # 7B fits: nothing streams
    assert auto.step_time_s([], [], decode) == pytest.approx(resident.step_time_s([], [], decode))
    # streaming 6.3 GB of weights over PCIe 4.0 x16 bounds the step from below
    assert half.step_time_s([], [], decode) >= half.memory.offloaded_weights_bytes / RTX.device.host_link_bytes_per_s


def test_nvme_is_slower_than_host_memory():
    plan = dict(weight_dtype="int4", resident_weight_fraction=0.3)
    cpu = offload(L70, ServingPlan(offload_weights="cpu", **plan))
    nvme = offload(L70, ServingPlan(offload_weights="nvme", **plan))
    decode = np.full(4, 500.0)
    assert nvme.step_time_s([], [], decode) > cpu.step_time_s([], [], decode)
    assert nvme.placement()["weights_nvme_gib"] > 0 and nvme.placement()["weights_host_gib"] == 0


@settings(max_examples=60, deadline=None)
@given(
    f=st.tuples(st.floats(0.0, 0.6), st.floats(0.0, 0.6)),
    decodes=st.integers(0, 16),
    context=st.integers(1, 3000),
    prefill=st.integers(0, 2048),
    kv=st.sampled_from(["none", "cpu"]),
)
def test_more_resident_weight_never_slows_a_step(f, decodes, context, prefill, kv):
    lo, hi = sorted(f)
    pt, pc = ([float(prefill)], [0.0]) if prefill else ([], [])
    dc = np.full(decodes, float(context))
    times = [
        offload(L7, ServingPlan(offload_weights="cpu", offload_kv=kv, resident_weight_fraction=x)).step_time_s(
            pt, pc, dc
        )
        for x in (lo, hi)
    ]
    assert times[1] <= times[0] + 1e-12


def test_offloaded_kv_grows_the_cache_and_costs_link_time():
    on_gpu = offload(L70, ServingPlan(offload_weights="cpu", weight_dtype="int4", resident_weight_fraction=0.3))
    on_host = offload(L70, ServingPlan(offload_weights="cpu", weight_dtype="int4", resident_weight_fraction=0.3,
                                       offload_kv="cpu"))  # fmt: skip
    assert on_host.kv_capacity_tokens > 10 * on_gpu.kv_capacity_tokens
    short, long = (on_host.step_time_s([], [], np.full(64, c)) for c in (100.0, 4000.0))
    assert long > short  # every decode's context crosses the link


def test_host_memory_bounds_what_is_offloaded():
    offload(L70, ServingPlan(offload_weights="cpu"))  # one GPU of the node: its whole host memory
    with pytest.raises(FathomInputError, match="does not fit anywhere"):
        offload(L70, ServingPlan(offload_weights="cpu"), deployed=8)  # 8 GPUs share 512 GiB: 64 GiB each
    offload(L70, ServingPlan(offload_weights="nvme"), deployed=8)  # NVMe holds it instead


def test_cpu_device_has_nothing_to_offload():
    with pytest.raises(FathomInputError, match="nothing to offload"):
        InferenceStepModel(L7, resolve_cluster("cpu", 1), ServingPlan(offload_weights="cpu"))


BASE = ["serve", "--model", "llama-2-70b", "--gpu", "rtx-4090", "--offline", "--num-requests", "4",
        "--input-len", "256", "--output-len", "8"]  # fmt: skip


def test_cli_json_has_the_placement_and_keeps_its_keys(capsys):
    assert run(BASE + ["--offload-weights", "cpu", "--precision", "int4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["completed"] == 4 and "ttft_s" in data and "kv_cache_gib" in data
    placement = data["memory_placement"]
    assert placement["offload_weights"] == "cpu" and placement["weights_host_gib"] > 0
    assert placement["weights_device_gib"] + placement["kv_device_gib"] < 24


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--offload-weights", "disk"], "--offload-weights"),
        (["--offload-kv", "nvme"], "--offload-kv"),
        (["--resident-weight-fraction", "0.5"], "--resident-weight-fraction"),
        (["--offload-weights", "cpu", "--resident-weight-fraction", "1.5"], "--resident-weight-fraction"),
    ],
)
def test_bad_offload_flags_exit_2_naming_the_flag(capsys, extra, flag):
    assert run(BASE + extra) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
