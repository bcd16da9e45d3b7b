"""One adapter per Hugging Face ``model_type``: config.json keys -> ModelSpec fields (Llama lineage here).

Key names and defaults follow each family's ``configuration_*.py`` in Hugging Face transformers (the defaults
matter: Llama configs omit ``num_key_value_heads`` when it equals the head count, GPT-2 configs omit
``tie_word_embeddings`` because GPT-2 always ties). A new family joins by adding one decorated function;
the GPT-2 lineage (layernorm, plain GELU MLP) lives in ``hf_gpt_families``, imported at the end to register.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fathom.importers.hf_config import HFConfig

Fields = dict[str, Any]
ADAPTERS: dict[str, Callable[[HFConfig], Fields]] = {}


def adapter(*model_types: str) -> Callable[[Callable[[HFConfig], Fields]], Callable[[HFConfig], Fields]]:
    def register(fn: Callable[[HFConfig], Fields]) -> Callable[[HFConfig], Fields]:
        for model_type in model_types:
            ADAPTERS[model_type] = fn
        return fn

    return register


# ---- shared pieces ------------------------------------------------------------------------------
def _decoder(c: HFConfig, *, tie: bool) -> Fields:
    """The Llama-style key set that Mistral, Qwen, Gemma, Phi-3 and DeepSeek share."""
    h, nh = c.size("hidden_size"), c.size("num_attention_heads")
    return dict(
        num_layers=c.size("num_hidden_layers"),
        hidden_size=h,
        num_heads=nh,
        num_kv_heads=c.size("num_key_value_heads", default=nh),
        head_dim=c.size("head_dim", default=h // nh),
        ffn_size=c.size("intermediate_size"),
        gated_mlp=True,
        vocab_size=c.size("vocab_size"),
        tied_embeddings=c.flag("tie_word_embeddings", default=tie),
        max_seq_len=c.size("max_position_embeddings", default=4096),
        norm_type="rmsnorm",
        position_embedding="rope",
        **_rope(c),
    )


def _rope(c: HFConfig) -> Fields:
    """``rope_theta`` and Llama 3.1's "llama3" ``rope_scaling`` (transformers 5 nests both in ``rope_parameters``):
    no cost depends on them, but engine exports must build the same positions."""
    params = c.get("rope_parameters", default=None)
    params = params if isinstance(params, dict) else {}
    theta = params.get("rope_theta", c.get("rope_theta", default=None))
    if theta is not None and (isinstance(theta, bool) or not isinstance(theta, int | float) or theta <= 0):
        raise c.error(f"field 'rope_theta' must be a positive number, got {theta!r}")
    scaling = c.get("rope_scaling", default=None) or params
    fields: Fields = {} if theta is None else {"rope_theta": float(theta)}
    if isinstance(scaling, dict) and (scaling.get("rope_type") or scaling.get("type")) == "llama3":
        factor = scaling.get("factor")
        if isinstance(factor, bool) or not isinstance(factor, int | float) or factor <= 0:
            raise c.error(f"field 'rope_scaling.factor' must be a positive number, got {factor!r}")
        fields.update(rope_scaling="llama3", rope_scaling_factor=float(factor))
    return fields


def _window_all_layers(c: HFConfig, f: Fields) -> Fields:
    """Mistral v0.1 / Phi-3: ``sliding_window`` (null = full attention) applies to every layer."""
    window = c.size("sliding_window", default=0, minimum=0)
    return {**f, "sliding_window": window, "num_sliding_window_layers": f["num_layers"] if window else 0}


def _window_qwen(c: HFConfig, f: Fields) -> Fields:
    """Qwen2/3: ``layer_types`` if given, else layers from ``max_window_layers`` on slide when enabled."""
    layers = f["num_layers"]
    types = c.get("layer_types", default=None)
    if isinstance(types, list):
        count = sum(t == "sliding_attention" for t in types)
    elif c.flag("use_sliding_window", default=False):
        count = max(0, layers - c.size("max_window_layers", default=layers, minimum=0))
    else:
        count = 0
    window = c.size("sliding_window", default=0, minimum=0) if count else 0
    return {**f, "sliding_window": window, "num_sliding_window_layers": count if window else 0}


def _moe_layout(is_moe: list[bool]) -> tuple[int, int]:
    """(first_dense_layers, layer_interval) reproducing which layers are MoE.

    ModelSpec places MoE layers at ``first_dense + k*interval - 1``; a pattern it cannot express (a list of
    dense layers in the middle) falls back to the same number of MoE layers, which keeps every count exact.
    """
    layers, idx = len(is_moe), [i for i, m in enumerate(is_moe) if m]
    interval = idx[1] - idx[0] if len(idx) > 1 else idx[0] + 1
    first = idx[0] - (interval - 1)
    if first >= 0 and [False] * first + [(j + 1) % interval == 0 for j in range(layers - first)] == is_moe:
        return first, interval
    return layers - len(idx), 1


def _moe(f: Fields, is_moe: list[bool], **moe: Any) -> Fields:
    if not any(is_moe):
        return f
    first, interval = _moe_layout(is_moe)
    return {**f, "moe": dict(moe, first_dense_layers=first, layer_interval=interval)}


def _qwen_moe_layers(c: HFConfig, layers: int) -> list[bool]:
    """Qwen2/3-MoE: sparse where ``(i+1) % decoder_sparse_step == 0`` and i is not in mlp_only_layers."""
    step, dense = c.size("decoder_sparse_step", default=1), set(c.int_list("mlp_only_layers"))
    return [i not in dense and (i + 1) % step == 0 for i in range(layers)]


# ---- Llama family -------------------------------------------------------------------------------
@adapter("llama")
def llama(c: HFConfig) -> Fields:
    bias = c.flag("attention_bias", default=False)  # LlamaAttention: q, k, v and o share this flag
    return {
        **_decoder(c, tie=False),
        "qkv_bias": bias,
        "attn_out_bias": bias,
        "mlp_bias": c.flag("mlp_bias", default=False),
    }


@adapter("mistral")
def mistral(c: HFConfig) -> Fields:
    return _window_all_layers(c, _decoder(c, tie=False))


@adapter("mixtral")
def mixtral(c: HFConfig) -> Fields:
    f = _window_all_layers(c, _decoder(c, tie=False))
    moe = dict(
        num_experts=c.size("num_local_experts"), top_k=c.size("num_experts_per_tok"), expert_ffn_size=f["ffn_size"]
    )
    return _moe(f, [True] * f["num_layers"], **moe)


@adapter("phi3")
def phi3(c: HFConfig) -> Fields:
    return _window_all_layers(c, _decoder(c, tie=False))  # fused qkv / gate_up: same counts as Llama


@adapter("qwen2")
def qwen2(c: HFConfig) -> Fields:
    return _window_qwen(c, {**_decoder(c, tie=False), "qkv_bias": True})


@adapter("qwen2_moe")
def qwen2_moe(c: HFConfig) -> Fields:
    f = qwen2(c)
    shared = c.size("shared_expert_intermediate_size", default=0, minimum=0)
    moe = dict(
        num_experts=c.size("num_experts"),
        top_k=c.size("num_experts_per_tok"),
        expert_ffn_size=c.size("moe_intermediate_size"),
        num_shared_experts=int(shared > 0),
        shared_expert_ffn_size=shared,
        shared_expert_gate=shared > 0,
    )
    return _moe(f, _qwen_moe_layers(c, f["num_layers"]), **moe)


@adapter("qwen3")
def qwen3(c: HFConfig) -> Fields:
    bias = c.flag("attention_bias", default=False)
    f = {**_decoder(c, tie=False), "qk_norm": True, "qkv_bias": bias, "attn_out_bias": bias}
    return _window_qwen(c, f)


@adapter("qwen3_moe")
def qwen3_moe(c: HFConfig) -> Fields:
    f = qwen3(c)
    moe = dict(
        num_experts=c.size("num_experts"),
        top_k=c.size("num_experts_per_tok"),
        expert_ffn_size=c.size("moe_intermediate_size"),
    )
    return _moe(f, _qwen_moe_layers(c, f["num_layers"]), **moe)


@adapter("deepseek_v2", "deepseek_v3")
def deepseek(c: HFConfig) -> Fields:
    """MLA (arXiv:2405.04434 sec. 2.1); MoE where i >= first_k_dense_replace and i % moe_layer_freq == 0."""
    f = _decoder(c, tie=False)
    mla = dict(
        q_lora_rank=c.size("q_lora_rank", default=0, minimum=0),
        kv_lora_rank=c.size("kv_lora_rank"),
        qk_nope_head_dim=c.size("qk_nope_head_dim"),
        qk_rope_head_dim=c.size("qk_rope_head_dim"),
        v_head_dim=c.size("v_head_dim"),
    )
    f.update(mla=mla, num_kv_heads=f["num_heads"], head_dim=mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"])
    if c.get("n_routed_experts", default=None) is None:
        return f
    first, freq = c.size("first_k_dense_replace", default=0, minimum=0), c.size("moe_layer_freq", default=1)
    moe = dict(
        num_experts=c.size("n_routed_experts"),
        top_k=c.size("num_experts_per_tok"),
        expert_ffn_size=c.size("moe_intermediate_size"),
        num_shared_experts=c.size("n_shared_experts", default=0, minimum=0),
    )
    return _moe(f, [i >= first and i % freq == 0 for i in range(f["num_layers"])], **moe)


@adapter("gemma2")
def gemma2(c: HFConfig) -> Fields:
    """Gemma 2 (arXiv:2408.00118): norms before and after attention and MLP; even layers slide."""
    f = {**_decoder(c, tie=True), "norms_per_layer": 4}
    types = c.get("layer_types", default=None)
    if isinstance(types, list):
        count = sum(t == "sliding_attention" for t in types)
    else:
        count = (f["num_layers"] + 1) // 2
    window = c.size("sliding_window", default=4096, minimum=0)
    return {**f, "sliding_window": window, "num_sliding_window_layers": count if window else 0}


# Imported last: that module needs ``adapter`` from this one, and registers its families into ADAPTERS.
from fathom.importers import hf_gpt_families  # noqa: E402, F401
