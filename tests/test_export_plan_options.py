"""`fathom export train` takes every plan option of `fathom train` (declared once, in fathom.cli.options), maps
them into the plan, and each exporter writes what its engine supports and names what it drops."""

from __future__ import annotations

import json
import tomllib

import click
import pytest
import typer.main

from fathom.catalog.models import get_model
from fathom.cli.app import app, run
from fathom.export import export_training_plan, import_training
from fathom.specs.plan import TrainingPlan

COMMON = ["--model", "llama-3.1-8b", "--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64"]


def _command(*path: str) -> click.Command:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _options(command: click.Command) -> dict[str, tuple]:
    ctx = click.Context(command)
    return {p.name: (tuple(p.opts), tuple(p.secondary_opts), p.get_help_record(ctx)) for p in command.params}


def test_export_train_declares_every_plan_option_as_train_does():
    train, export = _options(_command("train")), _options(_command("export", "train"))
    plan_fields = set(TrainingPlan.model_fields) - {"dp"}  # dp is inferred from the GPUs by both
    shared = {name for name in train if name in TrainingPlan.model_fields or name == "num_gpus"}
    assert plan_fields <= shared <= set(export)
    assert {name: export[name] for name in shared} == {name: train[name] for name in shared}


def test_plan_option_defaults_are_the_plans():
    params = {p.name: p for p in _command("export", "train").params}
    for name, field in TrainingPlan.model_fields.items():
        if name in ("seq_len", "global_batch", "dp", "schedule"):
            continue  # required, inferred, or derived from vpp
        default = params[name].default
        assert getattr(default, "value", default) == field.default, name


@pytest.mark.parametrize(
    ("engine", "flags", "expect"),
    [
        (
            "megatron",
            ["--cuda-graphs", "attn", "--tp", "2", "--overlap-tp-comm", "--overlap-param-gather"],
            [
                "--cuda-graph-impl transformer_engine",
                "--cuda-graph-scope attn",
                "--tp-comm-overlap",
                "--overlap-param-gather",
            ],
        ),
        (
            "megatron",
            ["--pp", "4", "--vpp", "2"],  # fathom's plan keeps sends synchronous; Megatron overlaps by default
            ["--num-layers-per-virtual-pipeline-stage 4", "--no-overlap-p2p-communication"],
        ),
        ("megatron", ["--recompute", "none", "--activation-offload-layers", "4"], ["--cpu-offloading-num-layers 4"]),
        ("megatron", ["--pp", "2", "--balance-pipeline-ends"], ["--account-for-loss-in-pipeline-split"]),
        ("torchtitan", ["--tp", "2", "--overlap-tp-comm"], ["enable_async_tensor_parallel = true", "[compile]"]),
        ("torchtitan", ["--pp", "2", "--balance-pipeline-ends"], ["pipeline_parallel_first_stage_less_layers = 1"]),
    ],
)
def test_cli_levers_reach_the_engine_file(engine, flags, expect, capsys):
    assert run(["export", "train", "--engine", engine, *COMMON, *flags]) == 0
    out = capsys.readouterr().out
    for text in expect:
        assert text in out, text


def test_cli_megatron_moe_levers(capsys):
    args = ["--model", "mixtral-8x7b", "--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--ep", "8"]
    flags = ["--moe-router-fusion", "--cuda-graphs", "attn-moe-router"]
    assert run(["export", "train", "--engine", "megatron", *args, *flags]) == 0
    out = capsys.readouterr().out
    assert "--moe-router-fusion" in out and "--cuda-graph-scope attn moe_router moe_preprocess" in out
    back = import_training("megatron", out, spec=get_model("mixtral-8x7b")).plan
    assert back.moe_router_fusion and back.cuda_graphs == "attn-moe-router"


@pytest.mark.parametrize(
    ("engine", "flags", "field"),
    [
        ("megatron", ["--finetune", "lora"], "finetune"),
        ("megatron", ["--frozen-layers", "4"], "frozen_layers"),
        ("megatron", ["--no-master-weights"], "master_weights"),
        ("megatron", ["--precision", "fp8", "--no-fp8-saved-inputs"], "fp8_saved_inputs"),
        ("megatron", ["--zero", "3", "--zero3-gather", "backward-post"], "zero3_gather"),
        ("megatron", ["--zero", "2", "--zero2-comm", "per-unit"], "zero2_comm"),
        ("megatron", ["--pp", "2", "--pipeline-engine", "deepspeed"], "pipeline_engine"),
        ("megatron", ["--tp", "2", "--no-async-tp-allreduce"], "async_tp_allreduce"),
        ("megatron", ["--pp", "2", "--overlap-p2p-comm"], "overlap_p2p_comm"),
        ("megatron", ["--no-overlap-grad-reduce", "--overlap-param-gather"], "overlap_param_gather"),
        ("deepspeed", ["--finetune", "qlora"], "finetune"),
        ("deepspeed", ["--recompute", "none", "--activation-offload-layers", "2"], "activation_offload_layers"),
        ("deepspeed", ["--cuda-graphs", "attn"], "cuda_graphs"),
        ("deepspeed", ["--tp", "2", "--overlap-tp-comm"], "overlap_tp_comm"),
        ("deepspeed", ["--zero", "3", "--zero3-gather", "per-parameter-sync"], "zero3_gather"),
        ("torchtitan", ["--lora-rank", "8", "--finetune", "lora"], "finetune"),
        ("torchtitan", ["--cuda-graphs", "full"], "cuda_graphs"),
        ("torchtitan", ["--precision", "fp8"], "fp8_saved_inputs"),
        ("torchtitan", ["--tp", "2"], "async_tp_allreduce"),
        ("torchtitan", ["--zero", "2"], "zero2_comm"),
        ("torchtitan", ["--pp", "2", "--overlap-p2p-comm"], "overlap_p2p_comm"),
    ],
)
def test_cli_names_the_levers_an_engine_drops(engine, flags, field, capsys):
    assert run(["export", "train", "--engine", engine, *COMMON, *flags]) == 0
    assert f"warning: {engine}: {field}:" in capsys.readouterr().err


def test_cli_rejects_bad_lever_values_with_the_choices(capsys):
    assert run(["export", "train", "--engine", "megatron", *COMMON, "--moe-routing", "greedy"]) == 2
    err = capsys.readouterr().err
    assert "--moe-routing" in err and "balanced" in err and "dropless" in err
    assert run(["export", "train", "--engine", "megatron", *COMMON, "--schedule", "interleaved"]) == 2
    assert "--schedule interleaved needs --vpp 2" in capsys.readouterr().err
    # check_plan's rules hold for the export as for `fathom train`
    assert run(["export", "train", "--engine", "megatron", *COMMON, "--activation-offload-layers", "2"]) == 2
    assert "--activation-offload-layers" in capsys.readouterr().err


def test_export_plan_matches_train_plan(capsys):
    """The plan `fathom export train` writes is the plan `fathom train` estimates, lever for lever."""
    levers = ["--pp", "2", "--balance-pipeline-ends", "--overlap-p2p-comm", "--cuda-graphs", "attn", "--tp", "2"]
    levers += ["--overlap-tp-comm", "--moe-routing", "dropless", "--frozen-layers", "3", "--no-async-tp-allreduce"]
    assert run(["train", "--gpu", "h100-sxm", *COMMON, *levers, "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)["plan"]
    assert run(["export", "train", "--engine", "torchtitan", *COMMON, *levers]) == 0
    exported = tomllib.loads(capsys.readouterr().out)
    assert exported["parallelism"]["pipeline_parallel_degree"] == trained["pp"] == 2
    plan = TrainingPlan(**trained)
    assert plan.balance_pipeline_ends and plan.cuda_graphs == "attn" and plan.frozen_layers == 3
    _, warnings = export_training_plan(plan, get_model("llama-3.1-8b"), "torchtitan")
    assert {w.split(":", 1)[0] for w in warnings} >= {"cuda_graphs", "frozen_layers", "overlap_p2p_comm"}
