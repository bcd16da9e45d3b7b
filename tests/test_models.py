"""Model presets, the Hugging Face config importer, and the parameter-count properties.

The counts are checked against publishers' figures: a shape transcribed wrongly shows up as a count that
misses. The embedded config.json dicts are the published configs of real checkpoints (abridged to the keys
that describe the shape).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.models import get_model, list_models
from fathom.errors import FathomInputError
from fathom.importers import model_from_hf_config, supported_model_types
from fathom.specs.model import ModelSpec

TOL = 0.015

# Publishers' figures that are rounded labels rather than counts: the shape each preset cites (from the same
# table or config) gives a count further than 1.5% away. Each YAML's `source` says what the shape gives.
ROUNDED_TOTAL = {
    "gpt3-350m": 0.02,  # Brown et al. Table 2.1 label "350M"; the table's shape gives 355.9M
    "gpt3-2.7b": 0.02,  # "2.7B"; the table's shape gives 2.65B (as GPT-Neo 2.7B's checkpoint confirms)
    "megatron-gpt-1.7b": 0.03,  # Narayanan et al.'s own formula gives 1.652B, printed as 1.7
    "falcon-40b": 0.035,  # model card "40B"; the config's shape gives 41.3B with tied embeddings
}
ROUNDED_ACTIVE = {"qwen3-30b-a3b": 0.02}  # card "3.3B activated"; the shape gives 3.35B

REQUIRED = """gpt3-125m gpt3-350m gpt3-760m gpt3-1.3b gpt3-2.7b gpt3-6.7b gpt3-13b gpt3-175b
megatron-gpt-1.7b megatron-gpt-3.6b megatron-gpt-7.5b megatron-gpt-18.4b megatron-gpt-39.1b megatron-gpt-76.1b
megatron-gpt-145.6b megatron-gpt-310.1b megatron-gpt-529.6b megatron-gpt-1t llama-2-7b llama-2-13b llama-2-70b
llama-3-8b llama-3-70b llama-3.1-8b llama-3.1-70b llama-3.1-405b mistral-7b mixtral-8x7b mixtral-8x22b
qwen2.5-7b qwen2.5-14b qwen2.5-32b qwen2.5-72b qwen3-8b qwen3-32b qwen3-30b-a3b qwen3-235b-a22b deepseek-v3
bloom-176b opt-175b gemma-2-9b gemma-2-27b phi-3-mini falcon-40b falcon-180b gpt-neox-20b gpt-j-6b mpt-7b
mpt-30b mpt-70b""".split()


def _rel(a: float, b: float) -> float:
    return abs(a / b - 1)


# ---- (a), (b): presets ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_models())
def test_preset_count_matches_publisher(name: str) -> None:
    spec = get_model(name)
    assert spec.name == name
    assert spec.reported_params, f"{name}: no reported_params"
    assert _rel(spec.num_params, spec.reported_params) <= ROUNDED_TOTAL.get(name, TOL), (
        f"{name}: counted {spec.num_params / 1e9:.3f}B, reported {spec.reported_params / 1e9:.3f}B"
    )
    if spec.reported_active_params:
        assert _rel(spec.num_active_params, spec.reported_active_params) <= ROUNDED_ACTIVE.get(name, TOL)


def test_rounded_exceptions_are_still_needed() -> None:
    """The looser tolerances above apply only where 1.5% really fails, so the list cannot go stale."""
    for name in ROUNDED_TOTAL:
        spec = get_model(name)
        assert _rel(spec.num_params, spec.reported_params) > TOL, name
    for name in ROUNDED_ACTIVE:
        spec = get_model(name)
        assert _rel(spec.num_active_params, spec.reported_active_params) > TOL, name


def test_catalog_shape() -> None:
    names = list_models()
    assert len(names) >= 34
    assert not set(REQUIRED) - set(names)
    for name in names:
        assert re.fullmatch(r"[a-z0-9]+(?:[.-][a-z0-9]+)*", name), name
        assert len(get_model(name).source.strip()) > 40, f"{name}: source should cite the shape and the count"


def test_moe_presets_report_active_params() -> None:
    for name in ("mixtral-8x7b", "mixtral-8x22b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3"):
        spec = get_model(name)
        assert spec.is_moe and spec.reported_active_params and spec.num_active_params < spec.num_params


def test_lookup_is_case_insensitive_and_cached() -> None:
    assert get_model("Llama-3.1-8B") is get_model("llama-3.1-8b")


def test_megatron_presets_follow_the_papers_formula() -> None:
    """Narayanan et al. SC'21 sec. 5.1: P = 12 l h^2 (1 + 13/(12h) + (V+s)/(12lh)), plus the final norm."""
    for name in list_models():
        if name.startswith("megatron-gpt-"):
            m = get_model(name)
            layers, h, v, s = m.num_layers, m.hidden_size, m.vocab_size, m.max_seq_len
            paper = 12 * layers * h * h * (1 + 13 / (12 * h) + (v + s) / (12 * layers * h))
            assert m.num_params == pytest.approx(paper + 2 * h, rel=1e-12)


def test_mpt_layernorm_has_no_bias() -> None:
    m = get_model("mpt-7b")
    assert not m.norm_bias and m._norm_params == m.hidden_size
    assert m.num_params == 6_649_286_656  # mosaicml/mpt-7b safetensors total


# ---- (c): Hugging Face configs ------------------------------------------------------------------------
LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mixtral",
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "max_position_embeddings": 131072,
    "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "vocab_size": 152064,
}
QWEN2_57B_A14B = {
    "architectures": ["Qwen2MoeForCausalLM"],
    "decoder_sparse_step": 1,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "max_position_embeddings": 131072,
    "max_window_layers": 28,
    "model_type": "qwen2_moe",
    "moe_intermediate_size": 2560,
    "num_attention_heads": 28,
    "num_experts": 64,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "shared_expert_intermediate_size": 20480,
    "sliding_window": 65536,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
QWEN15_MOE_A27B = {
    "architectures": ["Qwen2MoeForCausalLM"],
    "decoder_sparse_step": 1,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "max_position_embeddings": 8192,
    "model_type": "qwen2_moe",
    "moe_intermediate_size": 1408,
    "num_attention_heads": 16,
    "num_experts": 60,
    "num_experts_per_tok": 4,
    "num_hidden_layers": 24,
    "num_key_value_heads": 16,
    "shared_expert_intermediate_size": 5632,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
QWEN3_8B = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "head_dim": 128,
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "max_position_embeddings": 40960,
    "max_window_layers": 36,
    "model_type": "qwen3",
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "attention_bias": False,
    "decoder_sparse_step": 1,
    "head_dim": 128,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "max_position_embeddings": 40960,
    "max_window_layers": 48,
    "mlp_only_layers": [],
    "model_type": "qwen3_moe",
    "moe_intermediate_size": 768,
    "norm_topk_prob": True,
    "num_attention_heads": 32,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 48,
    "num_key_value_heads": 4,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "first_k_dense_replace": 3,
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "v_head_dim": 128,
    "vocab_size": 129280,
}
DEEPSEEK_V2_LITE = {
    "architectures": ["DeepseekV2ForCausalLM"],
    "first_k_dense_replace": 1,
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v2",
    "moe_intermediate_size": 1408,
    "moe_layer_freq": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_attention_heads": 16,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 27,
    "num_key_value_heads": 16,
    "q_lora_rank": None,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "tie_word_embeddings": False,
    "v_head_dim": 128,
    "vocab_size": 102400,
}
GEMMA2_9B = {
    "architectures": ["Gemma2ForCausalLM"],
    "attention_bias": False,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_attention_heads": 16,
    "num_hidden_layers": 42,
    "num_key_value_heads": 8,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "sliding_window": 4096,
    "vocab_size": 256000,
}
GPT2 = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "vocab_size": 50257,
}
GPT_NEOX_20B = {
    "architectures": ["GPTNeoXForCausalLM"],
    "hidden_act": "gelu_fast",
    "hidden_size": 6144,
    "intermediate_size": 24576,
    "max_position_embeddings": 2048,
    "model_type": "gpt_neox",
    "num_attention_heads": 64,
    "num_hidden_layers": 44,
    "rotary_emb_base": 10000,
    "rotary_pct": 0.25,
    "tie_word_embeddings": False,
    "use_parallel_residual": True,
    "vocab_size": 50432,
}
GPTJ_6B = {
    "activation_function": "gelu_new",
    "architectures": ["GPTJForCausalLM"],
    "attn_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "model_type": "gptj",
    "n_embd": 4096,
    "n_head": 16,
    "n_inner": None,
    "n_layer": 28,
    "n_positions": 2048,
    "resid_pdrop": 0.0,
    "rotary": True,
    "rotary_dim": 64,
    "tie_word_embeddings": False,
    "vocab_size": 50400,
}
OPT_13B = {
    "_name_or_path": "facebook/opt-1.3b",
    "activation_function": "relu",
    "architectures": ["OPTForCausalLM"],
    "do_layer_norm_before": True,
    "dropout": 0.1,
    "ffn_dim": 8192,
    "hidden_size": 2048,
    "max_position_embeddings": 2048,
    "model_type": "opt",
    "num_attention_heads": 32,
    "num_hidden_layers": 24,
    "vocab_size": 50272,
    "word_embed_proj_dim": 2048,
}
BLOOM_560M = {
    "architectures": ["BloomForCausalLM"],
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
    "model_type": "bloom",
    "n_embed": 1024,
    "n_inner": None,
    "n_layer": 24,
    "num_attention_heads": 16,
    "vocab_size": 250880,
}
FALCON_7B = {
    "alibi": False,
    "architectures": ["FalconForCausalLM"],
    "bias": False,
    "hidden_size": 4544,
    "model_type": "falcon",
    "multi_query": True,
    "new_decoder_architecture": False,
    "num_attention_heads": 71,
    "num_hidden_layers": 32,
    "parallel_attn": True,
    "vocab_size": 65024,
}
FALCON_40B_RW = {  # the original remote-code config of tiiuae/falcon-40b
    "alibi": False,
    "architectures": ["RWForCausalLM"],
    "bias": False,
    "hidden_size": 8192,
    "model_type": "RefinedWeb",
    "n_head": 128,
    "n_head_kv": 8,
    "n_layer": 60,
    "parallel_attn": True,
    "vocab_size": 65024,
}
PHI3_MINI = {
    "architectures": ["Phi3ForCausalLM"],
    "attention_bias": False,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "max_position_embeddings": 4096,
    "model_type": "phi3",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "resid_pdrop": 0.0,
    "rope_scaling": None,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "vocab_size": 32064,
}
MPT_7B = {
    "architectures": ["MPTForCausalLM"],
    "d_model": 4096,
    "expansion_ratio": 4,
    "learned_pos_emb": True,
    "attn_config": {"alibi": True, "alibi_bias_max": 8, "attn_type": "multihead_attention", "qk_ln": False},
    "max_seq_len": 2048,
    "model_type": "mpt",
    "n_heads": 32,
    "n_layers": 32,
    "no_bias": True,
    "norm_type": "low_precision_layernorm",
    "resid_pdrop": 0,
    "vocab_size": 50432,
}
GEMMA3_1B = {
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": False,
    "head_dim": 256,
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "rope_local_base_freq": 10000,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "vocab_size": 262144,
}
# The language model of Qwen2-VL-7B / Qwen2.5-VL-7B: Qwen2.5-7B's shape with multimodal RoPE sections.
QWEN2_VL_7B_TEXT = {
    **QWEN25_7B,
    "model_type": "qwen2_vl_text",
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}

# config, known total, known active (None: dense or not published), where the figure comes from
KNOWN = {
    "llama": (LLAMA_31_8B, 8_030_261_248, None),  # meta-llama/Llama-3.1-8B safetensors
    "mistral": (MISTRAL_7B, 7_241_732_096, None),  # mistralai/Mistral-7B-v0.1 safetensors
    "mixtral": (MIXTRAL_8X7B, 46.7e9, 12.9e9),  # Jiang et al. 2024 sec. 2.1
    "qwen2": (QWEN25_7B, 7.61e9, None),  # Qwen2.5-7B card
    "qwen2_moe": (QWEN2_57B_A14B, 57e9, None),  # Qwen2 report (arXiv:2407.10671) Table 1
    "qwen2_moe-1.5": (QWEN15_MOE_A27B, 14.3e9, 2.7e9),  # Qwen1.5-MoE-A2.7B card
    "qwen3": (QWEN3_8B, 8.2e9, None),  # Qwen3-8B card
    "qwen3_moe": (QWEN3_30B_A3B, 30.5e9, 3.35e9),  # card: 30.5B / "3.3B" (rounded; see ROUNDED_ACTIVE)
    "deepseek_v3": (DEEPSEEK_V3, 671e9, 37e9),  # arXiv:2412.19437 (without the 14B MTP module)
    "deepseek_v2": (DEEPSEEK_V2_LITE, 15.7e9, None),  # DeepSeek-V2-Lite card
    "gemma2": (GEMMA2_9B, 9_242_164_736, None),  # Gemma 2 report Table 2
    "gemma3_text": (GEMMA3_1B, 999_885_952, None),  # google/gemma-3-1b-pt safetensors
    "qwen2_vl_text": (QWEN2_VL_7B_TEXT, 7.6e9, None),  # Qwen2-VL report (arXiv:2409.12191) Table 1: 7.6B LLM
    "qwen2_5_vl_text": ({**QWEN2_VL_7B_TEXT, "model_type": "qwen2_5_vl_text"}, 7.6e9, None),  # LLM = Qwen2.5-7B
    "gpt2": (GPT2, 124_439_808, None),  # openai-community/gpt2
    "gpt_neox": (GPT_NEOX_20B, 20_554_567_680, None),  # gpt-neox-20b card
    "gptj": (GPTJ_6B, 6_053_381_344, None),  # gpt-j-6b card
    "opt": (OPT_13B, 1_315_758_080, None),  # facebook/opt-1.3b (incl. 2 offset position rows)
    "bloom": (BLOOM_560M, 559_214_592, None),  # bigscience/bloom-560m card
    "falcon": (FALCON_7B, 6.92e9, None),  # tied count of tiiuae/falcon-7b
    "RefinedWeb": (FALCON_40B_RW, 41.3e9, None),  # tied count of tiiuae/falcon-40b
    "phi3": (PHI3_MINI, 3_821_079_552, None),  # microsoft/Phi-3-mini-4k-instruct safetensors
    "mpt": (MPT_7B, 6.65e9, None),  # mosaicml/mpt-7b safetensors (card: 6.7B)
}


@pytest.mark.parametrize("key", sorted(KNOWN))
def test_hf_config_gives_known_count(key: str) -> None:
    config, total, active = KNOWN[key]
    spec = model_from_hf_config(config)
    assert _rel(spec.num_params, total) <= TOL, f"{key}: {spec.num_params / 1e9:.3f}B vs {total / 1e9:.3f}B"
    if active is not None:
        assert _rel(spec.num_active_params, active) <= TOL


def test_every_supported_model_type_has_a_real_config() -> None:
    covered = {cfg["model_type"] for cfg, _, _ in KNOWN.values()}
    assert set(supported_model_types()) - covered <= {"RefinedWebModel"}


PRESET_OF = {
    "llama-3.1-8b": LLAMA_31_8B,
    "mistral-7b": MISTRAL_7B,
    "mixtral-8x7b": MIXTRAL_8X7B,
    "qwen2.5-7b": QWEN25_7B,
    "qwen3-8b": QWEN3_8B,
    "qwen3-30b-a3b": QWEN3_30B_A3B,
    "deepseek-v3": DEEPSEEK_V3,
    "gemma-2-9b": GEMMA2_9B,
    "gpt-neox-20b": GPT_NEOX_20B,
    "gpt-j-6b": GPTJ_6B,
    "falcon-7b": FALCON_7B,
    "falcon-40b": FALCON_40B_RW,
    "phi-3-mini": PHI3_MINI,
    "mpt-7b": MPT_7B,
}
SHAPE_FIELDS = (
    "num_layers",
    "hidden_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "ffn_size",
    "vocab_size",
    "tied_embeddings",
    "norms_per_layer",
    "sliding_window",
    "num_sliding_window_layers",
    "moe",
    "mla",
)


@pytest.mark.parametrize("preset", sorted(PRESET_OF))
def test_hf_import_matches_preset(preset: str) -> None:
    imported, spec = model_from_hf_config(PRESET_OF[preset]), get_model(preset)
    assert imported.num_params == spec.num_params
    assert imported.num_active_params == spec.num_active_params
    for field in SHAPE_FIELDS:
        assert getattr(imported, field) == getattr(spec, field), field


def test_hf_family_details() -> None:
    gemma = model_from_hf_config(GEMMA2_9B)
    assert gemma.tied_embeddings and gemma.norms_per_layer == 4 and gemma.num_sliding_window_layers == 21
    assert model_from_hf_config(GPT2).hidden_dropout and model_from_hf_config(GPT2).tied_embeddings
    assert model_from_hf_config(FALCON_7B).num_kv_heads == 1
    qwen = model_from_hf_config({**QWEN25_7B, "use_sliding_window": True, "max_window_layers": 20})
    assert qwen.sliding_window == 131072 and qwen.num_sliding_window_layers == 8
    named = model_from_hf_config({**LLAMA_31_8B, "_name_or_path": "meta-llama/Llama-3.1-8B"})
    assert named.name == "llama-3.1-8b"
    every_other = model_from_hf_config({**QWEN3_30B_A3B, "decoder_sparse_step": 2})
    assert every_other.num_moe_layers == 24 and every_other.moe.layer_interval == 2
    sparse_gap = model_from_hf_config({**QWEN3_30B_A3B, "mlp_only_layers": [5, 17]})
    assert sparse_gap.num_moe_layers == 46  # count kept when the layout is not expressible


def test_hf_config_from_file(tmp_path) -> None:
    folder = tmp_path / "Mixtral-8x7B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MIXTRAL_8X7B))
    spec = get_model(str(folder / "config.json"))
    assert spec.name == "mixtral-8x7b" and spec.num_params == get_model("mixtral-8x7b").num_params
    assert model_from_hf_config(folder / "config.json").num_params == spec.num_params


def test_model_from_yaml_file(tmp_path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "num_layers: 2\nhidden_size: 64\nnum_heads: 4\nnum_kv_heads: 4\nhead_dim: 16\nffn_size: 256\nvocab_size: 1000\n"
    )
    spec = get_model(str(path))
    assert spec.name == "tiny" and spec.num_params > 0


# ---- (d): errors -------------------------------------------------------------------------------------
def _one_line_error(fn, *args) -> str:
    with pytest.raises(FathomInputError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_model_suggests_close_matches() -> None:
    assert "'llama-3.1-8b'" in _one_line_error(get_model, "llama-3.1-7b")


def test_malformed_json(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama", "hidden_size": 4096,,}')
    for fn in (get_model, model_from_hf_config):
        message = _one_line_error(fn, str(path))
        assert str(path) in message and "malformed JSON" in message and "line 1" in message


def test_malformed_yaml_and_bad_fields(tmp_path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("num_layers: [1, 2\nhidden_size: 4\n")
    assert "malformed YAML" in _one_line_error(get_model, str(broken))
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "num_layers: -1\nhidden_size: 64\nnum_heads: 4\nnum_kv_heads: 4\nhead_dim: 16\n"
        "ffn_size: 256\nvocab_size: 1000\n"
    )
    message = _one_line_error(get_model, str(bad))
    assert str(bad) in message and "num_layers" in message


def test_missing_file() -> None:
    assert "no such file" in _one_line_error(get_model, "/nonexistent/config.json")


def test_unknown_model_type() -> None:
    message = _one_line_error(model_from_hf_config, {**LLAMA_31_8B, "model_type": "lama"})
    assert "model_type" in message and "'llama'" in message and "qwen3_moe" in message


def test_missing_field() -> None:
    config = {k: v for k, v in LLAMA_31_8B.items() if k != "hidden_size"}
    message = _one_line_error(model_from_hf_config, config)
    assert message == "config.json: missing field 'hidden_size' for model_type llama"
    assert "model_type" in _one_line_error(model_from_hf_config, {"hidden_size": 8})


@pytest.mark.parametrize("value", [0, -4096, 40.5, "4096", True])
def test_non_positive_or_non_integer_size(value) -> None:
    message = _one_line_error(model_from_hf_config, {**LLAMA_31_8B, "hidden_size": value})
    assert "'hidden_size'" in message and "positive integer" in message


def test_unsupported_opt_projection() -> None:
    message = _one_line_error(model_from_hf_config, {**OPT_13B, "word_embed_proj_dim": 512})
    assert "word_embed_proj_dim" in message


# ---- (e): properties -----------------------------------------------------------------------------------
@st.composite
def model_fields(draw) -> dict:
    kv = draw(st.integers(1, 8))
    fields = dict(
        name="prop",
        num_layers=draw(st.integers(1, 64)),
        hidden_size=draw(st.integers(8, 4096)),
        num_heads=kv * draw(st.integers(1, 8)),
        num_kv_heads=kv,
        head_dim=draw(st.integers(8, 256)),
        ffn_size=draw(st.integers(8, 16384)),
        gated_mlp=draw(st.booleans()),
        vocab_size=draw(st.integers(2, 10**5)),
        tied_embeddings=draw(st.booleans()),
        norm_type=draw(st.sampled_from(["layernorm", "rmsnorm"])),
        norm_bias=draw(st.booleans()),
        qkv_bias=draw(st.booleans()),
        mlp_bias=draw(st.booleans()),
        position_embedding=draw(st.sampled_from(["rope", "learned", "alibi"])),
    )
    if draw(st.booleans()):
        experts = draw(st.integers(1, 64))
        fields["moe"] = dict(
            num_experts=experts,
            top_k=draw(st.integers(1, experts)),
            expert_ffn_size=draw(st.integers(8, 4096)),
            num_shared_experts=draw(st.integers(0, 2)),
            first_dense_layers=draw(st.integers(0, fields["num_layers"])),
            layer_interval=draw(st.integers(1, 4)),
            shared_expert_gate=draw(st.booleans()),
        )
    if draw(st.booleans()):
        fields["mla"] = dict(
            q_lora_rank=draw(st.integers(0, 512)),
            kv_lora_rank=draw(st.integers(1, 512)),
            qk_nope_head_dim=draw(st.integers(1, 128)),
            qk_rope_head_dim=draw(st.integers(1, 64)),
            v_head_dim=draw(st.integers(1, 128)),
        )
    return fields


@settings(max_examples=200, deadline=None)
@given(fields=model_fields(), extra_layers=st.integers(1, 16))
def test_count_properties(fields: dict, extra_layers: int) -> None:
    spec = ModelSpec.from_dict(fields)
    assert 0 < spec.num_active_params <= spec.num_params
    deeper = ModelSpec.from_dict({**fields, "num_layers": fields["num_layers"] + extra_layers})
    assert deeper.num_params >= spec.num_params
    assert deeper.num_active_params >= spec.num_active_params
