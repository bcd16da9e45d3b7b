"""First-stage activations outside the transformer layers (fathom.training.stage_activations)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fathom.catalog.hardware import resolve_cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import PIPELINE_ENGINES, TrainingPlan
from fathom.training.estimator import estimate_training
from fathom.training.memory import in_flight_micro_batches, training_memory
from fathom.training.plans import PlanArrays
from fathom.training.shapes import plan_shapes
from fathom.training.stage_activations import (
    embedding_activation_bytes,
    first_stage_outside_layers,
    pipeline_input_buffer_bytes,
    pipeline_output_bytes,
)
from fathom.validation.training import validate_training
from small_gpt import GPT as SMALL_GPT

GPT = SMALL_GPT.model_copy(update={"tied_embeddings": True})
BLOOMISH = GPT.model_copy(update={"embedding_norm": True, "position_embedding": "alibi"})


def _shapes(model: ModelSpec = GPT, tp: int = 8, pp: int = 4, micro_batch: int = 1, global_batch: int = 64, **kw):
    cluster = resolve_cluster("a100-80gb", tp * pp)
    plan = TrainingPlan(
        tp=tp, pp=pp, dp=1, micro_batch=micro_batch, global_batch=global_batch, seq_len=2048, recompute="full",
        attention="unfused", **kw,
    )  # fmt: skip
    p = PlanArrays.from_plans([plan])
    return cluster, p, plan_shapes(model, cluster, p)


def test_embedding_dropout_mask_is_one_byte_per_element_and_split_by_sequence_parallelism():
    _, p, s = _shapes(sequence_parallel=False)
    assert float(embedding_activation_bytes(GPT, p, s)[0]) == 2048 * 4096
    _, p_sp, s_sp = _shapes(sequence_parallel=True)
    assert float(embedding_activation_bytes(GPT, p_sp, s_sp)[0]) == 2048 * 4096 / 8


def test_embedding_norm_keeps_its_full_width_input_and_fp32_statistics():
    """BLOOM's norm sits inside VocabParallelEmbedding after the TP all-reduce: no TP or SP split."""
    _, p, s = _shapes(sequence_parallel=True)
    extra = float(embedding_activation_bytes(BLOOMISH, p, s)[0] - embedding_activation_bytes(GPT, p, s)[0])
    assert extra == 2048 * 4096 * 2 + 2 * 4 * 2048


def test_frozen_embedding_saves_nothing():
    for kw in ({"finetune": "lora"}, {"frozen_layers": 2}):
        _, p, s = _shapes(**kw)
        assert float(embedding_activation_bytes(BLOOMISH, p, s)[0]) == 0.0


def test_megatron_engine_keeps_no_stage_outputs_and_deepspeed_keeps_a_tp_partition():
    _, p, s = _shapes()
    assert float(pipeline_output_bytes(GPT, p, s)[0]) == 0.0
    assert float(pipeline_input_buffer_bytes(p, s)[0]) == 0.0
    _, p_ds, s_ds = _shapes(pipeline_engine="deepspeed")
    mask = 2048.0**2
    assert float(pipeline_output_bytes(GPT, p_ds, s_ds)[0]) == 2048 * 4096 * 2 / 8 + mask
    _, p_tp1, s_tp1 = _shapes(tp=1, pipeline_engine="deepspeed")
    assert float(pipeline_output_bytes(GPT, p_tp1, s_tp1)[0]) == 2048 * 4096 * 2 + mask  # not partitioned
    # pp + 1 loaded micro-batches on the first stage (TrainSchedule.num_pipe_buffers), never fewer than two.
    per_slot = 2 * 8 * 2048 + mask
    assert float(pipeline_input_buffer_bytes(p_ds, s_ds)[0]) == 5 * per_slot
    _, p_m1, s_m1 = _shapes(global_batch=1, pipeline_engine="deepspeed")
    assert float(pipeline_input_buffer_bytes(p_m1, s_m1)[0]) == 2 * per_slot


def test_a_single_stage_keeps_no_stage_output():
    _, p, s = _shapes(pp=1, pipeline_engine="deepspeed")
    assert float(pipeline_output_bytes(GPT, p, s)[0]) == 0.0


def test_first_stage_peak_adds_the_outside_layers_column_and_leaves_korthikanti_activations_alone():
    cluster, p, s = _shapes(model=BLOOMISH, pipeline_engine="deepspeed")
    mem = training_memory(BLOOMISH, cluster, p, s)
    _, p_meg, s_meg = _shapes(model=BLOOMISH)
    base = training_memory(BLOOMISH, cluster, p_meg, s_meg)
    plain = training_memory(GPT, cluster, p_meg, s_meg)
    assert float(mem.activations[0]) == float(base.activations[0]) == float(plain.activations[0])
    outside = first_stage_outside_layers(BLOOMISH, p, s, in_flight_micro_batches(p, s))
    assert float(mem.outside_layers[0]) == pytest.approx(float(outside[0]))
    assert float(mem.total[0] - base.total[0]) == pytest.approx(float(outside[0] - base.outside_layers[0]))


def test_pipeline_engine_is_a_plan_choice_and_bad_values_are_rejected():
    assert PIPELINE_ENGINES == ("megatron", "deepspeed")
    assert TrainingPlan(seq_len=2048, global_batch=8).pipeline_engine == "megatron"
    with pytest.raises(ValidationError):
        TrainingPlan(seq_len=2048, global_batch=8, pipeline_engine="colossal")


@settings(max_examples=40, deadline=None)
@given(
    pp=st.sampled_from([1, 2, 4, 8]),
    micro_batch=st.sampled_from([1, 2, 4]),
    m_small=st.integers(1, 12),
    m_extra=st.integers(0, 12),
    engine=st.sampled_from(PIPELINE_ENGINES),
    model=st.sampled_from([GPT, BLOOMISH]),
    recompute=st.sampled_from(["none", "selective", "full"]),
)
def test_more_micro_batches_in_flight_never_lower_memory(pp, micro_batch, m_small, m_extra, engine, model, recompute):
    """More micro-batches per step (so as many or more in flight on the first stage) never lowers the peak."""
    cluster = resolve_cluster("a100-80gb", 8 * pp)

    def peak(m: int) -> float:
        plan = TrainingPlan(
            tp=8, pp=pp, dp=1, micro_batch=micro_batch, global_batch=m * micro_batch, seq_len=2048,
            recompute=recompute, attention="unfused", pipeline_engine=engine,
        )  # fmt: skip
        return float(estimate_training(model, cluster, plan).memory.peak_gib)

    assert peak(m_small + m_extra) >= peak(m_small) - 1e-9


@settings(max_examples=60, deadline=None)
@given(a=st.floats(0, 64), b=st.floats(0, 64), engine=st.sampled_from(PIPELINE_ENGINES))
def test_outside_layers_grow_with_micro_batches_in_flight(a, b, engine):
    _, p, s = _shapes(model=BLOOMISH, pipeline_engine=engine)
    lo, hi = sorted((a, b))
    assert (
        first_stage_outside_layers(BLOOMISH, p, s, np.array([hi]))[0]
        >= first_stage_outside_layers(BLOOMISH, p, s, np.array([lo]))[0]
    )


def test_bloom_prototype_memory_rows_are_scored_with_their_engine_and_embedding_norm():
    """BigScience's prototype tables (chronicles-prequel.md): fathom was 18.4% off on average before these terms."""
    rows = [r for r in validate_training() if r.row_id.startswith("bloom-proto") and r.metric == "peak_memory_gib"]
    assert len(rows) == 13 and all(r.error_pct is not None for r in rows)
    assert np.mean([abs(r.error_pct) for r in rows]) < 14.0
