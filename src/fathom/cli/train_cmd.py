"""``fathom train``: estimate memory, step time, throughput and cost of one training plan."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from fathom.cli import options as opts
from fathom.cli.options import resolve_schedule, system_overrides
from fathom.cli.render import print_json, render_training
from fathom.cli.render_energy import render_energy_and_reliability
from fathom.reliability.checkpoint import CHECKPOINT_MODES

CheckpointChoice = StrEnum("CheckpointChoice", {m.replace("-", "_"): m for m in CHECKPOINT_MODES})

Pos = dict(min=1)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        ctx: typer.Context,
        model: Annotated[str, typer.Option(help="Preset name, HF config.json or ModelSpec YAML.")],
        gpu: Annotated[str, typer.Option(help="GPU name or device YAML (see `fathom gpus`).")],
        num_gpus: opts.NumGpus,
        seq_len: opts.SeqLen,
        global_batch: opts.GlobalBatch,
        micro_batch: opts.MicroBatch = 1,
        system: Annotated[str | None, typer.Option(help="System name (default: the GPU's usual system).")] = None,
        gpus_per_node: Annotated[int | None, typer.Option(min=1)] = None,
        intra_node_bw: Annotated[float | None, typer.Option(min=0.001, help="GB/s per GPU per direction.")] = None,
        inter_node_bw: Annotated[float | None, typer.Option(min=0.001, help="GB/s per GPU per direction.")] = None,
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

        schedule_name = resolve_schedule(schedule, vpp)
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
            schedule=schedule_name,
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
