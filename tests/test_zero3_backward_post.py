"""FSDP's BACKWARD_POST prefetch (``zero3_gather="backward-post"``): the backward re-gathers are exposed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.specs.plan import ZERO3_GATHERS, TrainingPlan
from fathom.training.communication import DataParallelComm
from fathom.training.estimator import estimate_training
from fathom.training.plans import PlanArrays
from fathom.training.step_time import _zero3_exposed


def _exposed(gather_kind: str, gather: float, reduce: float, compute: float, layers: float) -> float:
    p = PlanArrays.from_plans([TrainingPlan(seq_len=2048, global_batch=8, dp=8, zero=3, zero3_gather=gather_kind)])
    one = lambda x: np.array([x], dtype=float)  # noqa: E731
    dp = DataParallelComm(one(0.0), one(2 * gather + reduce), one(gather), one(reduce))
    return float(_zero3_exposed(p, dp, one(compute), one(layers))[0])


@settings(max_examples=50, deadline=None)
@given(
    gather=st.floats(1e-3, 1.0),
    reduce=st.floats(1e-3, 2.0),
    compute=st.floats(1e-3, 10.0),
    layers=st.sampled_from([1.0, 2.0, 24.0, 80.0]),
)
def test_backward_post_exposes_the_backward_gathers(gather, reduce, compute, layers):
    """One gather pass is never hidden; the forward gathers and reduce-scatters overlap as under prefetch, so the
    policy costs at least a gather pass less the first unit's share, and never less than prefetch."""
    post = _exposed("backward-post", gather, reduce, compute, layers)
    prefetch = _exposed("prefetch", gather, reduce, compute, layers)
    assert post >= gather
    assert post >= prefetch - 1e-12
    if compute >= 2 * gather + reduce:  # compute covers all the traffic: only the gather pass is added
        assert post - prefetch == pytest.approx(gather * (1.0 - 1.0 / layers))


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_backward_post_changes_only_zero3(zero):
    model = get_model("llama-2-13b")
    cluster = resolve_cluster("h100-sxm", 16)
    base = dict(seq_len=2048, global_batch=32, dp=16, micro_batch=2, zero=zero, recompute="none")
    prefetch = estimate_training(model, cluster, TrainingPlan(**base))
    post = estimate_training(model, cluster, TrainingPlan(**base, zero3_gather="backward-post"))
    if zero < 3:
        assert post.step_time_s == prefetch.step_time_s
    else:
        assert post.time_breakdown["dp_comm"] > prefetch.time_breakdown["dp_comm"]
        assert post.step_time_s > prefetch.step_time_s
        # The other parts of the step do not move.
        assert post.time_breakdown["gemm"] == prefetch.time_breakdown["gemm"]


def test_backward_post_is_a_plan_choice_and_bad_values_are_rejected():
    assert "backward-post" in ZERO3_GATHERS
    assert ZERO3_GATHERS.index("prefetch") == 0 and ZERO3_GATHERS.index("per-parameter-sync") == 1  # codes kept
    with pytest.raises(ValidationError):
        TrainingPlan(seq_len=2048, global_batch=8, zero3_gather="backward-pre")
