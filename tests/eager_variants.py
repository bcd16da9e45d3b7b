"""The reference layer's variants the eager op and memory counts are held to (CPU and H100 counts alike)."""

from __future__ import annotations

VARIANTS = {
    "llama": {},
    "layernorm-gelu-learned": {"norm_type": "layernorm", "gated_mlp": False, "position_embedding": "learned"},
    "biases": {"qkv_bias": True, "attn_out_bias": True, "mlp_bias": True},
    "parallel-block": {"parallel_block": True},
    "mha-no-positions": {"num_kv_heads": 8, "position_embedding": "none"},
    "qk-norm": {"qk_norm": True},
    "dropout": {"hidden_dropout": True},
}
