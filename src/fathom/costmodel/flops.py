"""FLOPs of training, in the conventions the field reports.

Model FLOPs (for MFU) follow Narayanan et al. 2021 / Chowdhery et al. 2022 (PaLM, App. B): 6 FLOPs per
active matmul parameter per token (forward 2, backward 4), including the LM head, plus attention's
2 * 2 * s * (d_qk + d_v)/2 per head per token and layer counted over the full (non-causal) sequence, or over
the window for sliding-window layers. Megatron-LM counts causal attention (half the scores) since its 2025
releases: ``causal=True`` gives that convention. Embedding lookups, norms and softmax are not counted.
Hardware FLOPs (for HFU) add what recomputation executes again: the layers' forward, never the LM head
(Narayanan et al. 2021, eq. 3).

Fine-tuning does less than 6 FLOPs per parameter, and its model FLOPs count only what it needs
(``finetune_flops_per_token``): frozen leading layers run forward only, and LoRA computes no weight gradient
of its frozen base weights or LM head (Hu et al. 2021). Counting 6 per parameter there would put MFU above
100% once most layers are frozen. The adapters' own GEMMs (2 r (k + n) per token and matrix, under 1% of
the base GEMM's 2 k n at the usual ranks) are not counted.
"""

from __future__ import annotations

import numpy as np

from fathom.specs.model import ModelSpec


def matmul_params_active(model: ModelSpec) -> float:
    """Parameters in a matmul for each token (embedding lookup excluded, tied head included)."""
    head = model.vocab_size * model.hidden_size if model.tied_embeddings else 0
    return float(model.num_active_params - model.embedding_params + head)


def head_params(model: ModelSpec) -> float:
    return float(model.vocab_size * model.hidden_size)


def attention_flops_per_token_fwd(model: ModelSpec, seq_len, causal: bool = False) -> np.ndarray:
    """Forward attention-score and attention-value FLOPs per token, summed over layers."""
    seq = np.asarray(seq_len, dtype=float)
    if model.mla is not None:
        dims = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim + model.mla.v_head_dim
    else:
        dims = 2 * model.head_dim
    w = float(model.sliding_window or 0)
    window_keys = np.minimum(seq, w) if w else seq
    full_layers = model.num_layers - model.num_sliding_window_layers
    keys_sum = full_layers * seq + model.num_sliding_window_layers * window_keys
    return 2.0 * keys_sum * model.num_heads * dims * (0.5 if causal else 1.0)


def model_flops_per_token(model: ModelSpec, seq_len, causal: bool = False) -> np.ndarray:
    """Forward + backward model FLOPs per trained token (3x the forward)."""
    return 3.0 * (2.0 * matmul_params_active(model) + attention_flops_per_token_fwd(model, seq_len, causal))


def recompute_flops_per_token(model: ModelSpec, seq_len, recompute_code, causal: bool = False) -> np.ndarray:
    """FLOPs executed again per token: the layers' forward (full) or the attention core (selective)."""
    attn = attention_flops_per_token_fwd(model, seq_len, causal)
    layers_fwd = 2.0 * (matmul_params_active(model) - head_params(model)) + attn
    code = np.asarray(recompute_code)
    return np.select([code == 2, code == 1], [layers_fwd, attn], 0.0)


def finetune_flops_per_token(
    model: ModelSpec, seq_len, trainable_fraction, base_weight_grads, head_trainable, causal: bool = False
) -> np.ndarray:
    """Model FLOPs per token that training needs: the forward; the input gradients down to the lowest trainable
    layer (``trainable_fraction`` of the layers, the top ones); the weight gradients of trainable weights (the
    layers' base weights when ``base_weight_grads``, the LM head when ``head_trainable``). Full training
    (fraction 1, both flags true) gives ``model_flops_per_token``."""
    f = np.asarray(trainable_fraction, dtype=float)
    head = head_params(model)
    layers = matmul_params_active(model) - head
    attn = attention_flops_per_token_fwd(model, seq_len, causal)
    forward = 2.0 * (layers + head) + attn
    input_grads = np.where(f > 0, 2.0 * head, 0.0) + f * (2.0 * layers + 2.0 * attn)
    weight_grads = np.where(base_weight_grads, f * 2.0 * layers, 0.0) + np.where(head_trainable, 2.0 * head, 0.0)
    return forward + input_grads + weight_grads
