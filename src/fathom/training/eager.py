"""One transformer layer as eager PyTorch runs it (a CPU, or a GPU as ``fathom profile`` measured it).

Eager mode neither fuses nor frees what autograd holds, so a step costs what the reference implementation
(``fathom.profiling.torch_model``, the model ``fathom check`` times) actually dispatches:

- **ops**: every ATen op the layer dispatches, views included, forward and backward. Each costs the host
  ``host_op_us`` (measured per dispatched op on a minimal eager layer by ``fathom profile``). The counts below
  are those of the reference layer under ``TorchDispatchMode``, piece by piece (``tests/test_profile.py``
  recounts them): a bias-free skeleton of four linear layers, SDPA, the residual adds and their views is
  29 forward / 53 backward ops; each norm adds its own (PyTorch's CPU RMSNorm is decomposed into pow, mean,
  add, rsqrt and two muls); SwiGLU, RoPE (neg, cat, two muls, an add, per Q and K), QK-norm, dropout and
  bias gradients add theirs.
- **memory traffic**: bytes of the memory-bound ops (each reads its inputs and writes its output once; the
  unfused norm and RoPE make several passes); backward about twice the forward traffic.
- **saved activations**: the tensors autograd keeps for backward. A view keeps its whole base alive, so the
  fused QKV output stays whole; the unfused RMSNorm keeps its normalised input, its rsqrt and its output
  (LayerNorm: output, mean and rstd); RoPE multiplies by constant tables, so only its results (SDPA's inputs)
  stay; SDPA keeps its output and log-sum-exp (its CPU kernel writes the output in (batch, seq, heads) order,
  so the reshape for the output projection is a view); SwiGLU keeps the up-projection output, the SiLU output
  and their product. ``tests/test_profile.py`` sums the storages autograd's saved-tensor hooks see.

Per token, in elements of the activation dtype (``q``/``kv``: query and key/value widths, ``f``: FFN width).

With 16-bit activations (pure bf16 training, ``fathom check train --precision bf16``) ``nn.RMSNorm`` computes in
fp32: it upcasts its input and downcasts its result (two more ops forward, three backward, per norm), and what it
saves for backward stays fp32, as does SDPA's log-sum-exp. LayerNorm's CPU and CUDA kernels take bf16 directly.
The loss upcasts the logits (one op each way). ``tests/test_profile.py`` recounts both dtypes.

On a GPU (``fused``; counted on an H100 with torch 2.11, ``validation/data/gpu_checks/h100/cuda_op_counts.json``,
held by ``tests/test_gpu_checks_h100.py``) some of these ops are single kernels: ``nn.RMSNorm`` dispatches its
fused op (two ops forward, one backward, at any dtype: no casts), dropout its fused kernel (one op each way per
mask). SDPA has no fused kernel for fp32 with grouped KV heads there and falls back to its math path (scores,
softmax and the products as separate ops: 31 more forward, 27 more backward). The tensors saved and the passes
are still priced as the CPU layer's (not recounted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.specs.model import ModelSpec

_SKELETON_OPS = (29, 53)  # four bias-free linears (t, mm, views), split, transposes, SDPA, two residual adds
_NORM_OPS = {"rmsnorm": (7, 16), "layernorm": (1, 1)}  # dispatched by nn.RMSNorm / nn.LayerNorm on a CPU
_NORM_PASSES = {"rmsnorm": 7, "layernorm": 3}  # h-wide passes: pow, mean read, two muls (3 each: r, w) / 2 r 1 w
_HEAD_OPS = (10, 18)  # embedding, RoPE tables, LM head, cross-entropy (the final norm is added to these)
_LEARNED_POSITION_OPS = (3, 4)  # the position table's lookup and its add
_DECODE_HEAD_OPS = 5  # an inference step's embedding, last-position select, LM head (transpose, GEMM) and argmax
_FUSED_NORM_OPS = {"rmsnorm": (2, 1), "layernorm": (1, 1)}  # on a GPU (module docstring)
_QK_NORM_OPS = {False: (17, 36), True: (5, 8)}  # QK-norm's two RMSNorms over the heads and their reshapes
_DROPOUT_OPS = {False: (4, 1), True: (1, 1)}  # per mask: the CPU's decomposed dropout, a GPU's fused kernel
_MATH_SDPA_OPS = (31, 27)  # a GPU's SDPA math fallback (fp32, grouped KV heads) beyond its fused kernel
_MATH_SDPA_INFERENCE_OPS = 23  # the same without autograd (decoding)
_RMS_CAST_OPS = (2, 3)  # per RMSNorm on 16-bit activations: the fp32 upcast and the downcast, and their gradients
# Per RMSNorm element on 16-bit activations, bytes beyond the 7 passes of 2 bytes: the upcast (r 2, w 4), then
# pow (r 4, w 4), mean (r 4), the normalising mul (r 4, w 4) and the downcast (r 4, w 2) in fp32, the weight's mul
# (r 2, w 2) in 16 bits: 36 bytes, 22 more, i.e. 11 more 2-byte elements.
_RMS_CAST_TRAFFIC = 11


@dataclass(frozen=True)
class EagerLayer:
    """One layer of one micro-batch: dispatched ops, memory-bound bytes and saved bytes, per token."""

    ops_fwd: int
    ops_bwd: int
    traffic_per_token: float  # forward memory-bound elements read + written (backward: twice)
    saved_per_token: float  # elements autograd keeps from forward to backward
    # 16-bit activations only (module docstring): RMSNorm's casts and what stays fp32.
    cast_ops: tuple[int, int] = (0, 0)  # more ops, forward and backward
    cast_traffic_per_token: float = 0.0  # more forward elements moved (backward: twice)
    fp32_saved_per_token: float = 0.0  # elements of saved_per_token kept in fp32
    fp32_ops: tuple[int, int] = (0, 0)  # more ops with fp32 activations (a GPU's SDPA math fallback)

    def ops(self, act_bytes) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward ops at each plan's activation width (bytes per element)."""
        sixteen = np.asarray(act_bytes, dtype=float) < 4.0
        extra = [np.where(sixteen, c, f) for c, f in zip(self.cast_ops, self.fp32_ops, strict=True)]
        return self.ops_fwd + extra[0], self.ops_bwd + extra[1]

    def traffic_bytes(self, tokens, act_bytes) -> np.ndarray:
        """Forward memory-bound bytes of ``tokens`` tokens (backward: twice)."""
        act = np.asarray(act_bytes, dtype=float)
        return tokens * act * (self.traffic_per_token + (act < 4.0) * self.cast_traffic_per_token)

    def saved_bytes(self, tokens, act_bytes) -> np.ndarray:
        """Bytes autograd keeps for ``tokens`` tokens: the fp32 part stays 4 bytes wide under 16-bit activations."""
        act = np.asarray(act_bytes, dtype=float)
        wide = np.where(act < 4.0, self.fp32_saved_per_token, 0.0)
        return tokens * ((self.saved_per_token - wide) * act + wide * 4.0)


def eager_layer(model: ModelSpec, fused: bool = False) -> EagerLayer:
    """The reference layer as a CPU runs it, or (``fused``) as a GPU does (module docstring)."""
    h, f = model.hidden_size, model.ffn_size
    q, kv = model.num_heads * model.head_dim, model.num_kv_heads * model.head_dim
    norms = 1 if model.parallel_block else 2  # the reference block's norms
    norm_f, norm_b = _norm_ops(model, fused)
    norm_passes = _NORM_PASSES.get(model.norm_type, _NORM_PASSES["layernorm"])
    rope = model.position_embedding == "rope"
    biased = (model.qkv_bias, model.attn_out_bias, model.mlp_bias, model.mlp_bias)
    ops_f = _SKELETON_OPS[0] + norms * norm_f + (3 if model.gated_mlp else 1) + 16 * rope
    ops_b = _SKELETON_OPS[1] + norms * norm_b + (4 if model.gated_mlp else 1) + 18 * rope + 3 * sum(biased)
    ops_b -= 2 * model.parallel_block  # one residual add's gradient fan-out fewer
    qk_f, qk_b = _QK_NORM_OPS[fused]
    drop_f, drop_b = _DROPOUT_OPS[fused]
    ops_f += qk_f * model.qk_norm + 2 * drop_f * model.hidden_dropout
    ops_b += qk_b * model.qk_norm + 2 * drop_b * model.hidden_dropout
    # Forward traffic: norms, two residual adds (r 2, w 1), RoPE (neg 1, cat 2, two muls 2 each, add 3 per
    # width), the MLP activation (SwiGLU: SiLU r 1 w 1, product r 2 w 1), QK-norm as a norm over Q and K,
    # dropout (r 1, w 1 and a 1-byte mask, per residual branch).
    traffic = norms * norm_passes * h + 6 * h + 10 * (q + kv) * rope + (5 if model.gated_mlp else 2) * f
    traffic += _NORM_PASSES["rmsnorm"] * (q + kv) * model.qk_norm + 2 * 2.25 * h * model.hidden_dropout
    # Saved: the layer input and (sequential blocks) the mid-layer residual, each norm's tensors, the QKV
    # output, RoPE's results, SDPA's output and log-sum-exp (one fp32 per head), the MLP's up output,
    # activation and product; QK-norm's normalised Q and K with their rsqrt; dropout's 1-byte masks.
    rms = model.norm_type == "rmsnorm"
    norm_saved = 2 * h + 1 if rms else h + 2
    saved = (1 if model.parallel_block else 2) * h + norms * norm_saved + (q + 2 * kv)
    saved += (q + kv) * rope + q + model.num_heads + (4 if model.gated_mlp else 2) * f
    qk_saved = (q + kv + model.num_heads + model.num_kv_heads) * model.qk_norm
    saved += qk_saved + 2 * 0.25 * h * model.hidden_dropout
    rms_norms = norms * rms + 2 * model.qk_norm  # nn.RMSNorm modules: the block's, and QK-norm's two
    cast_ops = (0, 0) if fused else (_RMS_CAST_OPS[0] * rms_norms, _RMS_CAST_OPS[1] * rms_norms)
    cast_traffic = _RMS_CAST_TRAFFIC * (norms * rms * h + (q + kv) * model.qk_norm)
    fp32_saved = norms * rms * norm_saved + qk_saved + model.num_heads  # RMSNorm's tensors, the log-sum-exp
    math_sdpa = fused and model.num_kv_heads != model.num_heads
    # QK-norm's outputs need two copies fewer on the math path, each way (recounted on the H100).
    math_ops = tuple(n - 2 * model.qk_norm for n in _MATH_SDPA_OPS) if math_sdpa else (0, 0)
    return EagerLayer(ops_f, ops_b, float(traffic), float(saved), cast_ops, float(cast_traffic), float(fp32_saved),
                      math_ops)  # fmt: skip


def _norm_ops(model: ModelSpec, fused: bool) -> tuple[int, int]:
    """Forward and backward ops of one of the model's norms."""
    table = _FUSED_NORM_OPS if fused else _NORM_OPS
    return table.get(model.norm_type, table["layernorm"])


def eager_head_ops(model: ModelSpec, act_bytes=4.0, fused: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward ops outside the layers: embedding (and learned positions), final norm, LM head and the
    loss; with 16-bit activations the final RMSNorm's casts (not ``fused``) and the loss's upcast of the logits."""
    norm_f, norm_b = _norm_ops(model, fused)
    learned = model.position_embedding == "learned"
    sixteen = np.asarray(act_bytes, dtype=float) < 4.0
    rms = model.norm_type == "rmsnorm" and not fused
    fwd = _HEAD_OPS[0] + norm_f + learned * _LEARNED_POSITION_OPS[0] + sixteen * (1 + rms * _RMS_CAST_OPS[0])
    bwd = _HEAD_OPS[1] + norm_b + learned * _LEARNED_POSITION_OPS[1] + sixteen * (1 + rms * _RMS_CAST_OPS[1])
    return fwd, bwd


def eager_head_saved_bytes(model: ModelSpec, tokens, act_bytes):
    """Peak bytes of the head at the start of backward: the final norm's saved tensors, and three fp32
    (tokens x vocab) tensors while the log-softmax gradient is formed (its saved output, the incoming
    gradient, the gradient it returns); the logits themselves are freed once the log-softmax has run."""
    norm_saved = 3 if model.norm_type == "rmsnorm" else 2
    return tokens * (norm_saved * model.hidden_size * act_bytes + 3 * model.vocab_size * 4.0)


def eager_decode_head_ops(model: ModelSpec, sixteen_bit: bool, fused: bool = False) -> int:
    """Ops an inference step dispatches outside the layers, once per step: the embedding (and learned positions),
    the final norm (no autograd detach; in 16-bit RMSNorm's casts, not ``fused``), the last position's select, the
    LM head's transpose and GEMM, the logits' fp32 cast (none on fp32 weights) and the greedy argmax."""
    rms = model.norm_type == "rmsnorm"
    norm = _norm_ops(model, fused)[0] - rms + 2 * (rms and sixteen_bit and not fused)
    learned = _LEARNED_POSITION_OPS[0] * (model.position_embedding == "learned")
    return _DECODE_HEAD_OPS + sixteen_bit + norm + learned


def eager_decode_ops(model: ModelSpec, sixteen_bit: bool, fused: bool = False) -> int:
    """Ops one layer dispatches per inference step (prefill or decode, no autograd): the training forward's
    ops less autograd's detaches (one, and one per RMSNorm), plus the KV-cache writes (four slices, two
    copies) and, in 16-bit, RMSNorm's upcast and downcast (not ``fused``)."""
    rms_norms = (1 if model.parallel_block else 2) * (model.norm_type == "rmsnorm")
    layer = eager_layer(model, fused)
    casts = 0 if fused else 2 * rms_norms * sixteen_bit
    math_sdpa = 0 if sixteen_bit or not layer.fp32_ops[0] else _MATH_SDPA_INFERENCE_OPS
    # Dropout dispatches nothing in eval mode, on any device. QK-norm drops three ops beyond training (recounted on
    # the H100 and this CPU) and, unfused, its two RMSNorms' detaches; in 16 bits they cast up and down.
    dropout = 2 * _DROPOUT_OPS[fused][0] * model.hidden_dropout
    qk = (3 if fused else 5 - 2 * _RMS_CAST_OPS[0] * sixteen_bit) * model.qk_norm
    return layer.ops_fwd - 1 - rms_norms + 6 + casts + math_sdpa - dropout - qk
