"""vTrain's Megatron-DeepSpeed stack: gradients all-reduced after the last backward, and a four-HDR-port network.

The rows record both as published inputs (SOURCES.md, vTrain section); these tests keep the levers working and the
rows wired to them.
"""

from __future__ import annotations

import pytest

from fathom.catalog.hardware import get_system, resolve_cluster
from fathom.catalog.models import get_model
from fathom.costmodel.collectives import all_reduce_s
from fathom.specs.plan import TrainingPlan
from fathom.training.estimator import estimate_training
from fathom.validation.runs import load_runs
from fathom.validation.training import row_plan

PLAN = dict(seq_len=2048, global_batch=512, micro_batch=4, tp=1, pp=1, dp=64, zero=0, recompute="full",
            precision="fp16", attention="unfused", sequence_parallel=False)  # fmt: skip


def _step(overlap: bool, system: str = "dgx-a100", **plan) -> dict[str, float]:
    cluster = resolve_cluster("a100-80gb", 64, system=system)
    est = estimate_training(
        get_model("megatron-gpt-3.6b"), cluster, TrainingPlan(**{**PLAN, **plan, "overlap_grad_reduce": overlap})
    )
    return est.time_breakdown


def test_gradient_reduction_after_backward_is_fully_exposed():
    hidden, exposed = _step(True), _step(False)
    assert exposed["dp_comm"] > 2 * hidden["dp_comm"]
    # Only the DP term moves: compute and the other traffic are the same plan.
    for key in ("gemm", "attention", "recompute", "tp_comm", "optimizer"):
        assert exposed[key] == pytest.approx(hidden[key])


def test_four_port_network_halves_cross_node_bandwidth_only():
    dgx, hgx = get_system("dgx-a100"), get_system("hgx-a100-4hdr")
    assert hgx.inter_bytes_per_s == pytest.approx(dgx.inter_bytes_per_s / 2)
    assert hgx.intra_bytes_per_s == dgx.intra_bytes_per_s
    size = 2048 * 4 * 3072 * 2  # one micro-batch's TP all-reduce at h = 3072
    assert all_reduce_s(hgx, size, 8, 1) == pytest.approx(all_reduce_s(dgx, size, 8, 1))  # inside a node
    assert all_reduce_s(hgx, size, 16, 1) > 1.5 * all_reduce_s(dgx, size, 16, 1)  # across two nodes
    tp16 = {"tp": 16, "dp": 4}
    assert _step(False, "hgx-a100-4hdr", **tp16)["tp_comm"] > 1.5 * _step(False, "dgx-a100", **tp16)["tp_comm"]


def test_vtrain_rows_record_their_stack():
    rows = [r for r in load_runs() if r["id"].startswith("vtrain-multi-")]
    assert len(rows) == 109
    for row in rows:
        assert row["system"] == "hgx-a100-4hdr", row["id"]
        assert row_plan(row).overlap_grad_reduce is False, row["id"]
    single = load_runs("vtrain")
    assert len(single) == 1440 and not any(row_plan(r).overlap_grad_reduce for r in single)


def test_blank_column_keeps_the_overlapped_default():
    others = [r for r in load_runs() if r.complete and r["overlap_grad_reduce"] == ""]
    assert others and all(row_plan(r).overlap_grad_reduce for r in others)
