"""``fathom train``: estimate memory, step time, throughput and cost of one training plan."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from fathom.cli.options import (
    AttentionChoice,
    FinetuneChoice,
    LoraTargetsChoice,
    MoEDispatcherChoice,
    OffloadChoice,
    OptimizerChoice,
    PrecisionChoice,
    RecomputeChoice,
    ScheduleChoice,
    Zero2CommChoice,
    Zero3GatherChoice,
    system_overrides,
)
from fathom.cli.render import print_json, render_training
from fathom.cli.render_energy import render_energy_and_reliability
from fathom.errors import FathomInputError
from fathom.reliability.checkpoint import CHECKPOINT_MODES
from fathom.specs.plan import CUDA_GRAPHS, MOE_ROUTINGS, PIPELINE_ENGINES

CheckpointChoice = StrEnum("CheckpointChoice", {m.replace("-", "_"): m for m in CHECKPOINT_MODES})
MoERoutingChoice = StrEnum("MoERoutingChoice", {m: m for m in MOE_ROUTINGS})
CudaGraphsChoice = StrEnum("CudaGraphsChoice", {g.replace("-", "_"): g for g in CUDA_GRAPHS})
PipelineEngineChoice = StrEnum("PipelineEngineChoice", {e: e for e in PIPELINE_ENGINES})

Pos = dict(min=1)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        ctx: typer.Context,
        model: Annotated[str, typer.Option(help="Preset name, HF config.json or ModelSpec YAML.")],
        gpu: Annotated[str, typer.Option(help="GPU name or device YAML (see `fathom gpus`).")],
        num_gpus: Annotated[int, typer.Option(min=1, help="Total GPUs.")],
        seq_len: Annotated[int, typer.Option(min=1, help="Tokens per sequence.")],
        global_batch: Annotated[int, typer.Option(min=1, help="Sequences per optimizer step.")],
        micro_batch: Annotated[int, typer.Option(min=1, help="Sequences per micro-batch.")] = 1,
        system: Annotated[str | None, typer.Option(help="System name (default: the GPU's usual system).")] = None,
        gpus_per_node: Annotated[int | None, typer.Option(min=1)] = None,
        intra_node_bw: Annotated[float | None, typer.Option(min=0.001, help="GB/s per GPU per direction.")] = None,
        inter_node_bw: Annotated[float | None, typer.Option(min=0.001, help="GB/s per GPU per direction.")] = None,
        tp: Annotated[int, typer.Option(min=1, help="Tensor parallel degree.")] = 1,
        pp: Annotated[int, typer.Option(min=1, help="Pipeline parallel degree.")] = 1,
        dp: Annotated[int | None, typer.Option(min=1, help="Data parallel degree (inferred if omitted).")] = None,
        cp: Annotated[int, typer.Option(min=1, help="Context parallel degree.")] = 1,
        ep: Annotated[int, typer.Option(min=1, help="Expert parallel degree.")] = 1,
        vpp: Annotated[int, typer.Option(min=1, help="Model chunks per pipeline rank (interleaving).")] = 1,
        sequence_parallel: Annotated[bool, typer.Option("--sequence-parallel/--no-sequence-parallel")] = True,
        zero: Annotated[int, typer.Option(min=0, max=3, help="ZeRO stage (3 = FSDP full shard).")] = 1,
        schedule: Annotated[ScheduleChoice | None, typer.Option(help="Default: interleaved if vpp>1.")] = None,
        recompute: Annotated[RecomputeChoice, typer.Option()] = RecomputeChoice.selective,
        precision: Annotated[PrecisionChoice, typer.Option()] = PrecisionChoice.bf16,
        optimizer: Annotated[OptimizerChoice, typer.Option()] = OptimizerChoice.adamw,
        offload: Annotated[OffloadChoice, typer.Option()] = OffloadChoice.none,
        finetune: Annotated[
            FinetuneChoice, typer.Option(help="Full training, LoRA adapters, or QLoRA (4-bit frozen base).")
        ] = FinetuneChoice.none,
        lora_rank: Annotated[int, typer.Option(help="Rank of the LoRA/QLoRA adapters.")] = 16,
        lora_targets: Annotated[
            LoraTargetsChoice, typer.Option(help="Linear layers that get adapters.")
        ] = LoraTargetsChoice.all_linear,
        frozen_layers: Annotated[int, typer.Option(help="Leading layers (and the embedding) kept frozen.")] = 0,
        activation_offload_layers: Annotated[
            int,
            typer.Option(
                help="Layers whose activations go to host memory and back, overlapped with compute "
                "(Megatron-Core --cpu-offloading-num-layers; needs --pp 1 and --recompute none)."
            ),
        ] = 0,
        galore_rank: Annotated[int, typer.Option(help="Rank of GaLore's projected gradients.")] = 128,
        master_weights: Annotated[
            bool, typer.Option("--master-weights/--no-master-weights", help="fp32 master weights; off: pure 16-bit.")
        ] = True,
        fp8_saved_inputs: Annotated[
            bool,
            typer.Option(
                "--fp8-saved-inputs/--no-fp8-saved-inputs",
                help="FP8: linears keep FP8 inputs for backward (Transformer Engine); off: 16-bit (torchao Float8).",
            ),
        ] = True,
        attention: Annotated[AttentionChoice, typer.Option(help="Attention kernel class.")] = AttentionChoice.flash2,
        moe_dispatcher: Annotated[
            MoEDispatcherChoice, typer.Option(help="MoE token dispatch: flat all-to-all or DeepEP-style.")
        ] = MoEDispatcherChoice.alltoall,
        overlap_grad_reduce: Annotated[bool, typer.Option("--overlap-grad-reduce/--no-overlap-grad-reduce")] = True,
        zero3_gather: Annotated[
            Zero3GatherChoice,
            typer.Option(help="ZeRO-3 gathers: prefetched; DeepSpeed 2021 per-parameter sync; FSDP BACKWARD_POST."),
        ] = Zero3GatherChoice.prefetch,
        zero2_comm: Annotated[
            Zero2CommChoice,
            typer.Option(help="ZeRO-2 traffic: once per step (DeepSpeed, Megatron) or per unit (FSDP SHARD_GRAD_OP)."),
        ] = Zero2CommChoice.per_step,
        pipeline_engine: Annotated[
            PipelineEngineChoice,
            typer.Option(
                help="Pipeline runtime: Megatron-LM (frees sent stage outputs) or DeepSpeed's PipelineEngine "
                "(keeps TP-partitioned stage outputs and p + 1 loaded micro-batches on the first stage)."
            ),
        ] = PipelineEngineChoice.megatron,
        overlap_moe_comm: Annotated[bool, typer.Option("--overlap-moe-comm/--no-overlap-moe-comm")] = False,
        moe_routing: Annotated[
            MoERoutingChoice,
            typer.Option(
                help="MoE routing: balanced (every EP rank at the mean) or dropless (busiest rank sets pace)."
            ),
        ] = MoERoutingChoice.balanced,
        moe_router_fusion: Annotated[
            bool,
            typer.Option(
                "--moe-router-fusion/--no-moe-router-fusion",
                help="Transformer Engine's fused MoE router kernels (Megatron --moe-router-fusion; default off).",
            ),
        ] = False,
        cuda_graphs: Annotated[
            CudaGraphsChoice,
            typer.Option(help="Layer parts replayed as CUDA graphs: none, attn, attn-moe-router, full (dense only)."),
        ] = CudaGraphsChoice.none,
        balance_pipeline_ends: Annotated[
            bool,
            typer.Option(
                "--balance-pipeline-ends/--no-balance-pipeline-ends",
                help="First and last stages hold one layer fewer (embedding and head count as a layer).",
            ),
        ] = False,
        overlap_tp_comm: Annotated[
            bool, typer.Option("--overlap-tp-comm/--no-overlap-tp-comm", help="TP collectives pipelined with GEMMs.")
        ] = False,
        async_tp_allreduce: Annotated[
            bool,
            typer.Option(
                "--async-tp-allreduce/--no-async-tp-allreduce",
                help="Megatron's backward TP all-reduce under the weight-gradient GEMM (Megatron-LM default).",
            ),
        ] = True,
        overlap_p2p_comm: Annotated[
            bool, typer.Option("--overlap-p2p-comm/--no-overlap-p2p-comm", help="Asynchronous pipeline sends.")
        ] = False,
        overlap_param_gather: Annotated[
            bool,
            typer.Option("--overlap-param-gather/--no-overlap-param-gather", help="Per-chunk ZeRO gathers overlapped."),
        ] = False,
        tokens: Annotated[
            float | None, typer.Option(min=1, help="Tokens to train: time, GPU-hours, energy, cost.")
        ] = None,
        price_per_gpu_hour: Annotated[float | None, typer.Option(min=0, help="USD; default: catalog price.")] = None,
        region: Annotated[
            str | None, typer.Option(help="Grid for CO2e: a region name (us-east, eu-north, ...) or gCO2e/kWh.")
        ] = None,
        power_cap: Annotated[float | None, typer.Option(min=1, help="GPU board power limit, W.")] = None,
        pue: Annotated[float | None, typer.Option(min=1.0, help="Datacenter PUE (default: the system's).")] = None,
        checkpoint: Annotated[
            CheckpointChoice | None, typer.Option(help="Checkpoint mode (adds the reliability report).")
        ] = None,
        mtbf_hours: Annotated[float | None, typer.Option(min=0.001, help="Mean time between failures per GPU.")] = None,
        storage_bw: Annotated[float | None, typer.Option(min=0.001, help="Aggregate checkpoint storage GB/s.")] = None,
        restart_min: Annotated[float | None, typer.Option(min=0, help="Minutes to detect and restart.")] = None,
        checkpoint_interval: Annotated[
            float | None, typer.Option(min=0.001, help="Minutes between checkpoints (default: Young/Daly optimum).")
        ] = None,
        report: Annotated[
            str | None, typer.Option(help="Self-contained HTML report: inputs, results, figures.")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Estimate one training plan: memory per GPU, step time, tokens/s, MFU and cost."""
        from fathom.api import estimate_training_plan
        from fathom.reports.output import REPORT_SUFFIXES, check_output_path

        if report is not None:
            check_output_path(report, "--report", REPORT_SUFFIXES)  # before estimating: a typo must not cost a run

        if schedule is None:
            schedule = ScheduleChoice("interleaved" if vpp > 1 else "1f1b")
        if schedule == "interleaved" and vpp == 1:
            raise FathomInputError("--schedule interleaved needs --vpp 2 or more")
        overrides = system_overrides(gpus_per_node, intra_node_bw, inter_node_bw)
        result = estimate_training_plan(
            model=model,
            gpu=gpu,
            system=system,
            num_gpus=num_gpus,
            system_overrides=overrides,
            seq_len=seq_len,
            global_batch=global_batch,
            micro_batch=micro_batch,
            tp=tp,
            pp=pp,
            dp=dp,
            cp=cp,
            ep=ep,
            vpp=vpp,
            sequence_parallel=sequence_parallel,
            zero=zero,
            schedule=schedule.value,
            recompute=recompute.value,
            precision=precision.value,
            optimizer=optimizer.value,
            offload=offload.value,
            finetune=finetune.value,
            lora_rank=lora_rank,
            lora_targets=lora_targets.value,
            frozen_layers=frozen_layers,
            activation_offload_layers=activation_offload_layers,
            galore_rank=galore_rank,
            master_weights=master_weights,
            fp8_saved_inputs=fp8_saved_inputs,
            attention=attention.value,
            moe_dispatcher=moe_dispatcher.value,
            overlap_moe_comm=overlap_moe_comm,
            moe_routing=moe_routing.value,
            moe_router_fusion=moe_router_fusion,
            cuda_graphs=cuda_graphs.value,
            overlap_grad_reduce=overlap_grad_reduce,
            zero3_gather=zero3_gather.value,
            zero2_comm=zero2_comm.value,
            pipeline_engine=pipeline_engine.value,
            balance_pipeline_ends=balance_pipeline_ends,
            overlap_tp_comm=overlap_tp_comm,
            async_tp_allreduce=async_tp_allreduce,
            overlap_p2p_comm=overlap_p2p_comm,
            overlap_param_gather=overlap_param_gather,
            tokens=tokens,
            price_per_gpu_hour=price_per_gpu_hour,
            region=region,
            power_cap_w=power_cap,
            pue=pue,
            checkpoint=checkpoint.value if checkpoint else None,
            mtbf_hours=mtbf_hours,
            storage_bw_GBps=storage_bw,
            restart_min=restart_min,
            checkpoint_interval_min=checkpoint_interval,
        )
        if report is not None:
            from fathom.reports.training_report import write_training_report

            write_training_report(report, result, {o.opts[0]: ctx.params[o.name] for o in ctx.command.params})
        if json_out:
            print_json(result.model_dump(mode="json"))
        else:
            render_training(result)
            render_energy_and_reliability(result)
