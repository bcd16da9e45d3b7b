"""Hugging Face adapters for the GPT-2 lineage: layernorm, plain GELU MLP, biases in most places.

GPT-2, GPT-NeoX, GPT-J, OPT, BLOOM, Falcon and MPT. Key names and defaults follow each family's
``configuration_*.py`` in Hugging Face transformers (MPT: MosaicML's ``configuration_mpt.py`` in llm-foundry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fathom.importers.hf_families import Fields, adapter
from fathom.specs.model import MAX_SIZE

if TYPE_CHECKING:
    from fathom.importers.hf_config import HFConfig


def _gpt(h: int, nh: int, layers: int, ffn: int, vocab: int, seq: int, **extra: Any) -> Fields:
    f = dict(
        num_layers=layers,
        hidden_size=h,
        num_heads=nh,
        num_kv_heads=nh,
        head_dim=h // nh,
        ffn_size=ffn,
        gated_mlp=False,
        vocab_size=vocab,
        max_seq_len=seq,
        norm_type="layernorm",
    )
    return {**f, **extra}


@adapter("gpt2")
def gpt2(c: HFConfig) -> Fields:
    h = c.size("n_embd", "hidden_size")
    return _gpt(
        h,
        c.size("n_head", "num_attention_heads"),
        c.size("n_layer", "num_hidden_layers"),
        c.size("n_inner", default=4 * h),
        c.size("vocab_size"),
        c.size("n_positions", "n_ctx", default=1024),
        tied_embeddings=c.flag("tie_word_embeddings", default=True),
        position_embedding="learned",
        qkv_bias=True,
        attn_out_bias=True,
        mlp_bias=True,
        hidden_dropout=c.prob("resid_pdrop"),
    )


@adapter("gpt_neox")
def gpt_neox(c: HFConfig) -> Fields:
    bias = c.flag("attention_bias", default=True)
    return _gpt(
        c.size("hidden_size"),
        c.size("num_attention_heads"),
        c.size("num_hidden_layers"),
        c.size("intermediate_size"),
        c.size("vocab_size"),
        c.size("max_position_embeddings", default=2048),
        tied_embeddings=c.flag("tie_word_embeddings", default=False),
        position_embedding="rope",
        qkv_bias=bias,
        attn_out_bias=bias,
        mlp_bias=True,
        hidden_dropout=c.prob("hidden_dropout"),
        parallel_block=c.flag("use_parallel_residual", default=True),
    )


@adapter("gptj")
def gptj(c: HFConfig) -> Fields:
    """GPT-J: one layernorm per parallel block; biases only on the MLP and the LM head."""
    h = c.size("n_embd", "hidden_size")
    return _gpt(
        h,
        c.size("n_head", "num_attention_heads"),
        c.size("n_layer", "num_hidden_layers"),
        c.size("n_inner", default=4 * h),
        c.size("vocab_size"),
        c.size("n_positions", default=2048),
        tied_embeddings=c.flag("tie_word_embeddings", default=False),
        position_embedding="rope",
        norms_per_layer=1,
        mlp_bias=True,
        lm_head_bias=True,
        parallel_block=True,
        hidden_dropout=c.prob("resid_pdrop"),
    )


@adapter("opt")
def opt(c: HFConfig) -> Fields:
    h = c.size("hidden_size")
    if c.size("word_embed_proj_dim", default=h) != h:
        raise c.error("word_embed_proj_dim differs from hidden_size (OPT-350m's projection): not supported")
    bias = c.flag("enable_bias", default=True)
    return _gpt(
        h,
        c.size("num_attention_heads"),
        c.size("num_hidden_layers"),
        c.size("ffn_dim"),
        c.size("vocab_size"),
        c.size("max_position_embeddings", default=2048),
        tied_embeddings=c.flag("tie_word_embeddings", default=True),
        position_embedding="learned",
        qkv_bias=bias,
        attn_out_bias=bias,
        mlp_bias=bias,
        hidden_dropout=c.prob("dropout"),
    )


@adapter("bloom")
def bloom(c: HFConfig) -> Fields:
    h = c.size("hidden_size", "n_embed")
    return _gpt(
        h,
        c.size("n_head", "num_attention_heads"),
        c.size("n_layer", "num_hidden_layers"),
        4 * h,
        c.size("vocab_size"),
        c.size("seq_length", default=2048),
        tied_embeddings=c.flag("tie_word_embeddings", default=True),
        position_embedding="alibi",
        qkv_bias=True,
        attn_out_bias=True,
        mlp_bias=True,
        embedding_norm=True,
        hidden_dropout=c.prob("hidden_dropout"),
    )


@adapter("falcon", "RefinedWeb", "RefinedWebModel")
def falcon(c: HFConfig) -> Fields:
    """Falcon: 'new decoder architecture' (40B/180B) uses KV groups and 2 norms; 7B is multi-query with 1."""
    h, nh = c.size("hidden_size", "n_embed"), c.size("num_attention_heads", "n_head")
    new = c.flag("new_decoder_architecture", default=c.model_type == "RefinedWeb")
    parallel = c.flag("parallel_attn", default=True)
    if new:
        kv = c.size("num_kv_heads", "n_head_kv", default=nh)
        norms = c.size("num_ln_in_parallel_attn", default=2)
    else:
        kv = 1 if c.flag("multi_query", default=True) else nh
        norms = 1 if parallel else 2
    bias = c.flag("bias", default=False)
    alibi = c.flag("alibi", default=False)
    return _gpt(
        h,
        nh,
        c.size("num_hidden_layers", "n_layer"),
        c.size("ffn_hidden_size", default=4 * h),
        c.size("vocab_size"),
        c.size("max_position_embeddings", default=2048),
        num_kv_heads=kv,
        tied_embeddings=c.flag("tie_word_embeddings", default=True),
        norms_per_layer=norms,
        position_embedding="alibi" if alibi else "rope",
        qkv_bias=bias,
        attn_out_bias=bias,
        mlp_bias=bias,
        parallel_block=parallel,
        hidden_dropout=c.prob("hidden_dropout"),
    )


@adapter("mpt")
def mpt(c: HFConfig) -> Fields:
    """MosaicML MPT: ALiBi or learned positions; ``no_bias`` removes every bias, layernorm's included."""
    h, nh = c.size("d_model"), c.size("n_heads")
    attn, ffn_cfg = c.sub("attn_config"), c.sub("ffn_config")
    ffn = ffn_cfg.size("ffn_hidden_size", default=0, minimum=0)
    if not ffn:
        ratio = c.number("expansion_ratio", c.get("expansion_ratio", default=4), MAX_SIZE)
        ffn = int(ratio * h)
        if not 1 <= ffn <= MAX_SIZE:
            raise c.error(f"expansion_ratio x d_model must be from 1 to 2**31, got {ffn}")
    attn_type = attn.get("attn_type", default="multihead_attention")
    kv = {"multiquery_attention": 1, "grouped_query_attention": attn.size("kv_n_heads", default=nh)}.get(attn_type, nh)
    alibi = attn.flag("alibi", default=False)
    learned = c.flag("learned_pos_emb", default=True) and not alibi
    no_bias = c.flag("no_bias", default=False)
    seq = c.size("max_seq_len", default=2048)
    return _gpt(
        h,
        nh,
        c.size("n_layers"),
        ffn,
        c.size("vocab_size"),
        seq,
        num_kv_heads=kv,
        gated_mlp=ffn_cfg.get("ffn_type", default=None) == "mptglu",
        tied_embeddings=c.flag("tie_word_embeddings", default=True),
        position_embedding="alibi" if alibi else "learned" if learned else "none",
        norm_type="rmsnorm" if "rms" in str(c.get("norm_type", default="")) else "layernorm",
        norm_bias=not no_bias,
        qkv_bias=not no_bias,
        attn_out_bias=not no_bias,
        mlp_bias=not no_bias,
        hidden_dropout=c.prob("resid_pdrop"),
    )
