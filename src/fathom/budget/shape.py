"""A dense decoder shape for a parameter count, at a standard aspect ratio.

GPT-3 175B (12288 / 96) and Llama 3.1 405B (16384 / 126) both have ~128 hidden units per layer; fathom keeps
``hidden = 128 x layers`` (Kaplan et al. 2020 find loss flat over a wide range of aspect ratios), head size 128,
grouped-query attention with 8 KV heads and a SwiGLU MLP of 3.5 x hidden (Llama 3's 14336 / 4096), so one layer
holds about ``2 h^2 (1 + 8/heads) + 3 x 3.5 h^2`` parameters, plus a 128,256-token vocabulary (untied).
"""

from __future__ import annotations

import math

from fathom.errors import FathomInputError
from fathom.specs.model import ModelSpec

ASPECT = 128
HEAD_DIM = 128
KV_HEADS = 8
FFN_RATIO = 3.5
VOCAB = 128256


def dense_shape(params: float, name: str = "budget-dense") -> ModelSpec:
    """The shape with ``hidden = 128 x layers`` whose parameter count is closest to ``params``."""
    if not params > 0:
        raise FathomInputError(f"params: {params} must be positive")
    best = None
    for layers in range(2, 400):
        heads = max(1, round(ASPECT * layers / HEAD_DIM))
        heads = heads if heads < KV_HEADS else round(heads / KV_HEADS) * KV_HEADS
        hidden, kv = heads * HEAD_DIM, math.gcd(heads, KV_HEADS)
        ffn = int(math.ceil(FFN_RATIO * hidden / 256) * 256)
        spec = ModelSpec(
            name=name,
            family="llama",
            num_layers=layers,
            hidden_size=hidden,
            num_heads=heads,
            num_kv_heads=kv,
            head_dim=HEAD_DIM,
            ffn_size=ffn,
            vocab_size=VOCAB,
            max_seq_len=8192,
        )
        gap = abs(math.log(spec.num_params / params))
        if best is None or gap < best[0]:
            best = (gap, spec)
        if spec.num_params > params * 4:
            break
    return best[1]
