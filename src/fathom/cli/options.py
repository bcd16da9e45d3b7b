"""Choice enums and the training-plan options the CLI's commands share.

The enums are built from the spec's own tuples so the two never disagree; Typer renders them as click choices, so a
bad value lists the valid ones. The plan options are declared once here and used by both ``fathom train`` and
``fathom export train``, so the plan one estimates is the plan the other can write.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, StrEnum
from typing import Annotated

import typer

from fathom.errors import FathomInputError
from fathom.specs.plan import (
    ATTENTION_KERNELS,
    CUDA_GRAPHS,
    FINETUNES,
    LORA_TARGETS,
    MOE_DISPATCHERS,
    MOE_ROUTINGS,
    OFFLOADS,
    OPTIMIZERS,
    PIPELINE_ENGINES,
    RECOMPUTES,
    SCHEDULES,
    TRAIN_PRECISIONS,
    ZERO2_COMMS,
    ZERO3_GATHERS,
    TrainingPlan,
)


def _choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    return StrEnum(name, {v.replace("-", "_"): v for v in values})  # type: ignore[return-value]


ScheduleChoice = _choices("ScheduleChoice", SCHEDULES)
RecomputeChoice = _choices("RecomputeChoice", RECOMPUTES)
PrecisionChoice = _choices("PrecisionChoice", TRAIN_PRECISIONS)
OptimizerChoice = _choices("OptimizerChoice", OPTIMIZERS)
OffloadChoice = _choices("OffloadChoice", OFFLOADS)
AttentionChoice = _choices("AttentionChoice", ATTENTION_KERNELS)
MoEDispatcherChoice = _choices("MoEDispatcherChoice", MOE_DISPATCHERS)
FinetuneChoice = _choices("FinetuneChoice", FINETUNES)
LoraTargetsChoice = _choices("LoraTargetsChoice", LORA_TARGETS)
Zero3GatherChoice = _choices("Zero3GatherChoice", ZERO3_GATHERS)
Zero2CommChoice = _choices("Zero2CommChoice", ZERO2_COMMS)
MoERoutingChoice = _choices("MoERoutingChoice", MOE_ROUTINGS)
CudaGraphsChoice = _choices("CudaGraphsChoice", CUDA_GRAPHS)
PipelineEngineChoice = _choices("PipelineEngineChoice", PIPELINE_ENGINES)

# ---- training-plan options shared by `fathom train` and `fathom export train` -----------------------------------
Opt = typer.Option
NumGpus = Annotated[int, Opt(min=1, help="Total GPUs.")]
SeqLen = Annotated[int, Opt(min=1, help="Tokens per sequence.")]
GlobalBatch = Annotated[int, Opt(min=1, help="Sequences per optimizer step.")]
MicroBatch = Annotated[int, Opt(min=1, help="Sequences per micro-batch.")]
TP = Annotated[int, Opt(min=1, help="Tensor parallel degree.")]
PP = Annotated[int, Opt(min=1, help="Pipeline parallel degree.")]
DP = Annotated[int | None, Opt(min=1, help="Data parallel degree (inferred if omitted).")]
CP = Annotated[int, Opt(min=1, help="Context parallel degree.")]
EP = Annotated[int, Opt(min=1, help="Expert parallel degree.")]
VPP = Annotated[int, Opt(min=1, help="Model chunks per pipeline rank (interleaving).")]
SequenceParallel = Annotated[bool, Opt("--sequence-parallel/--no-sequence-parallel")]
Zero = Annotated[int, Opt(min=0, max=3, help="ZeRO stage (3 = FSDP full shard).")]
Schedule = Annotated[ScheduleChoice | None, Opt(help="Default: interleaved if vpp>1.")]
Recompute = Annotated[RecomputeChoice, Opt()]
Precision = Annotated[PrecisionChoice, Opt()]
Optimizer = Annotated[OptimizerChoice, Opt()]
Offload = Annotated[OffloadChoice, Opt()]
Finetune = Annotated[FinetuneChoice, Opt(help="Full training, LoRA adapters, or QLoRA (4-bit frozen base).")]
LoraRank = Annotated[int, Opt(help="Rank of the LoRA/QLoRA adapters.")]
LoraTargets = Annotated[LoraTargetsChoice, Opt(help="Linear layers that get adapters.")]
FrozenLayers = Annotated[int, Opt(help="Leading layers (and the embedding) kept frozen.")]
ActivationOffloadLayers = Annotated[
    int,
    Opt(
        help="Layers whose activations go to host memory and back, overlapped with compute "
        "(Megatron-Core --cpu-offloading-num-layers; needs --pp 1 and --recompute none)."
    ),
]
GaloreRank = Annotated[int, Opt(help="Rank of GaLore's projected gradients.")]
MasterWeights = Annotated[
    bool, Opt("--master-weights/--no-master-weights", help="fp32 master weights; off: pure 16-bit.")
]
Fp8SavedInputs = Annotated[
    bool,
    Opt(
        "--fp8-saved-inputs/--no-fp8-saved-inputs",
        help="FP8: linears keep FP8 inputs for backward (Transformer Engine); off: 16-bit (torchao Float8).",
    ),
]
Attention = Annotated[AttentionChoice, Opt(help="Attention kernel class.")]
MoEDispatcher = Annotated[MoEDispatcherChoice, Opt(help="MoE token dispatch: flat all-to-all or DeepEP-style.")]
OverlapGradReduce = Annotated[bool, Opt("--overlap-grad-reduce/--no-overlap-grad-reduce")]
Zero3Gather = Annotated[
    Zero3GatherChoice,
    Opt(help="ZeRO-3 gathers: prefetched; DeepSpeed 2021 per-parameter sync; FSDP BACKWARD_POST."),
]
Zero2Comm = Annotated[
    Zero2CommChoice,
    Opt(help="ZeRO-2 traffic: once per step (DeepSpeed, Megatron) or per unit (FSDP SHARD_GRAD_OP)."),
]
PipelineEngine = Annotated[
    PipelineEngineChoice,
    Opt(
        help="Pipeline runtime: Megatron-LM (frees sent stage outputs) or DeepSpeed's PipelineEngine "
        "(keeps TP-partitioned stage outputs and p + 1 loaded micro-batches on the first stage)."
    ),
]
OverlapMoeComm = Annotated[bool, Opt("--overlap-moe-comm/--no-overlap-moe-comm")]
MoERouting = Annotated[
    MoERoutingChoice,
    Opt(help="MoE routing: balanced (every EP rank at the mean) or dropless (busiest rank sets pace)."),
]
MoERouterFusion = Annotated[
    bool,
    Opt(
        "--moe-router-fusion/--no-moe-router-fusion",
        help="Transformer Engine's fused MoE router kernels (Megatron --moe-router-fusion; default off).",
    ),
]
CudaGraphs = Annotated[
    CudaGraphsChoice,
    Opt(help="Layer parts replayed as CUDA graphs: none, attn, attn-moe-router, full (dense only)."),
]
BalancePipelineEnds = Annotated[
    bool,
    Opt(
        "--balance-pipeline-ends/--no-balance-pipeline-ends",
        help="First and last stages hold one layer fewer (embedding and head take a layer slot each; "
        "num_layers + 2 must split evenly over pp x vpp).",
    ),
]
OverlapTpComm = Annotated[
    bool, Opt("--overlap-tp-comm/--no-overlap-tp-comm", help="TP collectives pipelined with GEMMs.")
]
AsyncTpAllreduce = Annotated[
    bool,
    Opt(
        "--async-tp-allreduce/--no-async-tp-allreduce",
        help="Megatron's backward TP all-reduce under the weight-gradient GEMM (Megatron-LM default).",
    ),
]
OverlapP2pComm = Annotated[bool, Opt("--overlap-p2p-comm/--no-overlap-p2p-comm", help="Asynchronous pipeline sends.")]
OverlapParamGather = Annotated[
    bool, Opt("--overlap-param-gather/--no-overlap-param-gather", help="Per-chunk ZeRO gathers overlapped.")
]


def resolve_schedule(schedule: StrEnum | None, vpp: int) -> str:
    """The pipeline schedule a command means: interleaved when vpp > 1 and none was given."""
    if schedule is None:
        return "interleaved" if vpp > 1 else "1f1b"
    if schedule == "interleaved" and vpp == 1:
        raise FathomInputError("--schedule interleaved needs --vpp 2 or more")
    return schedule.value


def plan_fields(params: Mapping[str, object]) -> dict:
    """The TrainingPlan fields among a command's parameters, choices as their strings; None (an omitted --dp or
    --schedule) is left out for the caller to infer."""
    fields = TrainingPlan.model_fields
    return {k: v.value if isinstance(v, Enum) else v for k, v in params.items() if k in fields and v is not None}


def system_overrides(gpus_per_node: int | None, intra_node_bw: float | None, inter_node_bw: float | None) -> dict:
    """The system fields a user set on the command line (GB/s per GPU per direction), for ``resolve_cluster``."""
    given = {"gpus_per_node": gpus_per_node, "intra_node_bw_GBps": intra_node_bw, "inter_node_bw_GBps": inter_node_bw}
    return {k: v for k, v in given.items() if v is not None}
