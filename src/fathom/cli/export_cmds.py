"""``fathom export train|serve`` (a plan as an engine's launch file) and ``fathom import`` (the reverse)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from fathom.cli import options as opts
from fathom.cli.options import plan_fields, resolve_schedule
from fathom.cli.render import print_json
from fathom.errors import FathomInputError, read_user_file, unknown_name_error

Opt = typer.Option
export_app = typer.Typer(
    help="Write a plan as the launch configuration of a training or serving engine.", no_args_is_help=True
)


def _emit(text: str, warnings: list[str], out: str | None, engine: str) -> None:
    for w in warnings:
        print(f"warning: {engine}: {w}", file=sys.stderr)
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise FathomInputError(f"--out {out}: cannot write: {exc.strerror}") from None
    else:
        sys.stdout.write(text)


@export_app.command("train")
def export_train(
    ctx: typer.Context,
    engine: Annotated[str, Opt(help="megatron | deepspeed | torchtitan")],
    model: Annotated[str, Opt(help="Preset name, HF config.json or ModelSpec YAML.")],
    num_gpus: opts.NumGpus,
    seq_len: opts.SeqLen,
    global_batch: opts.GlobalBatch,
    micro_batch: opts.MicroBatch = 1,
    gpu: Annotated[str | None, Opt(help="GPU (checks the plan on it; its system sets GPUs per node).")] = None,
    system: Annotated[str | None, Opt()] = None,
    gpus_per_node: Annotated[int | None, Opt(min=1, help="Default: the system's, else 8.")] = None,
    # The plan options of `fathom train`, declared once in fathom.cli.options.
    tp: opts.TP = 1,
    pp: opts.PP = 1,
    dp: opts.DP = None,
    cp: opts.CP = 1,
    ep: opts.EP = 1,
    vpp: opts.VPP = 1,
    sequence_parallel: opts.SequenceParallel = True,
    zero: opts.Zero = 1,
    schedule: opts.Schedule = None,
    recompute: opts.Recompute = opts.RecomputeChoice.selective,
    precision: opts.Precision = opts.PrecisionChoice.bf16,
    optimizer: opts.Optimizer = opts.OptimizerChoice.adamw,
    offload: opts.Offload = opts.OffloadChoice.none,
    finetune: opts.Finetune = opts.FinetuneChoice.none,
    lora_rank: opts.LoraRank = 16,
    lora_targets: opts.LoraTargets = opts.LoraTargetsChoice.all_linear,
    frozen_layers: opts.FrozenLayers = 0,
    activation_offload_layers: opts.ActivationOffloadLayers = 0,
    galore_rank: opts.GaloreRank = 128,
    master_weights: opts.MasterWeights = True,
    fp8_saved_inputs: opts.Fp8SavedInputs = True,
    attention: opts.Attention = opts.AttentionChoice.flash2,
    moe_dispatcher: opts.MoEDispatcher = opts.MoEDispatcherChoice.alltoall,
    overlap_grad_reduce: opts.OverlapGradReduce = True,
    zero3_gather: opts.Zero3Gather = opts.Zero3GatherChoice.prefetch,
    zero2_comm: opts.Zero2Comm = opts.Zero2CommChoice.per_step,
    pipeline_engine: opts.PipelineEngine = opts.PipelineEngineChoice.megatron,
    overlap_moe_comm: opts.OverlapMoeComm = False,
    moe_routing: opts.MoERouting = opts.MoERoutingChoice.balanced,
    moe_router_fusion: opts.MoERouterFusion = False,
    cuda_graphs: opts.CudaGraphs = opts.CudaGraphsChoice.none,
    balance_pipeline_ends: opts.BalancePipelineEnds = False,
    overlap_tp_comm: opts.OverlapTpComm = False,
    async_tp_allreduce: opts.AsyncTpAllreduce = True,
    overlap_p2p_comm: opts.OverlapP2pComm = False,
    overlap_param_gather: opts.OverlapParamGather = False,
    out: Annotated[str | None, Opt(help="Write here instead of stdout.")] = None,
) -> None:
    """A training plan as a Megatron-LM launch script, a DeepSpeed ds_config.json or a torchtitan job TOML.

    Takes every plan option of `fathom train`; what the engine cannot express is named on stderr."""
    from fathom.catalog.hardware import resolve_cluster
    from fathom.catalog.models import get_model
    from fathom.export import export_training_plan, get_engine
    from fathom.specs.hardware import validate_or_explain
    from fathom.specs.plan import TrainingPlan
    from fathom.training.plans import check_plan, infer_dp

    get_engine(engine, "training")
    spec = get_model(model)
    fields = plan_fields(ctx.params)
    fields.update(schedule=resolve_schedule(schedule, vpp), dp=dp or infer_dp(num_gpus, tp, pp, cp))
    plan = validate_or_explain(TrainingPlan, fields, "training plan")
    cluster = resolve_cluster(gpu or "h100-sxm", num_gpus, system=system)  # structure checks need no real GPU
    check_plan(spec, cluster, plan)
    per_node = gpus_per_node or (cluster.system.gpus_per_node if gpu else 8)
    text, warnings = export_training_plan(plan, spec, engine, model_name=model, gpus_per_node=per_node)
    _emit(text, warnings, out, engine)


@export_app.command("serve")
def export_serve(
    engine: Annotated[str, Opt(help="vllm | sglang")],
    model: Annotated[str, Opt(help="The model as the engine should load it (HF repo or path), or a preset.")],
    tp: Annotated[int, Opt(min=1)] = 1,
    pp: Annotated[int, Opt(min=1)] = 1,
    ep: Annotated[int, Opt(min=1)] = 1,
    precision: Annotated[str, Opt(help="Weights: bf16|fp16|fp8|int8|int4.")] = "bf16",
    kv_dtype: Annotated[str | None, Opt(help="bf16|fp16|fp8 (default: fp8 with fp8 weights).")] = None,
    attention: Annotated[str, Opt(help="flash3|flash2|flash1")] = "flash2",
    scheduler: Annotated[str, Opt(help="static|continuous|chunked-prefill|decode-priority")] = "continuous",
    max_batch: Annotated[int, Opt(min=1)] = 256,
    max_batch_tokens: Annotated[int, Opt(min=1)] = 8192,
    block_size: Annotated[int, Opt(min=1)] = 16,
    preemption: Annotated[str, Opt(help="recompute|swap")] = "recompute",
    prefix_caching: Annotated[bool, Opt("--prefix-caching")] = False,
    cuda_graphs: Annotated[bool, Opt("--cuda-graphs/--no-cuda-graphs")] = True,
    memory_utilization: Annotated[float, Opt(min=0.05, max=1.0)] = 0.9,
    out: Annotated[str | None, Opt(help="Write here instead of stdout.")] = None,
) -> None:
    """One serving replica as a `vllm serve` or SGLang `launch_server` command."""
    from fathom.export import ServingSetup, export_serving_plan, get_engine
    from fathom.export.base import PREEMPTIONS, SERVING_SCHEDULERS
    from fathom.export.model_names import check_serving_model
    from fathom.specs.hardware import validate_or_explain
    from fathom.specs.serving import ServingPlan

    get_engine(engine, "serving")
    check_serving_model(model, "--model")
    if scheduler not in SERVING_SCHEDULERS:
        raise unknown_name_error("--scheduler", scheduler, SERVING_SCHEDULERS)
    if preemption not in PREEMPTIONS:
        raise unknown_name_error("--preemption", preemption, PREEMPTIONS)
    fields = dict(
        tp=tp,
        pp=pp,
        ep=ep,
        weight_dtype=precision,
        attention=attention,
        cuda_graphs=cuda_graphs,
        max_batch=max_batch,
        max_batch_tokens=max_batch_tokens,
        block_size=block_size,
        memory_utilization=memory_utilization,
        kv_dtype=kv_dtype or ("fp8" if precision == "fp8" else "bf16"),
    )
    plan = validate_or_explain(ServingPlan, fields, "serving plan")
    setup = ServingSetup(plan=plan, scheduler=scheduler, prefix_caching=prefix_caching, preemption=preemption)
    text, warnings = export_serving_plan(setup, model, engine)
    _emit(text, warnings, out, engine)


def _source_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if os.path.isdir(path):  # os.path, unlike Path.is_dir, answers False for a too-long name (quoted arguments)
        raise FathomInputError(f"{source}: is a directory; give the engine's file, its arguments in quotes, or -")
    if path.suffix in (".json", ".toml", ".sh", ".yaml", ".txt") or os.path.isfile(path):
        return read_user_file(path)
    return source  # the engine's arguments themselves


def _import_training(
    engine: str,
    text: str,
    model: str | None,
    gpu: str | None,
    system: str | None,
    num_gpus: int | None,
    seq_len: int | None,
    json_out: bool,
) -> None:
    from fathom.catalog.hardware import resolve_cluster
    from fathom.catalog.models import get_model
    from fathom.cli.render import render_training
    from fathom.export import import_training
    from fathom.export.model_names import fathom_model_comment, resolve_model_name
    from fathom.training.estimator import estimate_training
    from fathom.training.plans import check_plan

    named = model or resolve_model_name(fathom_model_comment(text))
    spec = get_model(named) if named else None
    imported = import_training(engine, text, spec=spec, num_gpus=num_gpus)
    if spec is None:
        named = resolve_model_name(imported.model)
        spec = get_model(named) if named else imported.model_spec
    plan = imported.plan.model_copy(update={"seq_len": seq_len}) if seq_len else imported.plan
    for w in imported.warnings:
        if not (seq_len and w.startswith("seq_len:")):
            print(f"warning: {engine}: {w}", file=sys.stderr)
    if gpu is None:
        print_json({"model": named or (spec.name if spec else None), "plan": plan.model_dump(mode="json")})
        return
    if spec is None:
        raise FathomInputError(f"{engine}: the file names no fathom model; give --model")
    cluster = resolve_cluster(gpu, plan.num_gpus, system=system)
    check_plan(spec, cluster, plan)
    result = estimate_training(spec, cluster, plan)
    if json_out:
        print_json(result.model_dump(mode="json"))
    else:
        render_training(result)


def _run_import(
    engine: str,
    text: str,
    *,
    model,
    gpu,
    system,
    num_gpus,
    seq_len,
    rate,
    num_requests,
    duration,
    input_len,
    output_len,
    json_out,
) -> None:
    from fathom.export import get_engine, import_serving
    from fathom.export.model_names import resolve_model_name

    if get_engine(engine).kind == "training":
        _import_training(engine, text, model, gpu, system, num_gpus, seq_len, json_out)
        return
    imported = import_serving(engine, text)
    for w in imported.warnings:
        print(f"warning: {engine}: {w}", file=sys.stderr)
    setup = imported.setup
    name = model or resolve_model_name(imported.model) or imported.model
    summary = {
        "model": name,
        "plan": setup.plan.model_dump(mode="json"),
        "scheduler": setup.scheduler,
        "prefix_caching": setup.prefix_caching,
        "preemption": setup.preemption,
    }
    if gpu is None or (rate is None and num_requests is None):
        print_json(summary)
        return
    from fathom.api.serving import Workload, simulate_serving
    from fathom.cli.render import render_serving

    if not name:
        raise FathomInputError(f"{engine}: the command names no model; give --model")
    workload = Workload(
        arrival="offline" if rate is None else "poisson",
        rate=rate,
        num_requests=num_requests,
        duration_s=duration,
        input_len=str(input_len),
        output_len=str(output_len),
    )
    run = simulate_serving(
        model=name,
        gpu=gpu,
        plan=setup.plan,
        workload=workload,
        system=system,
        scheduler=setup.scheduler,
        prefix_caching=setup.prefix_caching,
        preemption=setup.preemption,
    )
    if json_out:
        print_json({**summary, "report": run.report.model_dump(mode="json")})
    else:
        render_serving(run.report)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")

    @app.command("import")
    def import_cmd(
        engine: Annotated[str, typer.Argument(help="megatron|deepspeed|torchtitan|vllm|sglang")],
        source: Annotated[str, typer.Argument(help="The engine's file, its arguments in quotes, or - for stdin.")],
        model: Annotated[str | None, Opt(help="The model, when the file does not name a fathom preset.")] = None,
        gpu: Annotated[str | None, Opt(help="Estimate the imported setup on this GPU.")] = None,
        system: Annotated[str | None, Opt()] = None,
        num_gpus: Annotated[int | None, Opt(min=1, help="When the file does not fix the GPU count.")] = None,
        seq_len: Annotated[int | None, Opt(min=1, help="Override (DeepSpeed configs carry none).")] = None,
        rate: Annotated[float | None, Opt(min=0.0, help="Serving: requests per second to simulate.")] = None,
        num_requests: Annotated[int | None, Opt(min=1, help="Serving: requests (offline when no --rate).")] = None,
        duration: Annotated[float | None, Opt(min=0.0, help="Serving: seconds of arrivals.")] = None,
        input_len: Annotated[int, Opt(min=1)] = 1024,
        output_len: Annotated[int, Opt(min=1)] = 256,
        json_out: Annotated[bool, Opt("--json")] = False,
    ) -> None:
        """Read an engine's configuration back into a fathom plan and, given --gpu, estimate it."""
        _run_import(
            engine,
            _source_text(source),
            model=model,
            gpu=gpu,
            system=system,
            num_gpus=num_gpus,
            seq_len=seq_len,
            rate=rate,
            num_requests=num_requests,
            duration=duration,
            input_len=input_len,
            output_len=output_len,
            json_out=json_out,
        )
