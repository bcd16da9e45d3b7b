"""Recomputation workspace in the training memory model (fathom.training.memory)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.specs.plan import TrainingPlan
from fathom.training.memory import activation_bytes_per_layer, recompute_workspace_bytes, training_memory
from fathom.training.plans import PlanArrays
from fathom.training.shapes import plan_shapes
from small_gpt import GPT as SMALL_GPT

GPT = SMALL_GPT


def _memory(recompute: str, pp: int = 1, micro_batch: int = 1, attention: str = "unfused"):
    cluster = resolve_cluster("a100-80gb", 8 * pp)
    plan = TrainingPlan(
        tp=8,
        pp=pp,
        dp=1,
        micro_batch=micro_batch,
        global_batch=8 * micro_batch,
        seq_len=2048,
        recompute=recompute,
        attention=attention,
        sequence_parallel=False,
    )
    p = PlanArrays.from_plans([plan])
    s = plan_shapes(GPT, cluster, p)
    return GPT, p, s, training_memory(GPT, cluster, p, s)


def test_no_workspace_without_recomputation():
    *_, mem = _memory("none")
    assert float(mem.recompute[0]) == 0.0


def test_full_recompute_holds_one_whole_layer_beyond_the_stored_inputs():
    """Pipeline first stage: stored layer inputs plus one layer's full activations (Chen et al. 2016)."""
    model, p, s, mem = _memory("full", pp=4, micro_batch=2)
    full_layer = float(recompute_workspace_bytes(model, p, s)[0])
    stored_input = float(activation_bytes_per_layer(model, p, s)[0])
    assert full_layer > 10 * stored_input  # a layer keeps far more than its input
    assert float(mem.recompute[0]) == np.float64(full_layer)


def test_selective_workspace_is_the_attention_core():
    model, p, s, _ = _memory("selective")
    _, p_none, s_none, _ = _memory("none")
    core = float(recompute_workspace_bytes(model, p, s)[0])
    kept = float(activation_bytes_per_layer(model, p, s)[0])
    assert np.isclose(kept + core, float(activation_bytes_per_layer(model, p_none, s_none)[0]))


def test_workspace_is_not_counted_in_korthikanti_activations():
    """The activation column stays Korthikanti et al.'s stored activations; the workspace is its own column."""
    *_, mem = _memory("full", pp=4)
    assert float(mem.total[0]) > float(
        mem.weights[0] + mem.gradients[0] + mem.optimizer[0] + mem.activations[0] + mem.comm_buffers[0]
    )


def test_single_stage_logits_and_workspace_do_not_stack():
    """Without pipelining the head's logits are freed before the layers recompute: the peak holds the larger."""
    model, p, s, mem = _memory("full")
    logits = float(s.tokens[0] * model.vocab_size / 8 * (float(s.act_bytes[0]) + 4.0))
    workspace = float(recompute_workspace_bytes(model, p, s)[0])
    assert np.isclose(float(mem.recompute[0]), max(workspace - logits, 0.0))


@settings(max_examples=25, deadline=None)
@given(
    recompute=st.sampled_from(["none", "selective", "full"]),
    pp=st.sampled_from([1, 2, 4]),
    micro_batch=st.sampled_from([1, 2, 4]),
    attention=st.sampled_from(["unfused", "flash2"]),
)
def test_workspace_never_negative_and_grows_with_micro_batch(recompute, pp, micro_batch, attention):
    *_, mem = _memory(recompute, pp, micro_batch, attention)
    assert float(mem.recompute[0]) >= 0.0
    if recompute == "full":
        *_, bigger = _memory(recompute, pp, 2 * micro_batch, attention)
        assert float(bigger.recompute[0]) >= float(mem.recompute[0])


@settings(max_examples=40, deadline=None)
@given(pp=st.sampled_from([2, 4, 8]), vpp=st.sampled_from([2, 3]), m_per_pp=st.sampled_from([0.5, 1, 2, 4]))
def test_interleaved_stage_never_holds_more_micro_batches_than_the_step_has(pp, vpp, m_per_pp):
    """Interleaved 1F1B's warm-up (Megatron-LM schedules.py) is capped by the step's micro-batches: with m <= p
    every chunk forward runs before the first backward and the first stage holds exactly m micro-batches."""
    from fathom.training.memory import in_flight_micro_batches

    m = max(1, int(pp * m_per_pp))
    cluster = resolve_cluster("a100-80gb", 8 * pp)
    plan = TrainingPlan(tp=8, pp=pp, dp=1, vpp=vpp, schedule="interleaved", micro_batch=1, global_batch=m,
                        seq_len=2048, recompute="full")  # fmt: skip
    p = PlanArrays.from_plans([plan])
    s = plan_shapes(GPT.model_copy(update={"num_layers": 12 * pp}), cluster, p)
    held = float(in_flight_micro_batches(p, s)[0])
    assert held <= m + 1e-9
    expected = min(pp + (pp - 1) / vpp, m)  # warm-up chunk forwards plus one, in stages' worth
    assert abs(held - expected) < 1e-9
