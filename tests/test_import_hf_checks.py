"""Hugging Face config import: absurd numbers, checkpoint folders, multimodal wrappers and self-contradicting
configs end in one-line input errors (or a faithful import), never a traceback or a silently different model."""

from __future__ import annotations

import json

import pytest

from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.importers import model_from_hf_config

LLAMA = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "rope_type": "llama3"},
}
MISTRAL = {**LLAMA, "model_type": "mistral", "vocab_size": 32000, "sliding_window": 4096, "rope_scaling": None}
QWEN3 = {
    "model_type": "qwen3",
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rope_theta": 1e6,
    "sliding_window": 4096,
    "use_sliding_window": True,
    "max_window_layers": 36,
}
DEEPSEEK_V3 = {
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "num_hidden_layers": 61,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "vocab_size": 129280,
    "max_position_embeddings": 163840,
    "rope_theta": 10000,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
}


def _error(config) -> str:
    with pytest.raises(FathomInputError) as info:
        model_from_hf_config(config)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


# ---- 1: numbers past any real model ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({**LLAMA, "hidden_size": 10**400}, "'hidden_size'"),
        ({**LLAMA, "hidden_size": 2**31 + 1}, "'hidden_size'"),
        ({**LLAMA, "vocab_size": 1e300}, "'vocab_size'"),
        ({**LLAMA, "num_hidden_layers": float("inf")}, "'num_hidden_layers'"),
        ({**MISTRAL, "sliding_window": 10**400}, "'sliding_window'"),
        ({**LLAMA, "rope_theta": float("inf")}, "'rope_theta'"),
        ({**LLAMA, "rope_theta": float("nan")}, "'rope_theta'"),
        ({**LLAMA, "rope_theta": 10**400}, "'rope_theta'"),
        ({**LLAMA, "rope_scaling": {"rope_type": "llama3", "factor": 10**400}}, "'rope_scaling.factor'"),
        ({**DEEPSEEK_V3, "first_k_dense_replace": 10**400}, "'first_k_dense_replace'"),
    ],
)
def test_absurd_numbers_are_one_line_errors(config, field):
    message = _error(config)
    assert field in message and "at most" in message


def test_bound_is_inclusive_and_float_sizes_still_read():
    assert model_from_hf_config({**MISTRAL, "sliding_window": 2**31}).sliding_window == 2**31
    assert model_from_hf_config({**LLAMA, "hidden_size": 4096.0}).hidden_size == 4096


def test_json_beyond_python_limits_is_an_input_error(tmp_path):
    digits = tmp_path / "digits.json"
    digits.write_text('{"model_type": "llama", "hidden_size": 1' + "0" * 5000 + "}")
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    for path in (digits, deep):
        for load in (get_model, model_from_hf_config):
            with pytest.raises(FathomInputError, match="malformed JSON"):
                load(str(path))


def test_model_spec_files_are_bounded_too(tmp_path):
    spec = tmp_path / "huge.yaml"
    fields = "num_layers: 2\nhidden_size: 1.0e+400\nnum_heads: 4\nnum_kv_heads: 4\nhead_dim: 16\nffn_size: 64\n"
    spec.write_text(fields + "vocab_size: 100\n")
    with pytest.raises(FathomInputError, match="hidden_size"):
        get_model(str(spec))
    spec.write_text(spec.read_text().replace("1.0e+400", str(10**40)))
    with pytest.raises(FathomInputError, match="hidden_size.*less than or equal"):
        get_model(str(spec))


def test_cli_exit_2_on_huge_integer(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, "hidden_size": 10**400}))
    argv = ["train", "--model", str(path), "--gpu", "h100-sxm", "--num-gpus", "8", "--seq-len", "2048"]
    assert run(argv + ["--global-batch", "16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hidden_size" in err and "Traceback" not in err


# ---- 2: a checkpoint folder ------------------------------------------------------------------------------
def test_model_argument_may_be_a_folder(tmp_path):
    folder = tmp_path / "Meta-Llama-3.1-8B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    spec = get_model(str(folder))
    assert spec.name == "meta-llama-3.1-8b" and spec.num_params == get_model("llama-3.1-8b").num_params
    assert model_from_hf_config(folder).num_params == spec.num_params
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FathomInputError, match="has no config.json"):
        get_model(str(empty))
    with pytest.raises(FathomInputError, match="has no config.json"):
        model_from_hf_config(empty)
    with pytest.raises(FathomInputError, match="no such file or directory") as info:
        get_model(str(tmp_path / "missing" / "folder"))
    assert "did you mean" not in str(info.value)


# ---- 3: multimodal wrappers ------------------------------------------------------------------------------
def test_llava_and_mistral3_import_their_language_model():
    llava = model_from_hf_config(
        {"model_type": "llava", "text_config": LLAMA, "vision_config": {"model_type": "clip_vision_model"}}
    )
    assert llava.num_params == model_from_hf_config(LLAMA).num_params
    assert "vision tower is not modelled" in llava.source and "llava" in llava.source
    mistral3 = model_from_hf_config({"model_type": "mistral3", "text_config": MISTRAL, "vision_config": {}})
    assert mistral3.family == "mistral" and mistral3.sliding_window == 4096


def test_gemma3_wrapper_uses_gemma3_text_defaults():
    """google/gemma-3-4b-it's text_config gives only the sizes that differ from Gemma3TextConfig's defaults;
    the language model has 3.88B parameters (Gemma 3 report, Table 1: 675M embedding + 3,209M non-embedding)."""
    text = {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "model_type": "gemma3_text",
        "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    }
    spec = model_from_hf_config({"model_type": "gemma3", "text_config": text, "vision_config": {}})
    assert abs(spec.num_params / 3.88e9 - 1) < 0.01
    assert (spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.vocab_size) == (8, 4, 256, 262208)
    assert spec.qk_norm and spec.tied_embeddings and spec.norms_per_layer == 4
    assert (spec.sliding_window, spec.num_sliding_window_layers) == (1024, 29)  # 5 of every 6 layers
    assert (spec.rope_scaling, spec.rope_scaling_factor, spec.rope_theta) == ("linear", 8.0, 1e6)


def test_qwen2_vl_flat_and_nested():
    text = {k: v for k, v in QWEN3.items() if k not in ("head_dim", "use_sliding_window")}
    text.update(rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
    flat = model_from_hf_config({**text, "model_type": "qwen2_vl", "vision_config": {"depth": 32}})
    nested = model_from_hf_config(
        {"model_type": "qwen2_5_vl", "text_config": {**text, "model_type": "qwen2_5_vl_text"}}
    )
    assert flat.num_params == nested.num_params and flat.qkv_bias and flat.rope_scaling == "none"
    assert "vision tower" in flat.source and "vision tower" in nested.source


def test_unsupported_nested_text_config_is_named_without_close_matches():
    message = _error({"model_type": "llama4", "text_config": {**LLAMA, "model_type": "llama4_text"}})
    assert "text_config" in message and "'llama4_text'" in message and "not supported" in message
    assert "did you mean" not in message and "qwen3" in message  # the supported types are listed
    assert "not supported" in _error({"model_type": "paligemma", "text_config": {"hidden_size": 8}})
    assert "must be an object" in _error({"model_type": "llava", "text_config": "llama"})
    no_text = _error({"model_type": "idefics9", "vision_config": {"hidden_size": 8}})
    assert "multimodal" in no_text and "did you mean" not in no_text


def test_nested_errors_name_the_nested_field():
    text = {k: v for k, v in LLAMA.items() if k != "intermediate_size"}
    message = _error({"model_type": "llava", "text_config": text})
    assert "'text_config.intermediate_size'" in message and "llava" in message
    bad = _error({"model_type": "llava", "text_config": {**LLAMA, "num_hidden_layers": 10**400}})
    assert "'text_config.num_hidden_layers'" in bad


# ---- 4: configs that contradict themselves ----------------------------------------------------------------
def test_deepseek_dense_prefix_longer_than_the_model():
    message = _error({**DEEPSEEK_V3, "first_k_dense_replace": 100})
    assert "'first_k_dense_replace' (100)" in message and "61" in message
    message = _error({**DEEPSEEK_V3, "first_k_dense_replace": 60, "moe_layer_freq": 7})
    assert "first_k_dense_replace and moe_layer_freq" in message
    assert model_from_hf_config({**DEEPSEEK_V3, "first_k_dense_replace": 60}).num_moe_layers == 1


def test_qwen_moe_placement_checked():
    moe = {**QWEN3, "model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 2}
    moe.update(moe_intermediate_size=768, use_sliding_window=False)
    assert "'mlp_only_layers'" in _error({**moe, "mlp_only_layers": [40]})
    assert "decoder_sparse_step" in _error({**moe, "decoder_sparse_step": 40})


def test_layer_types_must_cover_every_layer():
    short = {**QWEN3, "layer_types": ["sliding_attention"] * 3}
    assert "'layer_types' has 3 entries" in _error(short) and "36" in _error(short)
    assert "full_attention" in _error({**QWEN3, "layer_types": ["x"] * 36})
    half = ["full_attention", "sliding_attention"] * 18
    assert model_from_hf_config({**QWEN3, "layer_types": half}).num_sliding_window_layers == 18
    # transformers drops sliding_window unless use_sliding_window: layer_types alone does not slide
    assert model_from_hf_config({**QWEN3, "layer_types": half, "use_sliding_window": False}).sliding_window == 0
    gemma = {**LLAMA, "model_type": "gemma2", "rope_scaling": None, "layer_types": ["sliding_attention"]}
    assert "'layer_types' has 1 entries" in _error(gemma)


@pytest.mark.parametrize("value", ["llama3", ["llama3"], 8.0])
def test_rope_scaling_must_be_an_object(value):
    message = _error({**LLAMA, "rope_scaling": value})
    assert "'rope_scaling' must be an object" in message and "rope_type" in message


@pytest.mark.parametrize(
    ("config", "kind", "factor"),
    [
        (DEEPSEEK_V3, "yarn", 40.0),
        ({**LLAMA, "rope_scaling": {"type": "linear", "factor": 4}}, "linear", 4.0),
        ({**LLAMA, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "dynamic", 2.0),
        ({**LLAMA, "rope_scaling": {"rope_type": "default"}}, "none", 1.0),
        ({**LLAMA, "rope_scaling": {}}, "none", 1.0),
        ({**LLAMA, "rope_scaling": None, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "yarn", 4.0),
        # Phi-3-mini-128k: longrope gives short/long factors; the factor is 131072 / 4096
        (
            {
                **LLAMA,
                "model_type": "phi3",
                "original_max_position_embeddings": 4096,
                "rope_scaling": {"type": "longrope", "long_factor": [1.0] * 48, "short_factor": [1.0] * 48},
            },
            "longrope",
            32.0,
        ),
        ({**LLAMA, "model_type": "phi3", "rope_scaling": {"type": "su", "factor": 16}}, "longrope", 16.0),
    ],
)
def test_every_rope_scaling_type_is_recorded(config, kind, factor):
    spec = model_from_hf_config(config)
    assert (spec.rope_scaling, spec.rope_scaling_factor) == (kind, factor)


def test_unknown_or_incomplete_rope_scaling():
    message = _error({**LLAMA, "rope_scaling": {"rope_type": "ntk-by-parts", "factor": 2.0}})
    assert "'rope_scaling.rope_type'" in message and "yarn" in message and "longrope" in message
    assert "'rope_scaling.factor'" in _error({**LLAMA, "rope_scaling": {"rope_type": "yarn"}})
    assert "rope_type" in _error({**LLAMA, "rope_scaling": {"factor": 2.0}})
    assert "'rope_parameters'" in _error({**LLAMA, "rope_scaling": None, "rope_parameters": "yarn"})


def test_mpt_nested_fields_are_checked():
    mpt = {"model_type": "mpt", "d_model": 4096, "n_heads": 32, "n_layers": 32, "vocab_size": 50432}
    assert model_from_hf_config(mpt).ffn_size == 4 * 4096
    assert "'expansion_ratio'" in _error({**mpt, "expansion_ratio": float("nan")})
    assert "'ffn_config.ffn_hidden_size'" in _error({**mpt, "ffn_config": {"ffn_hidden_size": 10**400}})
    assert "'attn_config'" in _error({**mpt, "attn_config": "alibi"})
