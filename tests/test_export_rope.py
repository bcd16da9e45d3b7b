"""RoPE base and Llama 3.1 scaling: carried by the spec (presets, Hugging Face configs) into Megatron-LM's
--rotary-base / --use-rope-scaling / --rope-scaling-factor (megatron/training/arguments.py), and read back."""

from __future__ import annotations

import pytest

from fathom.catalog.models import get_model
from fathom.export import export_training_plan, import_training
from fathom.export.cmdline import Options, parse_script
from fathom.export.engines.megatron import BARE_FLAGS
from fathom.importers import model_from_hf_config
from fathom.specs.plan import TrainingPlan

PLAN = TrainingPlan(seq_len=4096, global_batch=8)


def _args(text: str) -> dict:
    words = parse_script(text).find("torchrun")[1]
    return Options(words, "megatron", BARE_FLAGS).values


@pytest.mark.parametrize(
    ("model", "base", "factor"),
    [
        ("llama-3-8b", "500000", None),
        ("llama-3-70b", "500000", None),
        ("llama-3.1-8b", "500000", "8.0"),
        ("llama-3.1-70b", "500000", "8.0"),
        ("llama-3.1-405b", "500000", "8.0"),
        ("llama-3.3-70b", "500000", "8.0"),
        ("llama-3.2-1b", "500000", "32.0"),
    ],
)
def test_megatron_export_carries_llama3_rope(model, base, factor):
    spec = get_model(model)
    text, warnings = export_training_plan(PLAN, spec, "megatron")
    args = _args(text)
    assert args["--rotary-base"] == base and warnings == []
    assert args.get("--use-rope-scaling", False) is (factor is not None)
    assert args.get("--rope-scaling-factor") == factor
    back = import_training("megatron", text).model_spec
    assert (back.rope_theta, back.rope_scaling, back.rope_scaling_factor) == (
        spec.rope_theta,
        spec.rope_scaling,
        spec.rope_scaling_factor,
    )


def test_rope_flags_come_from_the_spec_not_the_name():
    spec = get_model("llama-3.1-8b").model_copy(update={"rope_theta": None, "rope_scaling": "none"})
    args = _args(export_training_plan(PLAN, spec, "megatron").text)
    assert "--rotary-base" not in args and "--use-rope-scaling" not in args
    qwen = get_model("qwen3-8b").model_copy(update={"rope_theta": 1e6})
    assert _args(export_training_plan(PLAN, qwen, "megatron").text)["--rotary-base"] == "1000000"
    alibi = get_model("mpt-7b").model_copy(update={"rope_theta": 1e4})
    assert "--rotary-base" not in _args(export_training_plan(PLAN, alibi, "megatron").text)


def test_hf_import_reads_rope_theta_and_llama3_scaling():
    config = {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "rope_type": "llama3"},
    }
    spec = model_from_hf_config(config)
    assert (spec.rope_theta, spec.rope_scaling, spec.rope_scaling_factor) == (500000.0, "llama3", 32.0)
    # transformers 5 nests both under rope_parameters
    nested = {k: v for k, v in config.items() if k not in ("rope_theta", "rope_scaling")}
    nested["rope_parameters"] = {"rope_theta": 1e6, "rope_type": "llama3", "factor": 8.0}
    spec = model_from_hf_config(nested)
    assert (spec.rope_theta, spec.rope_scaling, spec.rope_scaling_factor) == (1e6, "llama3", 8.0)
    linear = model_from_hf_config({**config, "rope_scaling": {"type": "linear", "factor": 2.0}})
    assert (linear.rope_scaling, linear.rope_scaling_factor, linear.rope_theta) == ("linear", 2.0, 500000.0)
    plain = model_from_hf_config({**config, "rope_scaling": {"rope_type": "default"}})
    assert plain.rope_scaling == "none" and plain.rope_theta == 500000.0


def test_hf_import_rejects_a_bad_rope_theta_in_one_line():
    from fathom.errors import FathomInputError

    with pytest.raises(FathomInputError, match="rope_theta") as err:
        model_from_hf_config({**_LLAMA, "rope_theta": "big"})
    assert "\n" not in str(err.value)


_LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 100,
}
