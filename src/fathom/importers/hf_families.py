"""One adapter per Hugging Face ``model_type``: config.json keys -> ModelSpec fields (Llama lineage here).

Key names and defaults follow each family's ``configuration_*.py`` in Hugging Face transformers (the defaults
matter: Llama configs omit ``num_key_value_heads`` when it equals the head count, GPT-2 configs omit
``tie_word_embeddings`` because GPT-2 always ties). A new family joins by adding one decorated function;
the GPT-2 lineage (layernorm, plain GELU MLP) lives in ``hf_gpt_families``, imported at the end to register.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fathom.importers.hf_config import shown
from fathom.specs.model import MAX_FACTOR, MAX_ROPE_THETA, MAX_SIZE

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
def _decoder(c: HFConfig, *, tie: bool, defaults: Fields | None = None) -> Fields:
    """The Llama-style key set that Mistral, Qwen, Gemma, Phi-3 and DeepSeek share. ``defaults``: the family's
    values for keys its published configs leave out (Gemma 3's heads); without one a key is required."""
    d = defaults or {}

    def size(key: str, **kw: Any) -> int:
        return c.size(key, **({"default": d[key]} if key in d else kw))

    h, nh = size("hidden_size"), size("num_attention_heads")
    seq = size("max_position_embeddings", default=4096)
    return dict(
        num_layers=size("num_hidden_layers"),
        hidden_size=h,
        num_heads=nh,
        num_kv_heads=size("num_key_value_heads", default=nh),
        head_dim=size("head_dim", default=h // nh),
        ffn_size=size("intermediate_size"),
        gated_mlp=True,
        vocab_size=size("vocab_size"),
        tied_embeddings=c.flag("tie_word_embeddings", default=tie),
        max_seq_len=seq,
        norm_type="rmsnorm",
        position_embedding="rope",
        **_rope(c, seq),
    )


# rope_type (or the older key "type") -> ModelSpec.rope_scaling. "default" is plain RoPE, and so is "mrope"
# (Qwen2-VL: its three position sections coincide for text); "su" is Phi-3's first name for longrope.
ROPE_TYPES = {
    "default": "none",
    "mrope": "none",
    "llama3": "llama3",
    "linear": "linear",
    "dynamic": "dynamic",
    "yarn": "yarn",
    "longrope": "longrope",
    "su": "longrope",
}


def _rope(c: HFConfig, max_seq_len: int) -> Fields:
    """``rope_theta`` and ``rope_scaling`` (transformers 5 nests both in ``rope_parameters``, per layer type for
    Gemma 3: the global layers' entry is kept). No cost depends on them, but engine exports must build the same
    positions, so every scaling type is recorded with its factor and an unknown one is refused."""
    params = c.get("rope_parameters", default={})
    if not isinstance(params, dict):
        raise c.error(f"field {c.name('rope_parameters')!r} must be an object, got {shown(params)}")
    params_key = "rope_parameters"
    if isinstance(params.get("full_attention"), dict):
        params, params_key = params["full_attention"], "rope_parameters.full_attention"
    fields: Fields = {}
    theta = params.get("rope_theta", c.get("rope_theta", default=None))
    if theta is not None:
        fields["rope_theta"] = c.number("rope_theta", theta, MAX_ROPE_THETA)
    scaling, key = c.get("rope_scaling", default=None), "rope_scaling"
    if scaling is None:
        scaling, key = params, params_key
    if not isinstance(scaling, dict):
        raise c.error(
            f"field {c.name(key)!r} must be an object with rope_type and factor "
            f'(e.g. {{"rope_type": "llama3", "factor": 8.0}}), got {shown(scaling)}'
        )
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind is None and (key != "rope_scaling" or not scaling):
        return fields  # rope_parameters holding only rope_theta, or an empty rope_scaling: plain RoPE
    if not isinstance(kind, str) or kind not in ROPE_TYPES:
        valid = ", ".join(sorted(ROPE_TYPES))
        raise c.error(f"field {c.name(key + '.rope_type')!r} must be one of {valid}; got {shown(kind)}")
    if ROPE_TYPES[kind] == "none":
        return fields
    factor = scaling.get("factor")
    if factor is None and ROPE_TYPES[kind] == "longrope":  # Phi-3: the factor is the context's growth
        original = scaling.get("original_max_position_embeddings") or c.get(
            "original_max_position_embeddings", default=None
        )
        if original is not None:
            factor = max_seq_len / c.number("original_max_position_embeddings", original, MAX_SIZE)
    if factor is None:
        raise c.error(f"missing field {c.name(key + '.factor')!r} for rope_type {kind}")
    fields.update(rope_scaling=ROPE_TYPES[kind], rope_scaling_factor=c.number(key + ".factor", factor, MAX_FACTOR))
    return fields


LAYER_TYPES = ("full_attention", "sliding_attention")


def _sliding_layers(c: HFConfig, layers: int) -> int | None:
    """Sliding layers counted from ``layer_types`` (one entry per layer), or None when the config has none."""
    types = c.get("layer_types", default=None)
    if types is None:
        return None
    if not isinstance(types, list) or any(t not in LAYER_TYPES for t in types):
        valid = " / ".join(LAYER_TYPES)
        raise c.error(f"field {c.name('layer_types')!r} must be a list of {valid}, got {shown(types)}")
    if len(types) != layers:
        raise c.error(
            f"field {c.name('layer_types')!r} has {len(types)} entries but {c.name('num_hidden_layers')!r} "
            f"is {layers}: one per layer"
        )
    return sum(t == "sliding_attention" for t in types)


def _window_all_layers(c: HFConfig, f: Fields) -> Fields:
    """Mistral v0.1 / Phi-3: ``sliding_window`` (null = full attention) applies to every layer."""
    window = c.size("sliding_window", default=0, minimum=0)
    return {**f, "sliding_window": window, "num_sliding_window_layers": f["num_layers"] if window else 0}


def _window_qwen(c: HFConfig, f: Fields) -> Fields:
    """Qwen2/3: nothing slides unless ``use_sliding_window`` (transformers drops ``sliding_window`` otherwise);
    then the layers ``layer_types`` marks, else those from ``max_window_layers`` on."""
    layers = f["num_layers"]
    count = _sliding_layers(c, layers)
    if not c.flag("use_sliding_window", default=False):
        count = 0
    elif count is None:
        count = max(0, layers - c.size("max_window_layers", default=layers, minimum=0))
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


def _moe(c: HFConfig, f: Fields, is_moe: list[bool], placement: str, **moe: Any) -> Fields:
    """Add the MoE block; a config that names experts but leaves every layer dense contradicts itself, and
    importing it as a dense model would hide that, so it is refused naming the ``placement`` fields."""
    if not any(is_moe):
        raise c.error(f"experts are configured but {placement} leave none of the {f['num_layers']} layers a MoE layer")
    first, interval = _moe_layout(is_moe)
    return {**f, "moe": dict(moe, first_dense_layers=first, layer_interval=interval)}


def _qwen_moe_layers(c: HFConfig, layers: int) -> list[bool]:
    """Qwen2/3-MoE: sparse where ``(i+1) % decoder_sparse_step == 0`` and i is not in mlp_only_layers."""
    step, dense = c.size("decoder_sparse_step", default=1), set(c.int_list("mlp_only_layers"))
    if outside := sorted(i for i in dense if not 0 <= i < layers):
        raise c.error(f"field {c.name('mlp_only_layers')!r} names layer {outside[0]}, but layers are 0 to {layers - 1}")
    return [i not in dense and (i + 1) % step == 0 for i in range(layers)]


_QWEN_PLACEMENT = "decoder_sparse_step and mlp_only_layers"


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
    return _moe(c, f, [True] * f["num_layers"], "num_local_experts", **moe)


@adapter("phi3")
def phi3(c: HFConfig) -> Fields:
    return _window_all_layers(c, _decoder(c, tie=False))  # fused qkv / gate_up: same counts as Llama


@adapter("qwen2", "qwen2_vl_text", "qwen2_5_vl_text")
def qwen2(c: HFConfig) -> Fields:
    """Qwen2, and the language model of Qwen2-VL / Qwen2.5-VL (the same decoder; its "mrope" is plain RoPE
    for text)."""
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
    return _moe(c, f, _qwen_moe_layers(c, f["num_layers"]), _QWEN_PLACEMENT, **moe)


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
    return _moe(c, f, _qwen_moe_layers(c, f["num_layers"]), _QWEN_PLACEMENT, **moe)


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
    layers = f["num_layers"]
    first, freq = c.size("first_k_dense_replace", default=0, minimum=0), c.size("moe_layer_freq", default=1)
    if first >= layers:
        raise c.error(
            f"field {c.name('first_k_dense_replace')!r} ({first}) must be less than "
            f"{c.name('num_hidden_layers')!r} ({layers}): every layer would be dense although experts are set"
        )
    moe = dict(
        num_experts=c.size("n_routed_experts"),
        top_k=c.size("num_experts_per_tok"),
        expert_ffn_size=c.size("moe_intermediate_size"),
        num_shared_experts=c.size("n_shared_experts", default=0, minimum=0),
    )
    is_moe = [i >= first and i % freq == 0 for i in range(layers)]
    return _moe(c, f, is_moe, "first_k_dense_replace and moe_layer_freq", **moe)


@adapter("gemma2")
def gemma2(c: HFConfig) -> Fields:
    """Gemma 2 (arXiv:2408.00118): norms before and after attention and MLP; even layers slide."""
    f = {**_decoder(c, tie=True), "norms_per_layer": 4}
    count = _sliding_layers(c, f["num_layers"])
    if count is None:
        count = (f["num_layers"] + 1) // 2
    window = c.size("sliding_window", default=4096, minimum=0)
    return {**f, "sliding_window": window, "num_sliding_window_layers": count if window else 0}


# Gemma3TextConfig's defaults: the multimodal Gemma 3 configs (4B, 12B, 27B) give only the sizes that differ.
_GEMMA3_DEFAULTS = dict(
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=256,
    vocab_size=262_208,
    max_position_embeddings=131_072,
)


@adapter("gemma3_text")
def gemma3(c: HFConfig) -> Fields:
    """Gemma 3 (arXiv:2503.19786): Gemma 2's four norms per layer plus QK-norm; five sliding layers to every
    global one (``sliding_window_pattern`` 6). ``rope_scaling`` (linear, factor 8 from 4B up) is the global
    layers'; the local ones keep base 10000 unscaled."""
    bias = c.flag("attention_bias", default=False)
    f = {**_decoder(c, tie=True, defaults=_GEMMA3_DEFAULTS), "norms_per_layer": 4, "qk_norm": True}
    f.update(qkv_bias=bias, attn_out_bias=bias)
    f.setdefault("rope_theta", 1_000_000.0)
    layers = f["num_layers"]
    count = _sliding_layers(c, layers)
    if count is None:
        pattern = c.size("sliding_window_pattern", "_sliding_window_pattern", default=6)
        count = layers - layers // pattern
    window = c.size("sliding_window", default=4096, minimum=0)
    return {**f, "sliding_window": window, "num_sliding_window_layers": count if window else 0}


# Imported last: that module needs ``adapter`` from this one, and registers its families into ADAPTERS.
from fathom.importers import hf_gpt_families  # noqa: E402, F401
