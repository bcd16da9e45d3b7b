"""`fathom import deepspeed|megatron|torchtitan`: malformed engine files are one-line input errors naming the
engine's key, and settings fathom drops or approximates are warnings."""

from __future__ import annotations

import json

import pytest

from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.export import export_training_plan, import_training
from fathom.specs.plan import TrainingPlan

LLAMA = get_model("llama-3-8b")
BATCH = {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1}
MEGATRON = (
    "torchrun --nproc-per-node 8 pretrain_gpt.py --num-layers 32 --hidden-size 4096 --num-attention-heads 32 "
    "--vocab-size 128256 --seq-length 4096 --micro-batch-size 1 --global-batch-size 64"
)


def _ds(**extra):
    return import_training("deepspeed", json.dumps({**BATCH, **extra}), spec=LLAMA, num_gpus=64)


def _has(warnings: list[str], *parts: str) -> bool:
    return any(all(p in w for p in parts) for w in warnings)


# --- DeepSpeed ---------------------------------------------------------------------------------------------------


def test_deepspeed_bare_bf16_true_is_enabled():
    assert _ds(bf16=True).plan.precision == "bf16"
    assert _ds(fp16=True).plan.precision == "fp16"
    assert _ds(bf16=False).plan.precision == "fp32"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"zero_optimization": [3]}, "zero_optimization must be a JSON object"),
        ({"zero_optimization": {"offload_optimizer": "cpu"}}, "zero_optimization.offload_optimizer"),
        ({"zero_optimization": {"offload_param": "cpu"}}, "zero_optimization.offload_param"),
        ({"tensor_parallel": 4}, "tensor_parallel must be a JSON object"),
        ({"optimizer": "adam"}, "optimizer must be a JSON object"),
        ({"zero_optimization": {"stage": True}}, "zero_optimization.stage"),
        ({"bf16": {"enabled": "yes"}}, "bf16.enabled"),
        ({"bf16": True, "fp16": True}, "bf16 and fp16"),
        ({"activation_checkpointing": True}, "activation_checkpointing"),
        ({"pipeline": 4}, "pipeline"),
        ({"train_batch_size": 100_000_000_000}, "train_batch_size 100000000000 is out of range"),
    ],
)
def test_deepspeed_malformed_sections_are_one_line_errors(extra, key):
    with pytest.raises(FathomInputError, match="^ds_config: ") as err:
        _ds(**extra)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_deepspeed_malformed_section_exits_2_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({**BATCH, "optimizer": "adam"}))
    assert run(["import", "deepspeed", str(path), "--model", "llama-3-8b"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_import_of_a_directory_says_so(tmp_path, capsys):
    assert run(["import", "deepspeed", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_deepspeed_zero_plus_plus_stage3_pipeline_and_partitioning_warn():
    got = _ds(
        zero_optimization={
            "stage": 3,
            "zero_quantized_weights": True,
            "zero_hpz_partition_size": 8,
            "stage3_prefetch_bucket_size": 5e8,
            "stage3_max_live_parameters": "auto",
        },
        pipeline={"stages": 4},
        activation_checkpointing={"partition_activations": True},
    )
    w = got.warnings
    assert _has(w, "zero_quantized_weights") and _has(w, "zero_hpz_partition_size")
    assert _has(w, "stage3_prefetch_bucket_size", "stage3_max_live_parameters")
    assert _has(w, "pipeline.stages 4") and _has(w, "partition_activations")
    assert got.plan.zero == 3 and got.plan.recompute == "full" and got.plan.pp == 1


def test_deepspeed_hf_trainer_auto_precision_reads_bf16_with_a_warning():
    got = _ds(fp16={"enabled": "auto"}, bf16={"enabled": "auto"})
    assert got.plan.precision == "bf16"
    assert _has(got.warnings, '"auto"', "Trainer", "bf16")


def test_deepspeed_plain_config_has_no_new_warnings():
    got = _ds(bf16={"enabled": True}, zero_optimization={"stage": 2})
    assert [w.split(":")[0] for w in got.warnings] == ["seq_len"]


# --- torchtitan --------------------------------------------------------------------------------------------------


def _titan(text: str, num_gpus: int = 16):
    return import_training("torchtitan", text, spec=LLAMA, num_gpus=num_gpus)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[parallelism]\ntensor_parallel_degree = 0", "tensor_parallel_degree"),
        ("[parallelism]\ntensor_parallel_degree = -2", "tensor_parallel_degree"),
        ("[parallelism]\ndata_parallel_shard_degree = 0", "data_parallel_shard_degree"),
        ("[parallelism]\ntensor_parallel_degree = 3", "not a multiple"),
        ("[training]\nlocal_batch_size = 0", "local_batch_size"),
        ("[training]\nseq_len = -5", "[training] seq_len"),
        ("[training]\nglobal_batch_size = 0", "[training] global_batch_size"),
        ("parallelism = 3", "[parallelism] must be a table"),
        ("[activation_checkpoint]\nmode = 3", "mode"),
    ],
)
def test_torchtitan_bad_values_are_one_line_errors(text, key):
    with pytest.raises(FathomInputError, match="^torchtitan config: ") as err:
        _titan(text)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_torchtitan_older_layout_keys_are_read_with_a_note():
    got = _titan("[training]\nbatch_size = 4\ntensor_parallel_degree = 2\ndata_parallel_degree = 8")
    assert (got.plan.tp, got.plan.dp, got.plan.micro_batch) == (2, 8, 4)
    assert _has(got.warnings, "[training] batch_size") and _has(got.warnings, "[training] tensor_parallel_degree")


def test_torchtitan_shard_degree_disagreeing_with_num_gpus_warns():
    got = _titan("[parallelism]\ndata_parallel_shard_degree = 5")
    assert got.plan.dp == 5
    assert _has(got.warnings, "dp:", "5 GPUs", "16")


# --- Megatron-LM -------------------------------------------------------------------------------------------------


def _mega(extra: str = "", spec=LLAMA, num_gpus=None, base: str = MEGATRON):
    return import_training("megatron", f"{base} {extra}", spec=spec, num_gpus=num_gpus)


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        ("--tensor-model-parallel-size -2", "--tensor-model-parallel-size"),
        ("--tensor-model-parallel-size 0", "--tensor-model-parallel-size"),
        ("--seq-length 0", "--seq-length"),
        ("--global-batch-size 0", "--global-batch-size"),
        ("--recompute-granularity everything", "--recompute-granularity"),
        ("--recompute-granularity full --recompute-method sometimes", "--recompute-method"),
        ("--pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 3", "does not divide"),
    ],
)
def test_megatron_bad_flags_are_one_line_errors(extra, flag):
    with pytest.raises(FathomInputError, match="^megatron arguments: ") as err:
        _mega(extra)
    assert flag in str(err.value) and "\n" not in str(err.value)


def test_megatron_bad_flag_exits_2(capsys):
    assert run(["import", "megatron", MEGATRON + " --seq-length 0", "--model", "llama-3-8b"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_megatron_recompute_activations_is_selective():
    got = _mega("--recompute-activations")
    assert got.plan.recompute == "selective" and not got.warnings


def test_megatron_partial_full_recompute_warns():
    got = _mega("--recompute-granularity full --recompute-method block --recompute-num-layers 1")
    assert got.plan.recompute == "full" and _has(got.warnings, "block", "all layers")
    got = _mega("--recompute-granularity full --recompute-method uniform --recompute-num-layers 4")
    assert got.plan.recompute == "full" and _has(got.warnings, "uniform", "all layers")
    got = _mega("--recompute-method uniform --recompute-num-layers 1")
    assert got.plan.recompute == "none" and _has(got.warnings, "--recompute-granularity full")


def test_megatron_uniform_one_layer_chunks_is_fathoms_full_recompute():
    got = _mega("--recompute-granularity full --recompute-method uniform --recompute-num-layers 1")
    assert got.plan.recompute == "full" and not got.warnings


def test_megatron_vocab_from_tokenizer_uses_the_named_model():
    base = MEGATRON.replace("--vocab-size 128256", "--tokenizer-model meta-llama/Meta-Llama-3-8B")
    assert _mega(base=base).plan.dp == 8
    with pytest.raises(FathomInputError, match="--vocab-size"):
        _mega(base=base, spec=None)


def test_megatron_shape_disagreeing_with_model_warns():
    got = _mega("--num-layers 40 --hidden-size 5120")
    assert _has(got.warnings, "model:", "--num-layers 40 (model 32)", "--hidden-size 5120 (model 4096)")


def test_megatron_num_gpus_disagreeing_with_torchrun_warns():
    got = _mega(num_gpus=16)
    assert got.plan.num_gpus == 8 and _has(got.warnings, "num_gpus:", "--num-gpus 16")


def test_megatron_unexpanded_launcher_variable_asks_for_num_gpus():
    base = MEGATRON.replace("torchrun --nproc-per-node 8", "torchrun $DISTRIBUTED_ARGS")
    with pytest.raises(FathomInputError, match=r"\$DISTRIBUTED_ARGS.*shell variable.*--num-gpus"):
        _mega(base=base)
    assert _mega(base=base, num_gpus=16).plan.dp == 16


@pytest.mark.parametrize("engine", ["deepspeed", "megatron", "torchtitan"])
def test_exported_plans_import_without_new_warnings(engine):
    plan = TrainingPlan(seq_len=4096, global_batch=64, tp=2, pp=2, dp=4, recompute="full", zero=1)
    text = export_training_plan(plan, LLAMA, engine).text
    got = import_training(engine, text, spec=LLAMA, num_gpus=plan.num_gpus)
    allowed = ("seq_len", "dp")  # ds_config carries no sequence length, nor pipeline stages (so fewer GPUs)
    assert [w for w in got.warnings if not w.startswith(allowed)] == []
