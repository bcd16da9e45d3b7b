"""Serving imports: out-of-range engine flags are one-line errors, and every flag read approximately or not at all is
named on stderr; quantised exports write the activation dtype the engine's kernels take."""

from __future__ import annotations

import json

import pytest

from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.export import ServingSetup, export_serving_plan, import_serving
from fathom.export.cmdline import parse_script
from fathom.specs.serving import ServingPlan

VLLM = "vllm serve meta-llama/Llama-3.1-8B "
SGLANG = "python -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B "


@pytest.mark.parametrize(
    ("engine", "args", "flag", "range_"),
    [
        ("vllm", "--max-num-seqs -5", "--max-num-seqs -5", ">= 1"),
        ("vllm", "--gpu-memory-utilization 1.5", "--gpu-memory-utilization 1.5", "(0, 1]"),
        ("vllm", "--gpu-memory-utilization 0", "--gpu-memory-utilization 0", "(0, 1]"),
        ("vllm", "-tp 0", "-tp 0", ">= 1"),
        ("vllm", "--tensor-parallel-size=0", "--tensor-parallel-size 0", ">= 1"),
        ("vllm", "--pipeline-parallel-size 0", "--pipeline-parallel-size 0", ">= 1"),
        ("vllm", "--max-num-batched-tokens 0", "--max-num-batched-tokens 0", ">= 1"),
        ("vllm", "--block-size 0", "--block-size 0", ">= 1"),
        ("vllm", "--max-model-len 0", "--max-model-len 0", ">= 1"),
        ("sglang", "--tp-size 0", "--tp-size 0", ">= 1"),
        ("sglang", "--max-running-requests -1", "--max-running-requests -1", ">= 1"),
        ("sglang", "--mem-fraction-static 1.2", "--mem-fraction-static 1.2", "(0, 1]"),
        ("sglang", "--page-size 0", "--page-size 0", ">= 1"),
        ("sglang", "--max-prefill-tokens 0", "--max-prefill-tokens 0", ">= 1"),
        ("sglang", "--chunked-prefill-size -2", "--chunked-prefill-size -2", ">= -1"),
    ],
)
def test_out_of_range_flags_are_one_line_errors(engine, args, flag, range_, capsys):
    command = (VLLM if engine == "vllm" else SGLANG) + args
    assert run(["import", engine, "--", command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "ValidationError" not in err
    assert flag in err and range_ in err


@pytest.mark.parametrize(
    ("engine", "args", "flag", "choices"),
    [
        ("vllm", "--dtype float64", "--dtype", "bfloat16, float, float32"),
        ("vllm", "--kv-cache-dtype fp4", "--kv-cache-dtype", "fp8_e5m2"),
        ("sglang", "--dtype float64", "--dtype", "bfloat16, float, float32"),
        ("sglang", "--kv-cache-dtype fp8", "--kv-cache-dtype", "fp8_e4m3"),  # SGLang spells it fp8_e4m3
    ],
)
def test_values_the_engine_refuses_are_errors_with_its_choices(engine, args, flag, choices, capsys):
    command = (VLLM if engine == "vllm" else SGLANG) + args
    assert run(["import", engine, "--", command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and choices in err


@pytest.mark.parametrize(
    ("args", "flags"),
    [
        ("--bogus 3", ["--bogus"]),
        ("--enable-lora --max-loras 4", ["--enable-lora", "--max-loras"]),
        ("""--speculative-config '{"method": "ngram", "num_speculative_tokens": 4}'""", ["--speculative-config"]),
        ("--data-parallel-size 2 --cpu-offload-gb 8", ["--data-parallel-size", "--cpu-offload-gb"]),
        ("--dtype float32", ["--dtype"]),
        ("--kv-cache-dtype nvfp4", ["--kv-cache-dtype"]),
        ("--quantization awq --dtype bfloat16", ["--dtype"]),
        ("--quantization gptq", ["--quantization"]),
    ],
)
def test_vllm_import_names_every_flag_it_ignores_or_approximates(args, flags, capsys):
    assert run(["import", "vllm", VLLM + args]) == 0
    captured = capsys.readouterr()
    named = [line.split(": ")[2] for line in captured.err.splitlines()]
    assert all(line.startswith("warning: vllm: ") for line in captured.err.splitlines())
    assert named == flags
    assert json.loads(captured.out)["model"] == "llama-3.1-8b"


def test_vllm_import_reads_float32_as_bf16_and_narrow_kv_as_fp8():
    plan = import_serving("vllm", VLLM + "--dtype float32 --kv-cache-dtype nvfp4").setup.plan
    assert plan.weight_dtype == "bf16" and plan.kv_dtype == "fp8"
    assert import_serving("vllm", VLLM + "--dtype float").setup.plan.weight_dtype == "bf16"


def test_sglang_import_names_every_flag_it_ignores_or_approximates(capsys):
    args = "--dp-size 2 --enable-lora --lora-paths a=/x --attention-backend triton --kv-cache-dtype fp4_e2m1 --bogus 1"
    assert run(["import", "sglang", "--", SGLANG + args]) == 0
    err = capsys.readouterr().err
    named = {line.split(": ")[2] for line in err.splitlines()}
    assert named == {"--dp-size", "--enable-lora", "--lora-paths", "--attention-backend", "--kv-cache-dtype", "--bogus"}


def test_server_and_logging_flags_are_read_silently():
    quiet = "--host 0.0.0.0 --port 8000 --served-model-name m --trust-remote-code --disable-log-stats --seed 0"
    assert import_serving("vllm", VLLM + quiet).warnings == []
    quiet = "--host 0.0.0.0 --port 30000 --trust-remote-code --log-level info --random-seed 1"
    assert import_serving("sglang", SGLANG + quiet).warnings == []


def test_vllm_reads_underscored_flags_and_context_lengths():
    back = import_serving("vllm", VLLM + "--max_num_seqs 7 --max-model-len 32k --disable-sliding-window")
    assert back.warnings == []
    assert back.setup.plan.max_batch == 7 and back.setup.plan.max_model_len == 32000
    assert back.setup.plan.sliding_window is False
    assert import_serving("vllm", VLLM + "--max-model-len 32K").setup.plan.max_model_len == 32768
    with pytest.raises(FathomInputError, match="--max-model-len"):
        import_serving("vllm", VLLM + "--max-model-len lots")


def test_vllm_launched_as_the_api_server_module():
    back = import_serving("vllm", "python -m vllm.entrypoints.openai.api_server --model org/m -tp 2")
    assert back.model == "org/m" and back.setup.plan.tp == 2 and back.warnings == []


def _flags(text: str) -> dict[str, str | None]:
    words = parse_script(text).commands[0][1]
    return {w: (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None)
            for i, w in enumerate(words) if w.startswith("--")}  # fmt: skip


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize(("weights", "quant"), [("int4", "awq"), ("int8", "gptq")])
def test_awq_and_gptq_exports_run_float16(engine, weights, quant):
    setup = ServingSetup(plan=ServingPlan(weight_dtype=weights, kv_dtype="bf16"))
    text, warnings = export_serving_plan(setup, "meta-llama/Llama-3.1-8B", engine)
    flags = _flags(text)
    assert flags["--dtype"] == "float16" and flags["--quantization"] == quant
    fields = {w.split(":", 1)[0]: w for w in warnings}
    assert "pre-quantized checkpoint" in fields["weight_dtype"]
    assert "float16" in fields["kv_dtype"]
    back = import_serving(engine, text).warnings  # float16 with awq/gptq is what the engine takes: no --dtype warning
    assert back == ([] if quant == "awq" else ["--quantization: GPTQ's bit width is in the checkpoint; read as 4-bit"])


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_fp8_and_16_bit_exports_keep_their_dtype(engine):
    for weights, dtype in (("bf16", "bfloat16"), ("fp16", "float16"), ("fp8", "bfloat16")):
        setup = ServingSetup(plan=ServingPlan(weight_dtype=weights, kv_dtype="fp8" if weights == "fp8" else weights))
        text, warnings = export_serving_plan(setup, "meta-llama/Llama-3.1-8B", engine)
        assert _flags(text)["--dtype"] == dtype and warnings == []


def test_cli_export_int4_warns_about_the_checkpoint(capsys):
    assert run(["export", "serve", "--engine", "vllm", "--model", "llama-3.1-8b", "--precision", "int4"]) == 0
    captured = capsys.readouterr()
    assert "--dtype float16" in captured.out and "--quantization awq" in captured.out
    assert "--dtype bfloat16" not in captured.out
    assert "warning: vllm: weight_dtype:" in captured.err and "AWQ checkpoint" in captured.err
