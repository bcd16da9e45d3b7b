"""A GPT-style test model (LayerNorm, learned positions, dropout) shared by the memory-model tests."""

from __future__ import annotations

from fathom.specs.model import ModelSpec

GPT = ModelSpec(
    name="gpt-test",
    num_layers=24,
    hidden_size=4096,
    num_heads=32,
    num_kv_heads=32,
    head_dim=128,
    ffn_size=16384,
    vocab_size=51200,
    max_seq_len=2048,
    gated_mlp=False,
    norm_type="layernorm",
    position_embedding="learned",
    hidden_dropout=True,
)
