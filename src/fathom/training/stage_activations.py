"""Activations the first pipeline stage stores outside its transformer layers.

Korthikanti et al. 2022's per-layer formula (fathom.training.memory) counts only the transformer layers; what the
input embedding keeps for backward is left out of their totals (cli99/llm-analysis d841e40, llm_analysis/analysis.py
line 1624, citing arXiv:2205.05198; their Figure 1 values are the layer formula alone). Two things are stored there
for every micro-batch in flight on the first stage:

- The embedding block runs outside activation checkpointing, so its own saved tensors stay for every micro-batch
  whatever the recompute level: Megatron-Core checkpoints only the layers of ``TransformerBlock`` and calls the
  embedding before it (NVIDIA/Megatron-LM d98e8a64dd, megatron/core/models/gpt/gpt_model.py line 354); DeepSpeed's
  ``PipelineModule`` checkpoints only layers whose class matches ``ParallelTransformerLayerPipe``
  (microsoft/DeepSpeed 2151c787a, deepspeed/runtime/pipe/module.py ``_is_checkpointable``), so Megatron-DeepSpeed's
  ``EmbeddingPipe`` runs plainly. Kept: the embedding dropout's mask (one byte per element; Megatron-Core drops out
  after the sequence-parallel scatter, language_model_embedding.py lines 143-156, so it is 1/t with SP), and with
  BLOOM's ``--embed-layernorm`` the norm's input and fp32 mean/rstd; that norm sits inside
  ``VocabParallelEmbedding`` after the TP all-reduce, so full width (bigscience-workshop/Megatron-DeepSpeed
  ae6277f5, megatron/mpu/layers.py lines 191 and 240-246). A frozen embedding (LoRA, frozen leading layers)
  produces no tensor that needs a gradient, so nothing is saved.
- The pipeline engine's handle on each stage output (``pipeline_engine``). Megatron-LM pseudo-frees the output's
  data once it is sent and keeps only its graph (schedules.py ``deallocate_output_tensor``, since 86da10e9d9,
  2021-12; megatron/training/argument_utils.py sets ``deallocate_pipeline_outputs``): nothing. DeepSpeed's
  ``PipelineEngine`` keeps a TP-partitioned copy of every stage output until its backward (engine.py lines
  634-657; the whole output when TP is 1), plus the attention mask that Megatron-DeepSpeed's ``GPTModelPipe`` carries
  through the pipeline ([1, 1, s, s] bool, pretrain_gpt.py ``get_batch_pipe`` at ae6277f5), and on the first stage
  its loaded micro-batches (token ids, position ids, mask) in ``num_pipe_buffers = max(2, min(p + 1, m))`` slots
  that only a later load overwrites (schedule.py ``TrainSchedule``; the first stage never runs
  ``_exec_send_grads``, which is what frees input buffers).
"""

from __future__ import annotations

import numpy as np

from fathom.specs.model import ModelSpec
from fathom.specs.plan import FINETUNES, PIPELINE_ENGINES
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes

MASK_BYTES = 1.0  # torch.bool dropout and attention masks
STAT_BYTES = 4.0  # a layernorm's fp32 mean and rstd per token
INDEX_BYTES = 8.0  # int64 token and position ids


def embedding_activation_bytes(model: ModelSpec, p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Bytes the embedding block saves for backward for one micro-batch on the first stage."""
    h = model.hidden_size
    dropout_mask = (MASK_BYTES * s.tokens_sp * h) if model.hidden_dropout else 0.0 * s.tokens
    norm = (s.tokens * h * s.act_bytes + 2 * STAT_BYTES * s.tokens) if model.embedding_norm else 0.0 * s.tokens
    trained = (p.finetune == FINETUNES.index("none")) & (p.frozen_layers == 0)
    return np.where(trained, dropout_mask + norm, 0.0)


def pipeline_output_bytes(model: ModelSpec, p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Bytes the pipeline engine keeps per in-flight micro-batch for a first stage that is not also the last."""
    deepspeed = p.pipeline_engine == PIPELINE_ENGINES.index("deepspeed")
    output = s.tokens * model.hidden_size * s.act_bytes / p.tp
    mask = MASK_BYTES * p.seq_len.astype(float) ** 2
    return np.where(deepspeed & (p.pp > 1), output + mask, 0.0)


def pipeline_input_buffer_bytes(p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Micro-batches DeepSpeed's engine keeps loaded on the first stage (ids, positions, attention mask)."""
    deepspeed = p.pipeline_engine == PIPELINE_ENGINES.index("deepspeed")
    slots = np.maximum(2.0, np.minimum(p.pp + 1.0, s.micro_batches))
    per_slot = 2 * INDEX_BYTES * p.micro_batch * p.seq_len + MASK_BYTES * p.seq_len.astype(float) ** 2
    return np.where(deepspeed, slots * per_slot, 0.0)


def first_stage_outside_layers(model: ModelSpec, p: PlanArrays, s: PlanShapes, in_flight: np.ndarray) -> np.ndarray:
    """All first-stage activation bytes outside the transformer layers with ``in_flight`` micro-batches held."""
    per_micro_batch = embedding_activation_bytes(model, p, s) + pipeline_output_bytes(model, p, s)
    return per_micro_batch * in_flight + pipeline_input_buffer_bytes(p, s)
