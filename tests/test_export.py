"""Engine exporters and importers: round trips, named warnings, the CLI, and the engines' documented schemas."""

from __future__ import annotations

import json
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom.catalog.models import get_model, list_models
from fathom.cli.app import run
from fathom.export import ServingSetup, export_serving_plan, export_training_plan, import_serving, import_training
from fathom.export.base import canonical_training
from fathom.export.cmdline import Options, parse_script
from fathom.specs.plan import TrainingPlan
from fathom.specs.serving import ServingPlan

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = {name: get_model(name) for name in ("llama-3.1-70b", "mixtral-8x7b", "deepseek-v3")}


@st.composite
def training_plans(draw, model: str, **limits):
    """A structurally valid plan for ``model`` (fathom.training.plans.check_plan's rules), each field drawn from
    ``limits[field]`` when given."""
    spec = MODELS[model]

    def pick(name, values):
        return draw(st.sampled_from(limits.get(name, values)))

    tp = pick("tp", [t for t in (1, 2, 4, 8) if spec.num_heads % t == 0 and spec.num_kv_heads % t in (0, t)])
    pp = pick("pp", (1, 2, 4))
    cp, dp = pick("cp", (1, 2)), pick("dp", (1, 2, 4, 8))
    vpp = pick("vpp", (1, 2)) if pp > 1 else 1
    experts = spec.moe.num_experts if spec.moe else 1
    ep = pick("ep", [e for e in (1, 2, 4, 8) if (tp * dp * cp) % e == 0 and experts % e == 0])
    micro = pick("micro_batch", (1, 2))
    offload = pick("offload", ("none", "cpu", "nvme"))
    zero = pick("zero", (1, 2, 3) if offload != "none" else (0, 1, 2, 3))
    schedule = "interleaved" if vpp > 1 else pick("schedule", ("1f1b", "zero-bubble"))
    precision = pick("precision", ("bf16", "fp16", "fp8", "fp32"))
    recompute = pick("recompute", ("none", "selective", "full"))
    balanced = pp > 1 and vpp == 1 and (spec.num_layers + 2) % pp == 0
    levers = dict(  # the plan options `fathom export train` shares with `fathom train`
        finetune=pick("finetune", ("none", "lora") if precision == "fp8" else ("none", "lora", "qlora")),
        lora_rank=pick("lora_rank", (16, 64)),
        lora_targets=pick("lora_targets", ("all-linear", "attention")),
        frozen_layers=pick("frozen_layers", (0, 2)),
        activation_offload_layers=pick("activation_offload_layers", (0, 2)) if pp == 1 and recompute == "none" else 0,
        master_weights=pick("master_weights", (True, False)),
        fp8_saved_inputs=pick("fp8_saved_inputs", (True, False)),
        moe_routing=pick("moe_routing", ("balanced", "dropless")),
        moe_router_fusion=pick("moe_router_fusion", (False, True)),
        cuda_graphs=pick("cuda_graphs", ("none", "attn", "attn-moe-router") + (() if spec.moe else ("full",))),
        zero3_gather=pick("zero3_gather", ("prefetch", "per-parameter-sync", "backward-post")),
        zero2_comm=pick("zero2_comm", ("per-step", "per-unit")),
        pipeline_engine=pick("pipeline_engine", ("megatron", "deepspeed")),
        overlap_tp_comm=pick("overlap_tp_comm", (False, True)),
        async_tp_allreduce=pick("async_tp_allreduce", (True, False)),
        overlap_p2p_comm=pick("overlap_p2p_comm", (False, True)),
        overlap_param_gather=pick("overlap_param_gather", (False, True)),
        balance_pipeline_ends=pick("balance_pipeline_ends", (False, True)) if balanced else False,
    )
    return TrainingPlan(
        seq_len=pick("seq_len", (2048, 4096, 8192)),
        global_batch=micro * dp * draw(st.integers(1, 8)),
        micro_batch=micro,
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=ep,
        vpp=vpp,
        sequence_parallel=pick("sequence_parallel", (True, False)),
        zero=zero,
        schedule=schedule,
        recompute=recompute,
        precision=precision,
        optimizer=pick("optimizer", ("adamw", "adam-8bit", "adafactor", "sgd")),
        offload=offload,
        attention=pick("attention", ("flash3", "flash2", "flash1", "unfused")),
        moe_dispatcher=pick("moe_dispatcher", ("alltoall", "deepep")),
        overlap_moe_comm=pick("overlap_moe_comm", (True, False)),
        overlap_grad_reduce=pick("overlap_grad_reduce", (True, False)),
        **levers,
    )


def _round_trip(plan, model, engine):
    spec = MODELS[model]
    text, warnings = export_training_plan(plan, spec, engine)
    back = import_training(engine, text, spec=spec, num_gpus=plan.num_gpus).plan
    return canonical_training(plan, spec), canonical_training(back, spec), warnings


@pytest.mark.parametrize("engine", ["megatron", "deepspeed", "torchtitan"])
@pytest.mark.parametrize("model", list(MODELS))
@SETTINGS
@given(data=st.data())
def test_every_lost_training_field_is_named(engine, model, data):
    plan = data.draw(training_plans(model))
    original, back, warnings = _round_trip(plan, model, engine)
    named = {w.split(":", 1)[0] for w in warnings}
    for field in TrainingPlan.model_fields:
        assert getattr(original, field) == getattr(back, field) or field in named, field


FULL_TRAINING = dict(finetune=("none",), frozen_layers=(0,), master_weights=(True,), moe_routing=("balanced",))
EXPRESSIBLE = {
    "megatron": dict(
        FULL_TRAINING,
        pp=(1, 4),  # at pp=2 Megatron's interleaved schedule insists on overlapped sends
        schedule=("1f1b",),
        optimizer=("adamw", "sgd", "adam-8bit"),
        offload=("none", "cpu"),
        attention=("flash2", "unfused"),
        fp8_saved_inputs=(True,),
        zero3_gather=("prefetch",),
        zero2_comm=("per-step",),
        pipeline_engine=("megatron",),
        overlap_tp_comm=(False,),
        async_tp_allreduce=(True,),
        overlap_p2p_comm=(False,),
        overlap_param_gather=(False,),
    ),
    "deepspeed": dict(
        FULL_TRAINING,
        activation_offload_layers=(0,),
        cuda_graphs=("none",),
        moe_router_fusion=(False,),
        zero3_gather=("prefetch",),
        zero2_comm=("per-step",),
        overlap_tp_comm=(False,),
        async_tp_allreduce=(False,),
        overlap_param_gather=(False,),
        pp=(1,),
        cp=(1,),
        ep=(1,),
        schedule=("1f1b",),
        sequence_parallel=(False,),
        recompute=("none", "full"),
        precision=("bf16", "fp16", "fp32"),
        optimizer=("adamw", "sgd", "adafactor"),
        offload=("none", "cpu"),
        attention=("flash2",),
        moe_dispatcher=("alltoall",),
        overlap_moe_comm=(False,),
    ),
    "torchtitan": dict(
        FULL_TRAINING,
        activation_offload_layers=(0,),
        cuda_graphs=("none",),
        moe_router_fusion=(False,),
        fp8_saved_inputs=(False,),
        async_tp_allreduce=(False,),
        zero3_gather=("prefetch",),
        zero2_comm=("per-unit",),
        pipeline_engine=("megatron",),
        overlap_p2p_comm=(False,),
        overlap_param_gather=(False,),
        zero=(0, 2, 3),
        schedule=("1f1b",),
        sequence_parallel=(True,),
        precision=("bf16", "fp8", "fp32"),
        optimizer=("adamw",),
        offload=("none",),
        attention=("flash2",),
        overlap_grad_reduce=(True,),
        overlap_moe_comm=(False,),
    ),
}


@pytest.mark.parametrize("engine", list(EXPRESSIBLE))
@pytest.mark.parametrize("model", ["llama-3.1-70b", "deepseek-v3"])
@SETTINGS
@given(data=st.data())
def test_expressible_plans_round_trip_exactly(engine, model, data):
    plan = data.draw(training_plans(model, **EXPRESSIBLE[engine]))
    original, back, warnings = _round_trip(plan, model, engine)
    if engine == "deepspeed":  # ds_config has no sequence length: always said, and given back by the user
        assert [w for w in warnings if not w.startswith("seq_len:")] == []
        back = back.model_copy(update={"seq_len": plan.seq_len})
    else:
        assert warnings == []
    assert back == original


@st.composite
def serving_setups(draw, engine):
    weight = draw(st.sampled_from(("bf16", "fp16", "fp8", "int4")))
    kv = draw(st.sampled_from(("fp8", weight) if weight in ("bf16", "fp16") else ("fp8", "bf16", "fp16")))
    tp = draw(st.sampled_from((1, 2, 4, 8)))
    plan = ServingPlan(
        tp=tp,
        pp=draw(st.sampled_from((1, 2))),
        ep=draw(st.sampled_from((1, tp) if engine == "vllm" else (1, 2, 4))),
        weight_dtype=weight,
        kv_dtype=kv,
        attention=draw(st.sampled_from(("flash2", "flash3"))),
        cuda_graphs=draw(st.booleans()),
        max_batch=draw(st.integers(1, 2048)),
        max_batch_tokens=draw(st.integers(16, 65536)),
        block_size=draw(st.sampled_from((1, 16, 32, 64))),
        memory_utilization=draw(st.sampled_from((0.5, 0.85, 0.9, 0.95))),
        max_model_len=draw(st.sampled_from((None, 4096, 131072))),
        sliding_window=draw(st.booleans()) if engine == "vllm" else True,
    )
    return ServingSetup(
        plan=plan,
        scheduler=draw(st.sampled_from(("continuous", "chunked-prefill"))),
        prefix_caching=draw(st.booleans()),
    )


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@SETTINGS
@given(data=st.data())
def test_serving_round_trip(engine, data):
    setup = data.draw(serving_setups(engine))
    text, warnings = export_serving_plan(setup, "meta-llama/Llama-3.1-8B", engine)
    back = import_serving(engine, text)
    assert back.warnings == [] and back.model == "meta-llama/Llama-3.1-8B"
    if setup.plan.weight_dtype != "int4":
        assert warnings == [] and back.setup == setup
        return
    # INT4 is an AWQ checkpoint (warned), and AWQ runs float16 activations only: a bf16 KV cache comes back fp16.
    fields = {w.split(":", 1)[0] for w in warnings}
    assert fields == ({"weight_dtype", "kv_dtype"} if setup.plan.kv_dtype == "bf16" else {"weight_dtype"})
    kv = "fp16" if setup.plan.kv_dtype == "bf16" else setup.plan.kv_dtype
    assert back.setup == ServingSetup(
        plan=setup.plan.model_copy(update={"kv_dtype": kv}),
        scheduler=setup.scheduler,
        prefix_caching=setup.prefix_caching,
    )


@pytest.mark.parametrize(
    ("engine", "change", "field"),
    [
        ("megatron", dict(schedule="zero-bubble"), "schedule"),
        ("megatron", dict(offload="nvme", zero=1), "offload"),
        ("megatron", dict(optimizer="adafactor"), "optimizer"),
        ("deepspeed", dict(pp=2, dp=4), "pp"),
        ("deepspeed", dict(recompute="selective"), "recompute"),
        ("deepspeed", dict(precision="fp8"), "precision"),
        ("torchtitan", dict(precision="fp16"), "precision"),
        ("torchtitan", dict(zero=1), "zero"),
        ("torchtitan", dict(optimizer="sgd"), "optimizer"),
    ],
)
def test_unsupported_training_fields_warn_by_name(engine, change, field):
    plan = TrainingPlan(seq_len=4096, global_batch=64, tp=2, dp=8).model_copy(update=change)
    _, warnings = export_training_plan(plan, MODELS["llama-3.1-70b"], engine)
    assert any(w.startswith(f"{field}:") for w in warnings), warnings


@pytest.mark.parametrize(
    ("engine", "plan_change", "setup_change", "field"),
    [
        ("vllm", {}, dict(preemption="swap"), "preemption"),
        ("vllm", dict(tp=4, ep=2), {}, "ep"),
        ("vllm", dict(kv_free_fraction=0.8), {}, "kv_free_fraction"),
        ("sglang", dict(weight_dtype="int8"), {}, "weight_dtype"),
        ("sglang", {}, dict(scheduler="decode-priority"), "scheduler"),
        ("sglang", dict(attention="flash1"), {}, "attention"),
    ],
)
def test_unsupported_serving_fields_warn_by_name(engine, plan_change, setup_change, field):
    setup = ServingSetup(plan=ServingPlan(**plan_change), **setup_change)
    _, warnings = export_serving_plan(setup, "m", engine)
    assert any(w.startswith(f"{field}:") for w in warnings), warnings


@pytest.mark.parametrize("name", list_models())
def test_megatron_arguments_carry_the_model_shape(name):
    spec = get_model(name)
    plan = TrainingPlan(seq_len=2048, global_batch=8)
    text, warnings = export_training_plan(plan, spec, "megatron")
    shape = import_training("megatron", text).model_spec
    if not any(w.startswith("model.") for w in warnings):
        assert shape.num_params == spec.num_params
        assert (shape.num_layers, shape.num_kv_heads, shape.head_dim) == (
            spec.num_layers,
            spec.num_kv_heads,
            spec.head_dim,
        )


def test_cli_bad_engine_exits_2_with_choices(capsys):
    code = run(
        [
            "export",
            "train",
            "--engine",
            "megatronn",
            "--model",
            "llama-3.1-8b",
            "--num-gpus",
            "8",
            "--seq-len",
            "4096",
            "--global-batch",
            "64",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "megatron" in err and "deepspeed" in err and "torchtitan" in err
    assert run(["import", "trt-llm", "x"]) == 2
    assert "vllm" in capsys.readouterr().err


def test_cli_export_writes_file_and_warns_on_stderr(tmp_path, capsys):
    out = tmp_path / "launch.sh"
    code = run(
        [
            "export",
            "train",
            "--engine",
            "megatron",
            "--model",
            "llama-3.1-8b",
            "--num-gpus",
            "16",
            "--seq-len",
            "4096",
            "--global-batch",
            "64",
            "--tp",
            "2",
            "--pp",
            "2",
            "--schedule",
            "zero-bubble",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and captured.out == ""
    assert "warning: megatron: schedule:" in captured.err
    assert "--nnodes 2" in out.read_text() and "--pipeline-model-parallel-size 2" in out.read_text()
    assert run(["import", "megatron", str(out), "--gpu", "h100-sxm", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["plan"]["tp"] == 2 and result["plan"]["dp"] == 4 and result["step_time_s"] > 0


def test_cli_import_serving_arguments(capsys):
    args = "vllm serve meta-llama/Llama-3.1-8B-Instruct -tp 2 --max-num-seqs 64 --kv-cache-dtype fp8 --enforce-eager"
    assert run(["import", "vllm", args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "llama-3.1-8b"
    assert data["plan"]["tp"] == 2 and data["plan"]["max_batch"] == 64 and data["plan"]["kv_dtype"] == "fp8"
    assert data["plan"]["cuda_graphs"] is False and data["scheduler"] == "chunked-prefill"
    assert (
        run(["import", "sglang", "--", "--model-path x --tp-size 3 --disable-radix-cache --chunked-prefill-size -1"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["plan"]["tp"] == 3 and data["prefix_caching"] is False and data["scheduler"] == "continuous"


def test_cli_import_deepspeed_needs_seq_len_override(tmp_path, capsys):
    path = tmp_path / "ds.json"
    path.write_text(
        json.dumps(
            {
                "train_batch_size": 256,
                "train_micro_batch_size_per_gpu": 2,
                "gradient_accumulation_steps": 4,
                "bf16": {"enabled": True},
                "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}},
            }
        )
    )
    assert run(["import", "deepspeed", str(path), "--model", "llama-3.1-8b", "--seq-len", "2048"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)["plan"]
    assert (plan["dp"], plan["micro_batch"], plan["zero"], plan["seq_len"]) == (32, 2, 3, 2048)
    assert "offload:" in captured.err  # parameter offload is named, not dropped
    path.write_text("{not json")
    assert run(["import", "deepspeed", str(path)]) == 2


def test_launch_script_parsing_expands_variables_and_continuations():
    script = parse_script(
        '#!/bin/bash\n# fathom-model: m\nTP=${TP:-4}\nA=1 torchrun \\\n  --nnodes 2 x.py --tp "$TP" --b\n'
    )
    env, words = script.find("torchrun")
    opts = Options(words, "t", ("--b",))
    assert env == {"A": "1"} and opts.text("--tp") == "4" and opts.flag("--b") and opts.number("--nnodes") == 2
    assert script.comment_value("fathom-model") == "m"


# ---- the engines' documented schemas (used where an engine is not installed; see tests/test_export_engines.py)

# DeepSpeed config keys and JSON types, https://www.deepspeed.ai/docs/config-json/
DEEPSPEED_SCHEMA = {
    "train_batch_size": int,
    "train_micro_batch_size_per_gpu": int,
    "gradient_accumulation_steps": int,
    "gradient_clipping": float,
    "steps_per_print": int,
    "bf16": dict,
    "fp16": dict,
    "optimizer": dict,
    "zero_optimization": dict,
    "activation_checkpointing": dict,
    "tensor_parallel": dict,
    "sequence_parallel_size": int,
}
ZERO_KEYS = {"stage": int, "overlap_comm": bool, "contiguous_gradients": bool, "offload_optimizer": dict}
ACTIVATION_KEYS = {
    "partition_activations",
    "contiguous_memory_optimization",
    "cpu_checkpointing",
    "synchronize_checkpoint_boundary",
    "profile",
    "number_checkpoints",
}


@SETTINGS
@given(plan=training_plans("mixtral-8x7b"))
def test_deepspeed_config_matches_documented_schema(plan):
    config = json.loads(export_training_plan(plan, MODELS["mixtral-8x7b"], "deepspeed").text)
    for key, value in config.items():
        assert isinstance(value, DEEPSPEED_SCHEMA[key]) and not isinstance(value, bool), key
    for key, value in config["zero_optimization"].items():
        assert isinstance(value, ZERO_KEYS[key]), key
    assert config["zero_optimization"]["stage"] in (0, 1, 2, 3)
    assert config["optimizer"]["type"] in ("AdamW", "SGD", "Adafactor")
    assert set(config.get("activation_checkpointing", {})) <= ACTIVATION_KEYS
    if "offload_optimizer" in config["zero_optimization"]:
        assert config["zero_optimization"]["offload_optimizer"]["device"] in ("cpu", "nvme")
    for section in ("bf16", "fp16"):
        assert isinstance(config.get(section, {}).get("enabled", True), bool)
    assert config["train_batch_size"] == (
        config["train_micro_batch_size_per_gpu"] * config["gradient_accumulation_steps"] * plan.dp
    )


# torchtitan v0.2.2 JobConfig fields (torchtitan/config/job_config.py) that the exporter writes, with their types.
TORCHTITAN_SCHEMA = {
    "job": {"description": str},
    "model": {"name": str, "flavor": str, "converters": list},
    "optimizer": {"name": str, "lr": float, "eps": float, "weight_decay": float},
    "training": {
        "local_batch_size": int,
        "global_batch_size": int,
        "seq_len": int,
        "mixed_precision_param": str,
        "enable_cpu_offload": bool,
        "max_norm": float,
    },
    "parallelism": {
        "data_parallel_replicate_degree": int,
        "data_parallel_shard_degree": int,
        "fsdp_reshard_after_forward": str,
        "tensor_parallel_degree": int,
        "pipeline_parallel_degree": int,
        "pipeline_parallel_schedule": str,
        "pipeline_parallel_microbatch_size": int,
        "context_parallel_degree": int,
        "expert_parallel_degree": int,
        "expert_parallel_comm_backend": str,
        "pipeline_parallel_layers_per_stage": int,
        "pipeline_parallel_first_stage_less_layers": int,
        "pipeline_parallel_last_stage_less_layers": int,
        "module_fqns_per_model_part": list,
        "enable_async_tensor_parallel": bool,
    },
    "compile": {"enable": bool, "components": list},
    "activation_checkpoint": {"mode": str, "selective_ac_option": str},
}
FLOAT8_KEYS = {"enable_fsdp_float8_all_gather", "precompute_float8_dynamic_scale_for_fsdp"}


@SETTINGS
@given(plan=training_plans("deepseek-v3"))
def test_torchtitan_toml_matches_job_config(plan):
    config = tomllib.loads(export_training_plan(plan, MODELS["deepseek-v3"], "torchtitan").text)
    float8 = config.pop("quantize", {}).get("linear", {}).get("float8")
    assert float8 is None or set(float8) <= FLOAT8_KEYS
    for section, values in config.items():
        for key, value in values.items():
            assert isinstance(value, TORCHTITAN_SCHEMA[section][key]), f"{section}.{key}"
    par = config["parallelism"]
    assert par["fsdp_reshard_after_forward"] in ("default", "always", "never")
    assert par["pipeline_parallel_schedule"] in ("1F1B", "Interleaved1F1B")
    assert config["activation_checkpoint"]["mode"] in ("none", "selective", "full")
    assert config["training"]["mixed_precision_param"] in ("bfloat16", "float32")
    assert par["data_parallel_replicate_degree"] * par["data_parallel_shard_degree"] == plan.dp


# Flags as listed by `vllm serve --help` (https://docs.vllm.ai/en/latest/configuration/engine_args.html) and
# `python -m sglang.launch_server --help` (https://docs.sglang.ai/advanced_features/server_arguments.html).
VLLM_FLAGS = {
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--enable-expert-parallel",
    "--dtype",
    "--quantization",
    "--kv-cache-dtype",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--enable-chunked-prefill",
    "--no-enable-chunked-prefill",
    "--enable-prefix-caching",
    "--no-enable-prefix-caching",
    "--block-size",
    "--gpu-memory-utilization",
    "--enforce-eager",
    "--max-model-len",
    "--disable-sliding-window",
}
SGLANG_FLAGS = {
    "--model-path",
    "--tp-size",
    "--pp-size",
    "--ep-size",
    "--dtype",
    "--quantization",
    "--kv-cache-dtype",
    "--max-running-requests",
    "--max-prefill-tokens",
    "--chunked-prefill-size",
    "--page-size",
    "--mem-fraction-static",
    "--attention-backend",
    "--disable-radix-cache",
    "--disable-cuda-graph",
    "--context-length",
}


@pytest.mark.parametrize(("engine", "known"), [("vllm", VLLM_FLAGS), ("sglang", SGLANG_FLAGS)])
@SETTINGS
@given(data=st.data())
def test_serving_flags_are_the_engines_own(engine, known, data):
    text = export_serving_plan(data.draw(serving_setups(engine)), "m", engine).text
    flags = {w for w in parse_script(text).commands[0][1] if w.startswith("--")}
    assert flags <= known
