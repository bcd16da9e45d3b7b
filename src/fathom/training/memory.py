"""Memory per GPU during training, by component, on the fullest pipeline rank.

- Weights, gradients and optimizer states per parameter follow mixed-precision training as Megatron-LM runs
  it: 16-bit weights, fp32 gradient accumulation buffers ("main grads"), fp32 master weights and Adam moments,
  18 bytes per parameter in all (Rajbhandari et al. 2020 count 16 with 16-bit gradients; Megatron's
  distributed-optimizer guide and Korthikanti et al. 2022 Fig. 1 imply 18);
  ZeRO stage 1/2/3 shards optimizer states / gradients / weights over the DP (and CP) ranks;
  offload moves optimizer states to host memory or NVMe (ZeRO-Offload, ZeRO-Infinity).
- Activations per layer follow Korthikanti et al. 2022 (Sec. 4), generalised from their GPT layer to
  GQA/MLA attention, gated MLPs, optional dropout and fused attention: 34 s b h + 5 a s^2 b bytes for their
  GPT layer, with the TP-sharded and sequence-parallel terms divided by t. Selective recomputation drops the
  attention-core terms; full recomputation keeps only each layer's input. While a checkpointed layer runs its
  backward, its activations are rematerialised on top of the stored ones (Chen et al. 2016, arXiv:1604.06174,
  Sec. 4): one whole layer of one micro-batch under full recomputation, one attention core under selective.
  Korthikanti et al.'s formula leaves this transient out, so it has its own column (``recompute``) and the
  ``activations`` column stays theirs.
- FP8 (Transformer Engine) linears keep one FP8 copy of each input for the weight-gradient GEMM instead of the
  16-bit tensor (``fathom.training.fp8_casts.saved_gemm_input_bytes``); torchao's Float8Linear does not.
- Outside the layers, the first stage stores its embedding's saved tensors (dropout mask, BLOOM's embedding norm)
  for every micro-batch in flight, since activation checkpointing wraps only the transformer layers, and under
  DeepSpeed's pipeline engine a TP-partitioned copy of each stage output and the loaded micro-batches
  (``fathom.training.stage_activations``). Korthikanti et al.'s totals leave these out, so they have their own
  column (``outside_layers``).
- 1F1B keeps ``min(pp, m)`` micro-batches in flight on the first stage; interleaving multiplies that by
  ``1 + (p-1)/(p v)`` (Korthikanti et al. 2022, Sec. 4.2.3); ZB-H1 and ZB-1p keep the 1F1B peak, ZB-H2 and ZB-2p
  hold 2p - 1 micro-batches (Qi et al. 2024).
- On a device that runs eager PyTorch (a CPU, or a GPU profile: ``DeviceSpec.runs_eager``; dense layers)
  activations are what the reference eager layer's autograd saves, the head holds three fp32 vocab-wide
  tensors at the start of backward (``fathom.training.eager``).
- Fine-tuning levers (LoRA/QLoRA adapters, frozen layers, GaLore, pure 16-bit) change which parameters carry
  gradients and states and how wide they are: ``fathom.training.finetune.parameter_bytes``.
- Activation CPU offloading (Megatron-Core ``--cpu-offloading-num-layers``) moves the offloaded layers' stored
  activations to the host, all but the reload buffer in flight (``fathom.training.activation_offload``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import ATTENTION_KERNELS, SCHEDULES
from fathom.training.activation_offload import resident_layers
from fathom.training.eager import eager_head_saved_bytes, eager_layer
from fathom.training.finetune import ParameterBytes, adapter_activation_bytes, frozen_in_stage, parameter_bytes
from fathom.training.fp8_casts import saved_gemm_input_bytes
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes
from fathom.training.stage_activations import first_stage_outside_layers

# Bytes of optimizer state per parameter, master weights included (fp32 master + moments).
OPTIMIZER_STATE_BYTES = {
    "adamw": 12.0,  # fp32 master, m, v
    "adam-8bit": 6.0,  # fp32 master, 8-bit m and v (Dettmers et al. 2022)
    "adafactor": 8.0,  # fp32 master, factored second moment and bf16 momentum (Shazeer & Stern 2018)
    "sgd": 8.0,  # fp32 master and momentum
    # GaLore (Zhao et al. 2024): for the parameters it does not project (embeddings, norms, head), Adam or 8-bit
    # Adam; the projected matrices' low-rank states come from fathom.training.finetune.
    "galore": 12.0,
    "galore-8bit": 6.0,
}
# CUDA context, cuBLAS/cuDNN workspaces and NCCL channel buffers that every rank holds (measured ~1 GiB).
RUNTIME_RESERVED_BYTES = 1.0 * GIB
GRAD_BYTES = 4.0
DP_BUCKET_BYTES = 2 * 40e6  # two 40 MB gradient buckets in flight (Megatron/DDP default bucket size)


@dataclass(frozen=True)
class MemoryBreakdown:
    weights: np.ndarray
    gradients: np.ndarray
    optimizer: np.ndarray
    activations: np.ndarray
    comm_buffers: np.ndarray
    runtime: np.ndarray
    adapters: np.ndarray  # LoRA/QLoRA adapter weights (their gradients and states are in the columns above)
    # Activations rematerialised during backward beyond the stored ones (``recompute_workspace_bytes``), net of
    # what the peak stage already holds (the last stage's logits are gone before its layers recompute).
    recompute: np.ndarray
    # First-stage activations outside the transformer layers (embedding dropout mask and norm, the pipeline
    # engine's retained outputs and inputs: ``fathom.training.stage_activations``), net of the peak stage; like
    # ``recompute``, outside Korthikanti et al.'s formula, so ``activations`` stays theirs.
    outside_layers: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return (
            self.weights + self.gradients + self.optimizer + self.activations + self.comm_buffers + self.runtime
        ) + (self.adapters + self.recompute + self.outside_layers)


def activation_bytes_per_layer(
    model: ModelSpec, p: PlanArrays, s: PlanShapes, terms: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Stored activation bytes of one layer for one micro-batch (Korthikanti et al. 2022, generalised)."""
    full_layer, core = terms if terms is not None else _layer_activation_terms(model, p, s)
    only_input = s.tokens_sp * model.hidden_size * s.act_bytes
    return np.select([p.recompute == 0, p.recompute == 1], [full_layer, full_layer - core], only_input)


def recompute_workspace_bytes(
    model: ModelSpec, p: PlanArrays, s: PlanShapes, terms: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Activations rematerialised during backward on top of the stored ones: one checkpointed layer of one
    micro-batch under full recomputation, one layer's attention core under selective recomputation (Chen et al.
    2016, Sec. 4: a checkpointed segment is recomputed and held while its backward runs). Korthikanti et al.
    2022's activation formula counts only what is stored between forward and backward, so this is its own term."""
    full_layer, core = terms if terms is not None else _layer_activation_terms(model, p, s)
    return np.select([p.recompute == 0, p.recompute == 1], [0.0, core], full_layer)


def _layer_activation_terms(model: ModelSpec, p: PlanArrays, s: PlanShapes) -> tuple[np.ndarray, np.ndarray]:
    """(all activations autograd keeps for one layer and one micro-batch, the attention-core part of them)."""
    h = model.hidden_size
    tp = p.tp.astype(float)
    t, t_sp = s.tokens, s.tokens_sp
    nh, hd = model.num_heads, model.head_dim
    kv_local = np.maximum(model.num_kv_heads / tp, 1.0)
    if model.mla is not None:
        qk = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim
        q_dim, k_dim, v_dim = nh * qk / tp, nh * qk / tp, nh * model.mla.v_head_dim / tp
    else:
        q_dim, k_dim, v_dim = nh * hd / tp, kv_local * hd, kv_local * hd
    drop = 1.0 if model.hidden_dropout else 0.0
    # Inputs the linears keep only for their weight-gradient GEMM: 16-bit, or one FP8 copy each under Transformer
    # Engine's FP8 (fathom.training.fp8_casts.saved_gemm_input_bytes), no longer shared with other saved tensors.
    gemm_in = saved_gemm_input_bytes(p.precision, p.fp8_saved_inputs, s.act_bytes)
    own_copy = gemm_in != s.act_bytes
    fused = p.attention != ATTENTION_KERNELS.index("unfused")
    # Replicated across TP ranks unless sequence-parallel: norm inputs, the attention/MLP inputs, dropout masks.
    norm_in = model.norms_per_layer * t_sp * h * s.act_bytes
    # A parallel block's branches share one 16-bit norm output; in FP8 its QKV and FC1 linears keep a copy each.
    block_copies = np.where(own_copy, 2.0, 1.0 if model.parallel_block else 2.0)
    block_in = block_copies * t_sp * h * gemm_in
    masks = 2 * drop * t_sp * h
    # TP-sharded: Q, K, V, attention output (input of the output projection). A fused attention kernel keeps its
    # 16-bit output for its own backward (TE FusedAttnFunc and FlashAttention save q, k, v, out), so in FP8 the
    # projection's copy comes on top; the unfused core keeps its softmax output and V, not its output.
    qkv = t * (q_dim + k_dim + v_dim) * s.act_bytes
    attn_out_bytes = gemm_in + np.where(own_copy & fused, s.act_bytes, 0.0)
    attn_out = t * nh * (model.mla.v_head_dim if model.mla else hd) / tp * attn_out_bytes
    # Attention core: unfused keeps scores, softmax output and dropout mask (5 a s^2 b); fused keeps the
    # per-row log-sum-exp (fp32).
    heads_local = nh / tp
    scores = p.micro_batch * heads_local * (p.seq_len / p.cp) * p.seq_len
    unfused = (5.0 if drop else 2.0) * scores  # softmax out (2), dropout mask (1) and output (2)
    core = np.where(fused, t * heads_local * 4.0, unfused)
    # MLP: up-projection output(s), kept 16-bit by the activation function's backward, and the activation output
    # (= down-projection input, a linear's saved input).
    ffn = model.ffn_size / tp
    if model.moe is not None:
        routed = model.moe.top_k * model.moe.expert_ffn_size * (t_sp / t)
        shared = model.moe.num_shared_experts * model.moe.shared_ffn_size / tp
        ffn = (1 - s.moe_fraction) * ffn + s.moe_fraction * (routed + shared)
    mlp = t * ffn * ((2 if model.gated_mlp else 1) * s.act_bytes + gemm_in)
    return norm_in + block_in + masks + qkv + attn_out + core + mlp, core


def in_flight_micro_batches(p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Micro-batches whose activations the first pipeline stage holds at its peak (ZB-H2 warms up with
    2p - 1 of them, Qi et al. 2024 Sec. 2.2).

    Interleaved 1F1B: the first stage runs ``2(p - 1) + (v - 1) p`` warm-up chunk forwards and one more before
    its first backward (Megatron-LM ``schedules.py``), i.e. ``p + (p - 1) / v`` stages' worth of micro-batches
    (Korthikanti et al. 2022's ``1 + (p - 1) / (p v)`` factor), but never more than the step's ``m``
    micro-batches: with ``m <= p`` every chunk forward is a warm-up and the stage holds all ``m``.
    """
    pp = p.pp.astype(float)
    base = np.minimum(pp, s.micro_batches)
    interleave = np.minimum(1.0 + (pp - 1.0) / (pp * p.vpp), s.micro_batches / base)
    zb2 = np.minimum(2.0 * pp - 1.0, s.micro_batches)
    return np.select(
        [
            p.schedule == SCHEDULES.index("interleaved"),
            np.isin(p.schedule, [SCHEDULES.index("zero-bubble-2p"), SCHEDULES.index("zero-bubble-auto-2p")]),
        ],
        [base * interleave, zb2],
        base,
    )


def training_memory(
    model: ModelSpec, cluster: Cluster, p: PlanArrays, s: PlanShapes, pb: ParameterBytes | None = None
) -> MemoryBreakdown:
    # 16-bit weights (fp32 in fp32 training), fp32 main gradients and the optimizer's state bytes (fp32 master
    # included) of every trainable parameter, unless a fine-tuning lever says otherwise.
    pb = pb if pb is not None else parameter_bytes(model, p, s)
    shard = (p.dp * p.cp).astype(float)
    weights = pb.weights / np.where(p.zero >= 3, shard, 1.0)
    gradients = pb.gradients / np.where(p.zero >= 2, shard, 1.0)
    optimizer = pb.optimizer / np.where(p.zero >= 1, shard, 1.0)
    optimizer = np.where(p.offload > 0, 0.0, optimizer)
    terms = _layer_activation_terms(model, p, s)  # shared by the stored activations and the recompute workspace
    adapter_acts = adapter_activation_bytes(model, p, s) if (p.finetune > 0).any() else 0.0
    per_layer = activation_bytes_per_layer(model, p, s, terms) + adapter_acts
    eager = cluster.device.runs_eager and model.moe is None and model.mla is None
    if eager:  # eager PyTorch (a CPU, a profiled GPU) keeps what its autograd saves (fathom.training.eager)
        saved = eager_layer(model).saved_bytes(s.tokens, s.act_bytes) + adapter_acts
        per_layer = np.where(p.recompute == 0, saved, per_layer)
    layers = s.layers_per_stage - frozen_in_stage(p, s)  # frozen leading layers run forward without storing
    if (p.activation_offload_layers > 0).any():  # offloaded layers' activations wait on the host
        layers = resident_layers(p, s, layers)
    in_flight = in_flight_micro_batches(p, s)
    stored = per_layer * layers * in_flight
    # Logits of one micro-batch on the last stage (16-bit logits + fp32 softmax for the loss).
    logits = s.tokens * model.vocab_size / p.tp * (s.act_bytes + 4.0)
    workspace = recompute_workspace_bytes(model, p, s, terms)
    if eager:
        logits = eager_head_saved_bytes(model, s.tokens, s.act_bytes)
        workspace = np.where(p.recompute == 2, saved, workspace)
    last_stored = per_layer * layers  # the last stage runs each micro-batch's backward right after its forward
    acts = np.where(p.pp > 1, np.maximum(stored, last_stored + logits), stored + logits)
    # The first stage recomputes a layer while holding every in-flight micro-batch; the last stage's logits and
    # their fp32 softmax are freed by the time its layers recompute, so that stage holds the larger of the two.
    with_workspace = np.where(
        p.pp > 1,
        np.maximum(stored + workspace, last_stored + np.maximum(logits, workspace)),
        stored + np.maximum(logits, workspace),
    )
    recompute = with_workspace - acts
    # The first stage also holds its embedding's saved tensors and the pipeline engine's buffers for every
    # micro-batch in flight; with one stage, that stage is also the last and holds them beside the logits.
    outside = first_stage_outside_layers(model, p, s, in_flight)
    with_outside = np.where(
        p.pp > 1,
        np.maximum(stored + outside + workspace, last_stored + np.maximum(logits, workspace)),
        stored + outside + np.maximum(logits, workspace),
    )
    outside_layers = with_outside - with_workspace
    layer_full = s.layer_params_local * 2.0
    zero3_buffers = np.where(p.zero >= 3, 2 * layer_full, 0.0)  # prefetch: two layers gathered over DP (TP slice)
    tp_buffers = np.where(p.tp > 1, 2 * s.tokens * model.hidden_size * s.act_bytes, 0.0)
    # Gradient buckets hold (copies of) the gradients being reduced: never more than the rank's gradients.
    dp_buffers = np.where(p.dp * p.cp > 1, np.minimum(DP_BUCKET_BYTES, pb.gradients), 0.0)
    comm = zero3_buffers + tp_buffers + dp_buffers
    reserved = cluster.device.runtime_reserved_gib
    runtime = np.full_like(weights, RUNTIME_RESERVED_BYTES if reserved is None else reserved * GIB)
    return MemoryBreakdown(weights, gradients, optimizer, acts, comm, runtime, pb.adapters, recompute, outside_layers)
