"""Compute time of one transformer layer for one micro-batch on one GPU, forward and backward.

Each layer is a list of GEMMs (with their shapes after tensor/expert parallel sharding), one attention core,
and memory-bound kernels (norms, residual adds, activation, rotary, dropout). Backward GEMMs are priced with
their own shapes: the input gradient (m x n) @ (n x k) and the weight gradient (k x m) @ (m x n).
On a device that runs its ops inline (a CPU, eager PyTorch), the memory-bound passes and the per-op host cost
are those of the reference eager layer (``fathom.training.eager``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.costmodel.kernels import (
    BYTES,
    attention_flops,
    attention_s,
    eager_elementwise_s,
    first_touch_s,
    gemm_s,
    memory_bound_s,
)
from fathom.specs.hardware import DeviceSpec
from fathom.specs.model import ModelSpec
from fathom.specs.plan import ATTENTION_KERNELS, TRAIN_PRECISIONS
from fathom.training.eager import eager_head_ops, eager_layer
from fathom.training.fp8_casts import fp8_cast_s
from fathom.training.moe_host import collapse, graphs_capture_attention, graphs_capture_layer, moe_block_ops
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes


@dataclass(frozen=True)
class LayerCompute:
    """Seconds per layer per micro-batch (arrays over plans)."""

    gemm_fwd: np.ndarray
    gemm_bwd: np.ndarray
    attn_fwd: np.ndarray
    attn_bwd: np.ndarray
    other_fwd: np.ndarray  # memory-bound kernels
    other_bwd: np.ndarray
    head_fwd: np.ndarray  # LM head + loss, on the last stage, per micro-batch
    head_bwd: np.ndarray
    host_fwd: np.ndarray  # time for the host to issue the layer's forward ops (the CPU-bound floor)
    host_bwd: np.ndarray
    gemm_wgrad: np.ndarray  # the weight-gradient share of gemm_bwd (skipped for frozen weights)
    head_wgrad: np.ndarray  # the same for the LM head
    # Backward of the column-parallel (TP-sharded output) GEMMs, whose input-gradient collectives Megatron runs
    # asynchronously: weight-gradient and input-gradient GEMM seconds (fathom.training.step_time).
    column_wgrad: np.ndarray | float = 0.0
    column_dgrad: np.ndarray | float = 0.0
    # The routed experts' share of the above (their grouped GEMMs and the activation/permutation traffic of their
    # token copies, MoE layers' share included): the work dropless routing piles onto the busiest EP rank
    # (fathom.training.moe_imbalance): GEMM forward, backward and its weight-gradient part; memory-bound fwd/bwd.
    expert_gemm_fwd: np.ndarray | float = 0.0
    expert_gemm_bwd: np.ndarray | float = 0.0
    expert_gemm_wgrad: np.ndarray | float = 0.0
    expert_mem_fwd: np.ndarray | float = 0.0
    expert_mem_bwd: np.ndarray | float = 0.0

    @property
    def fwd(self) -> np.ndarray:
        return self.gemm_fwd + self.attn_fwd + self.other_fwd

    @property
    def bwd(self) -> np.ndarray:
        return self.gemm_bwd + self.attn_bwd + self.other_bwd


def _gemm_by_precision(dev: DeviceSpec, codes: np.ndarray, m, n, k, batch=1.0) -> np.ndarray:
    """GEMM time with each plan's own precision (loop over the few precisions present, not the plans)."""
    out = np.zeros(np.broadcast(codes, m, n, k).shape)
    for code in np.unique(codes):
        sel = codes == code
        out = np.where(sel, gemm_s(dev, TRAIN_PRECISIONS[int(code)], m, n, k, batch), out)
    return out


def _gemm_set(dev, codes, shapes: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward, backward and weight-gradient (part of backward) time of a list of (m, n, k, batch) GEMMs."""
    fwd = bwd = wgrad = 0.0
    for m, n, k, batch in shapes:
        fwd = fwd + _gemm_by_precision(dev, codes, m, n, k, batch)
        w = _gemm_by_precision(dev, codes, k, n, m, batch)
        bwd = bwd + _gemm_by_precision(dev, codes, m, k, n, batch) + w
        wgrad = wgrad + w
    return np.asarray(fwd), np.asarray(bwd), np.asarray(wgrad)


def _attention_gemms(model: ModelSpec, t: np.ndarray, tp: np.ndarray) -> list[tuple]:
    h, nh, nkv, hd = model.hidden_size, model.num_heads, model.num_kv_heads, model.head_dim
    if model.mla is not None:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        q = (
            [(t, nh * qk / tp, h, 1.0)]
            if not m.q_lora_rank
            else [(t, m.q_lora_rank, h, 1.0), (t, nh * qk / tp, m.q_lora_rank, 1.0)]
        )
        return q + [
            (t, m.kv_lora_rank + m.qk_rope_head_dim, h, 1.0),
            (t, nh * (m.qk_nope_head_dim + m.v_head_dim) / tp, m.kv_lora_rank, 1.0),
            (t, h, nh * m.v_head_dim / tp, 1.0),
        ]
    kv_local = np.maximum(nkv / tp, 1.0)  # KV heads are replicated when tp exceeds their number
    return [(t, (nh / tp + 2 * kv_local) * hd, h, 1.0), (t, h, nh * hd / tp, 1.0)]


def _mlp_gemms(model: ModelSpec, t, ffn_local, batch=1.0) -> list[tuple]:
    up = ffn_local * (2 if model.gated_mlp else 1)
    return [(t, up, model.hidden_size, batch), (t, model.hidden_size, ffn_local, batch)]


def _parallel_block_gemms(model: ModelSpec, dev: DeviceSpec, codes, t, tp) -> tuple:
    """Parallel attention + MLP block (GPT-J, PaLM; MegaScale Sec. 3.1): both branches read the same normalised
    input, so the QKV and MLP up-projections run as one GEMM of their summed width (Chowdhery et al. 2022, PaLM
    Sec. 2). Returned as (attention, MLP) forward/backward/weight-gradient times, the fused GEMM split between the
    branches by width so the totals add up."""
    qkv, out = _attention_gemms(model, t, tp)
    up, down = _mlp_gemms(model, t, model.ffn_size / tp)
    fused = (t, qkv[1] + up[1], model.hidden_size, 1.0)
    in_f, in_b, in_w = _gemm_set(dev, codes, [fused])
    share = qkv[1] / (qkv[1] + up[1])
    out_f, out_b, out_w = _gemm_set(dev, codes, [out])
    down_f, down_b, down_w = _gemm_set(dev, codes, [down])
    return (share * in_f + out_f, share * in_b + out_b, share * in_w + out_w,
            (1 - share) * in_f + down_f, (1 - share) * in_b + down_b, (1 - share) * in_w + down_w)  # fmt: skip


def _attention_core(model: ModelSpec, dev: DeviceSpec, p: PlanArrays, s: PlanShapes, codes) -> tuple:
    """Forward/backward seconds of softmax(QK^T)V for one layer (sliding-window layers averaged in)."""
    tp = p.tp.astype(float)
    seq = p.seq_len.astype(float)
    heads = model.num_heads / tp
    if model.mla is not None:
        qk_dim = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim
        v_dim = model.mla.v_head_dim
    else:
        qk_dim = v_dim = model.head_dim
    batch_q = s.tokens  # b * s / cp queries; each sees on average half the (causal) keys
    full_keys = seq / 2.0
    w = float(model.sliding_window or 0)
    window_keys = np.where(seq > w, w * (1 - w / (2 * seq)), full_keys) if w else full_keys
    frac_sw = model.num_sliding_window_layers / model.num_layers
    keys = (1 - frac_sw) * full_keys + frac_sw * window_keys
    flash_f = attention_flops(1.0, batch_q, keys, heads, qk_dim, v_dim)
    flash_fwd = flash_bwd = np.zeros_like(flash_f)
    for code in np.unique(p.attention):
        kernel = ATTENTION_KERNELS[int(code)]
        if kernel == "unfused":
            continue
        sel = p.attention == code
        flash_fwd = np.where(sel, attention_s(dev, kernel, flash_f, seq), flash_fwd)
        flash_bwd = np.where(sel, attention_s(dev, kernel, flash_f, seq, backward=True), flash_bwd)
    flash = (flash_fwd, flash_bwd)
    # Unfused (pre-FlashAttention Megatron): batched GEMMs over the full s x s scores, then the fused
    # scale-mask-softmax kernel (read 2 B, write 2 B per score) and, with dropout, a dropout kernel (read 2,
    # write 2 plus a 1 B mask). Backward: dropout (read grad and mask, write grad: 5 B) and softmax (read grad
    # and probabilities, write grad: 6 B).
    bh = p.micro_batch * heads
    sq = seq / p.cp
    gf, gb, _ = _gemm_set(dev, codes, [(sq, seq, qk_dim, bh), (sq, v_dim, seq, bh)])
    scores = bh * sq * seq
    drop = 1.0 if model.hidden_dropout else 0.0
    fwd_bytes, bwd_bytes = (4.0 + 5.0 * drop) * scores, (6.0 + 5.0 * drop) * scores
    unfused = (gf + memory_bound_s(dev, fwd_bytes, 1 + drop), gb + memory_bound_s(dev, bwd_bytes, 1 + drop))
    fused = p.attention != ATTENTION_KERNELS.index("unfused")
    fwd = np.where(fused, flash[0], unfused[0])
    bwd = np.where(fused, flash[1], unfused[1])
    return fwd, bwd


def _elementwise_bytes(model: ModelSpec, p: PlanArrays, s: PlanShapes, ffn_local) -> tuple:
    """Forward HBM bytes and kernel count of a layer's memory-bound kernels (backward: about twice)."""
    h = model.hidden_size
    tp = p.tp.astype(float)
    norms = model.norms_per_layer * 2 * s.tokens_sp * h * s.act_bytes  # read x, write y
    residual = 2 * 3 * s.tokens_sp * h * s.act_bytes  # two adds: read 2, write 1
    dropout = (2 * 2.5 * s.tokens_sp * h * s.act_bytes) if model.hidden_dropout else 0.0
    act = (3 if model.gated_mlp else 2) * s.tokens * ffn_local * s.act_bytes
    rope = 0.0
    if model.position_embedding == "rope":
        rope = 2 * s.tokens * (model.num_heads + model.num_kv_heads) * model.head_dim / tp * s.act_bytes
    kernels = model.norms_per_layer + 2 + 1 + (model.position_embedding == "rope") + 2 * model.hidden_dropout
    moe = 0.0
    if model.moe is not None:
        # Token permutation for dispatch (read each token, write its top-k copies) and the weighted
        # un-permutation for combine (the reverse), plus router softmax/top-k: about six kernels.
        moe = s.moe_fraction * 2 * (1 + model.moe.top_k) * s.tokens_sp * h * s.act_bytes
        kernels = kernels + 6 * s.moe_fraction
    return norms + residual + dropout + act + rope + moe, kernels


def layer_compute(model: ModelSpec, dev: DeviceSpec, p: PlanArrays, s: PlanShapes) -> LayerCompute:
    codes = p.precision
    tp = p.tp.astype(float)
    t = s.tokens
    attn_gemms = _attention_gemms(model, t, tp)
    up, down = _mlp_gemms(model, t, model.ffn_size / tp)
    # Column-parallel GEMMs (attention input projections, MLP up) priced apart: Megatron overlaps their backward
    # TP collectives with their gradient GEMMs (fathom.training.step_time). MoE experts are not TP-sharded.
    in_f, in_b, in_w = _gemm_set(dev, codes, attn_gemms[:-1])
    out_f, out_b, out_w = _gemm_set(dev, codes, attn_gemms[-1:])
    up_f, up_b, up_w = _gemm_set(dev, codes, [up])
    down_f, down_b, down_w = _gemm_set(dev, codes, [down])
    attn_f, attn_b, attn_w = in_f + out_f, in_b + out_b, in_w + out_w
    dense_f, dense_b, dense_w = up_f + down_f, up_b + down_b, up_w + down_w
    column_share = 1.0 - s.moe_fraction if model.moe is not None else 1.0
    col_w = in_w + column_share * up_w
    col_d = (in_b - in_w) + column_share * (up_b - up_w)
    if model.parallel_block and model.moe is None and model.mla is None:
        attn_f, attn_b, attn_w, dense_f, dense_b, dense_w = _parallel_block_gemms(model, dev, codes, t, tp)
    mlp_f, mlp_b, mlp_w = dense_f, dense_b, dense_w
    ffn_avg = model.ffn_size / tp
    expert = (0.0,) * 5  # routed experts' GEMM fwd, bwd, wgrad and memory-bound fwd, bwd
    if model.moe is not None:
        moe = model.moe
        routed_tokens = s.tokens_sp * moe.top_k  # token copies this GPU's experts process (balanced routing)
        # Each local expert multiplies only its own tokens: many small GEMMs (a grouped GEMM), not one big one.
        local_experts = moe.num_experts / p.ep.astype(float)
        per_expert = routed_tokens / local_experts
        experts_f, experts_b, experts_w = _gemm_set(
            dev, codes, _mlp_gemms(model, per_expert, moe.expert_ffn_size, batch=local_experts)
        )
        router_f, router_b, router_w = _gemm_set(dev, codes, [(s.tokens_sp, moe.num_experts, model.hidden_size, 1.0)])
        shared_f = shared_b = shared_w = 0.0
        if moe.num_shared_experts:
            shared_f, shared_b, shared_w = _gemm_set(
                dev, codes, _mlp_gemms(model, t, moe.shared_ffn_size * moe.num_shared_experts / tp)
            )
        fr = s.moe_fraction
        mlp_f = (1 - fr) * dense_f + fr * (experts_f + router_f + shared_f)
        mlp_b = (1 - fr) * dense_b + fr * (experts_b + router_b + shared_b)
        mlp_w = (1 - fr) * dense_w + fr * (experts_w + router_w + shared_w)
        ffn_avg = (1 - fr) * ffn_avg + fr * (routed_tokens / t * moe.expert_ffn_size)
        # Activation of the routed copies plus their permutation (as in _elementwise_bytes), no extra kernels.
        act_bytes = (3 if model.gated_mlp else 2) * routed_tokens * moe.expert_ffn_size * s.act_bytes
        permute_bytes = 2 * (1 + moe.top_k) * s.tokens_sp * model.hidden_size * s.act_bytes
        routed_mem = fr * (act_bytes + permute_bytes)
        expert = (fr * experts_f, fr * experts_b, fr * experts_w, memory_bound_s(dev, routed_mem, 0),
                  memory_bound_s(dev, 2 * routed_mem, 0))  # fmt: skip
    core_f, core_b = _attention_core(model, dev, p, s, codes)
    ew_bytes, ew_kernels = _elementwise_bytes(model, p, s, ffn_avg)
    other_f = memory_bound_s(dev, ew_bytes, ew_kernels)
    other_b = memory_bound_s(dev, 2 * ew_bytes, 2 * ew_kernels)
    fp8 = codes == TRAIN_PRECISIONS.index("fp8")
    if fp8.any():  # FP8 linears first quantise their 16-bit operands (fathom.training.fp8_casts)
        cast_f, cast_b = fp8_cast_s(dev, _fp8_cast_sets(model, p, s, tp))
        other_f, other_b = other_f + np.where(fp8, cast_f, 0.0), other_b + np.where(fp8, cast_b, 0.0)
    # LM head and loss on the last stage: logits GEMM (vocab sharded by TP) and fp32 softmax-cross-entropy.
    # FP8 recipes leave the output layer in 16 bits (Transformer Engine replaces the transformer's linears only;
    # Megatron's output layer and llm-foundry's tied-embedding logits are plain 16-bit GEMMs).
    v_local = model.vocab_size / tp
    head_codes = np.where(fp8, TRAIN_PRECISIONS.index("bf16"), codes)
    head_f, head_b, head_w = _gemm_set(dev, head_codes, [(t, v_local, model.hidden_size, 1.0)])
    logits_bytes = t * v_local * (s.act_bytes + 3 * BYTES["fp32"])
    loss_f, loss_b = memory_bound_s(dev, logits_bytes, 3), memory_bound_s(dev, logits_bytes, 2)
    per_logit = dev.efficiency.loss_ns_per_element  # a CPU's measured exp/log cost, where profiled
    if per_logit:
        logits = t * v_local
        loss_f = np.maximum(loss_f, logits * per_logit.get("fwd", 0.0) * 1e-9)
        loss_b = np.maximum(loss_b, logits * per_logit.get("bwd", 0.0) * 1e-9)
    head_f, head_b = head_f + loss_f, head_b + loss_b
    host_f, host_b = _host_issue_s(model, dev, p, s, len(_attention_gemms(model, t, tp)))
    if dev.runs_eager and model.moe is None and model.mla is None:
        # Eager PyTorch (a CPU, or a GPU as fathom profile measured it): the reference layer's own ops and passes
        # (dense layers).
        fused = not dev.ops_run_inline  # a GPU's fused norms and dropout (fathom.training.eager)
        eager = eager_layer(model, fused)
        host_op = dev.efficiency.host_op_us * 1e-6  # per dispatched op, fixed costs included: no launch term
        traffic = eager.traffic_bytes(s.tokens, s.act_bytes)
        other_f, other_b = _eager_elementwise(dev, codes, traffic), _eager_elementwise(dev, codes, 2 * traffic)
        rng_ns = dev.efficiency.dropout_rng_ns_per_element  # the masks' random numbers, drawn by the cores
        if rng_ns and model.hidden_dropout:  # two masks per layer (attention and MLP branch), forward only
            other_f = other_f + 2.0 * model.hidden_size * s.tokens * rng_ns * 1e-9
        ops_f, ops_b = eager.ops(s.act_bytes)
        host_f, host_b = np.broadcast_to(ops_f * host_op, t.shape), np.broadcast_to(ops_b * host_op, t.shape)
        head_ops = eager_head_ops(model, s.act_bytes, fused)
        if dev.ops_run_inline:  # the cores issue and run each op: the issue cost adds
            head_f, head_b = head_f + head_ops[0] * host_op, head_b + head_ops[1] * host_op
        else:  # a GPU runs behind the host: the head takes at least the time to issue its ops
            head_f, head_b = np.maximum(head_f, head_ops[0] * host_op), np.maximum(head_b, head_ops[1] * host_op)
        # The embedding's gradient: a zero-filled (vocab, hidden) buffer the tokens' rows are added into; with tied
        # embeddings autograd sums it with the LM head's weight gradient into a third one (read 2, write 1). Each
        # is a new allocation, a fresh mapping once past glibc's threshold (``first_touch_s``).
        table = model.vocab_size * model.hidden_size * s.act_bytes
        tied = 1.0 if model.tied_embeddings else 0.0
        head_b = head_b + memory_bound_s(dev, (1.0 + 3.0 * tied) * table, 0) + (1.0 + tied) * first_touch_s(dev, table)
    gemm_f, gemm_b = attn_f + mlp_f, attn_b + mlp_b
    return LayerCompute(
        gemm_f, gemm_b, core_f, core_b, other_f, other_b, head_f, head_b, host_f, host_b, attn_w + mlp_w, head_w,
        col_w, col_d, *expert,
    )  # fmt: skip


_ACTIVATION_DTYPE = {"bf16": "bf16", "fp16": "fp16", "fp8": "bf16"}  # 16-bit activations; FP8 recipes keep bf16


def _eager_elementwise(dev: DeviceSpec, codes: np.ndarray, nbytes) -> np.ndarray:
    """Eager elementwise passes at the measured share of bandwidth for the activations' dtype (``fathom profile``
    fits fp32 as ``efficiency.memory`` and 16-bit types in ``efficiency.elementwise``), as the serving step does."""
    out = memory_bound_s(dev, nbytes, 0)
    for precision, activations in _ACTIVATION_DTYPE.items():
        chosen = codes == TRAIN_PRECISIONS.index(precision)
        if chosen.any():
            out = np.where(chosen, eager_elementwise_s(dev, activations, nbytes, 0), out)
    return out


def _host_issue_s(model: ModelSpec, dev: DeviceSpec, p: PlanArrays, s: PlanShapes, attn_gemms: int) -> tuple:
    """Host seconds to issue one layer's forward and backward ops. Each counted op (a GEMM, an attention-core kernel,
    a memory-bound kernel, a TP collective) costs ``host_op_us``; autograd issues about twice as many backward.
    A region replayed as a CUDA graph costs one op; MoE blocks are counted by ``fathom.training.moe_host``."""
    op_us = dev.efficiency.host_op_us
    tp_comm = np.where(p.tp > 1, 1, 0)
    dropout = 1 if model.hidden_dropout else 0
    core = np.where(p.attention != ATTENTION_KERNELS.index("unfused"), 1, 5)
    rope = 1 if model.position_embedding == "rope" else 0
    # Attention sublayer: GEMMs, core, every norm but the pre-MLP one, rotary, a residual add, dropout, a collective.
    attn = attn_gemms + core + (model.norms_per_layer - 1) + rope + 1 + dropout + tp_comm
    attn = collapse(attn, graphs_capture_attention(p))
    mlp_common = 1 + 1 + dropout + tp_comm  # pre-MLP norm, residual add, dropout, TP collective
    dense_f = np.where(graphs_capture_layer(p), 1.0, attn + mlp_common + 3) * op_us * 1e-6  # + 2 GEMMs, activation
    if model.moe is None:
        return dense_f, 2.0 * dense_f
    block_f = moe_block_ops(model.moe, p).forward_seconds(op_us, dev.efficiency.kernel_launch_us)
    moe_f = (attn + mlp_common) * op_us * 1e-6 + block_f
    host_f = (1.0 - s.moe_fraction) * dense_f + s.moe_fraction * moe_f
    return host_f, 2.0 * host_f


def _fp8_cast_sets(model: ModelSpec, p: PlanArrays, s: PlanShapes, tp) -> list[tuple]:
    """The layer's FP8 GEMMs for ``fp8_cast_s``: attention projections, and the MLP (dense, or for the MoE layer
    fraction the routed experts' grouped GEMMs and the shared experts). The router stays in 16 bits."""
    t = s.tokens
    sets = [(1.0, _attention_gemms(model, t, tp))]
    if model.moe is None:
        return sets + [(1.0, _mlp_gemms(model, t, model.ffn_size / tp))]
    moe, fr = model.moe, s.moe_fraction
    local_experts = moe.num_experts / p.ep.astype(float)
    per_expert = s.tokens_sp * moe.top_k / local_experts
    sets += [(1.0 - fr, _mlp_gemms(model, t, model.ffn_size / tp)),
             (fr, _mlp_gemms(model, per_expert, moe.expert_ffn_size, batch=local_experts))]  # fmt: skip
    if moe.num_shared_experts:
        sets.append((fr, _mlp_gemms(model, t, moe.shared_ffn_size * moe.num_shared_experts / tp)))
    return sets
