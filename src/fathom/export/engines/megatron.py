"""Megatron-LM: a ``torchrun ... pretrain_gpt.py`` launch script.

Flags as defined in Megatron-LM ``megatron/training/arguments.py`` (most generated from Megatron-Core's
``TransformerConfig`` / ``ModelParallelConfig`` dataclasses, ``--field-name`` for ``field_name``):
https://github.com/NVIDIA/Megatron-LM/blob/main/megatron/training/arguments.py
Data parallelism is what is left of the world size: dp = nnodes * nproc_per_node / (tp * pp * cp).
"""

from __future__ import annotations

from math import gcd

from fathom.errors import FathomInputError
from fathom.export.base import ImportedTraining
from fathom.export.cmdline import Options, parse_script, render_command
from fathom.export.megatron_model import BARE_MODEL_FLAGS, model_flags, spec_from_options
from fathom.export.registry import TrainingEngine
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan

DOC_URL = "https://github.com/NVIDIA/Megatron-LM/blob/main/megatron/training/arguments.py"
_ZERO_FSDP = {2: "optim_grads", 3: "optim_grads_params"}  # Megatron-FSDP sharding strategy per ZeRO stage
_ATTENTION = {"flash2": "flash", "flash3": "flash", "flash1": "flash", "unfused": "unfused"}
BARE_FLAGS = BARE_MODEL_FLAGS + (
    "--sequence-parallel",
    "--bf16",
    "--fp16",
    "--use-distributed-optimizer",
    "--use-megatron-fsdp",
    "--overlap-grad-reduce",
    "--optimizer-cpu-offload",
    "--use-precision-aware-optimizer",
    "--overlap-moe-expert-parallel-comm",
    "--moe-enable-deepep",
    "--mock-data",
)


def _launch_shape(num_gpus: int, gpus_per_node: int) -> tuple[int, int]:
    """(nnodes, nproc_per_node): whole nodes where possible, else equal slices of them."""
    per_node = gcd(num_gpus, gpus_per_node)
    return num_gpus // per_node, per_node


def _plan_flags(p: TrainingPlan, spec: ModelSpec) -> tuple[list[tuple[str, object]], dict[str, str]]:
    notes: dict[str, str] = {}
    f: list[tuple[str, object]] = [
        ("--tensor-model-parallel-size", p.tp),
        ("--pipeline-model-parallel-size", p.pp),
        ("--context-parallel-size", p.cp),
    ]
    if p.ep > 1:
        f.append(("--expert-model-parallel-size", p.ep))
    if p.vpp > 1:
        if spec.num_layers % (p.pp * p.vpp) == 0:
            f.append(("--num-layers-per-virtual-pipeline-stage", spec.num_layers // (p.pp * p.vpp)))
        else:
            f.append(("--num-virtual-stages-per-pipeline-rank", p.vpp))
    if p.schedule.startswith("zero-bubble"):
        notes["schedule"] = f"Megatron-LM has no {p.schedule} pipeline schedule; wrote 1F1B"
    if p.sequence_parallel and p.tp > 1:  # Megatron-Core refuses sequence parallelism without TP
        f.append(("--sequence-parallel", None))
    f += [("--micro-batch-size", p.micro_batch), ("--global-batch-size", p.global_batch)]
    if p.recompute == "selective":
        f.append(("--recompute-granularity", "selective"))
    elif p.recompute == "full":
        f += [("--recompute-granularity", "full"), ("--recompute-method", "uniform"), ("--recompute-num-layers", 1)]
    if p.precision in ("bf16", "fp8"):
        f.append(("--bf16", None))
    elif p.precision == "fp16":
        f.append(("--fp16", None))
    if p.precision == "fp8":
        f.append(("--fp8-format", "hybrid"))  # E4M3 forward, E5M2 gradients (Micikevicius et al. 2022)
    if p.zero == 1:
        f.append(("--use-distributed-optimizer", None))
    elif p.zero in _ZERO_FSDP:
        f += [("--use-megatron-fsdp", None), ("--data-parallel-sharding-strategy", _ZERO_FSDP[p.zero])]
    if p.overlap_grad_reduce:
        f.append(("--overlap-grad-reduce", None))
    if p.optimizer in ("adamw", "adam-8bit"):
        f.append(("--optimizer", "adam"))  # Megatron's Adam decouples weight decay (AdamW)
    elif p.optimizer == "sgd":
        f.append(("--optimizer", "sgd"))
    else:
        notes["optimizer"] = f"Megatron-LM has no {p.optimizer} optimizer; wrote adam"
        f.append(("--optimizer", "adam"))
    if p.optimizer == "adam-8bit" or p.offload == "cpu":
        f.append(("--use-precision-aware-optimizer", None))
    if p.optimizer == "adam-8bit":  # one byte per Adam moment, as 8-bit Adam (Dettmers et al. 2022)
        f += [("--exp-avg-dtype", "fp8"), ("--exp-avg-sq-dtype", "fp8")]
    if p.offload == "cpu":
        f += [("--optimizer-cpu-offload", None), ("--optimizer-offload-fraction", 1.0)]
    elif p.offload == "nvme":
        notes["offload"] = "Megatron-LM offloads optimizer states to CPU memory only, not NVMe"
    f.append(("--attention-backend", _ATTENTION[p.attention]))
    if p.attention in ("flash1", "flash3"):
        notes["attention"] = (
            f"Megatron-LM picks the FlashAttention version it finds installed; {p.attention} not pinned"
        )
    if spec.is_moe:
        if p.moe_dispatcher == "deepep":
            f += [("--moe-token-dispatcher-type", "flex"), ("--moe-flex-dispatcher-backend", "deepep")]
        else:
            f.append(("--moe-token-dispatcher-type", "alltoall"))
        if p.overlap_moe_comm:
            f.append(("--overlap-moe-expert-parallel-comm", None))
    return f, notes


def write(plan: TrainingPlan, spec: ModelSpec, *, model_name: str, gpus_per_node: int = 8) -> tuple[str, dict]:
    nnodes, per_node = _launch_shape(plan.num_gpus, gpus_per_node)
    shape, notes = model_flags(spec, plan.seq_len)
    flags, plan_notes = _plan_flags(plan, spec)
    notes.update(plan_notes)
    run = [
        ("--data-path", "$DATA_PATH"),
        ("--tokenizer-type", "HuggingFaceTokenizer"),
        ("--tokenizer-model", "$TOKENIZER_MODEL"),
        ("--train-iters", "$TRAIN_ITERS"),
        ("--lr", "$LR"),
        ("--min-lr", "$MIN_LR"),
        ("--lr-decay-style", "cosine"),
        ("--weight-decay", 0.1),
        ("--clip-grad", 1.0),
    ]
    launcher = [
        ("--nnodes", nnodes),
        ("--nproc-per-node", per_node),
        ("--node-rank", "${NODE_RANK:-0}"),
        ("--master-addr", "${MASTER_ADDR:-localhost}"),
        ("--master-port", "${MASTER_PORT:-6000}"),
    ]
    header = [
        "#!/usr/bin/env bash",
        f"# Megatron-LM launch written by fathom: {model_name} on {plan.num_gpus} GPUs "
        f"({nnodes} x {per_node}; TP{plan.tp} PP{plan.pp} CP{plan.cp} DP{plan.dp} EP{plan.ep}).",
        f"# Flags: {DOC_URL}",
        f"# fathom-model: {model_name}",
        "set -euo pipefail",
        'MEGATRON_LM=${MEGATRON_LM:-"$PWD"}',
        "DATA_PATH=${DATA_PATH:?set DATA_PATH to a Megatron indexed dataset prefix}",
        "TOKENIZER_MODEL=${TOKENIZER_MODEL:?set TOKENIZER_MODEL to a Hugging Face tokenizer name or path}",
        "TRAIN_ITERS=${TRAIN_ITERS:-1000}",
        "LR=${LR:-3e-4}",
        "MIN_LR=${MIN_LR:-3e-5}",
        "",
    ]
    command = render_command(["torchrun"], launcher + [("$MEGATRON_LM/pretrain_gpt.py", None)] + shape + flags + run)
    return "\n".join(header) + "\n" + command, notes


def read(text: str, *, spec: ModelSpec | None = None, num_gpus: int | None = None) -> ImportedTraining:
    source = "megatron arguments"
    script = parse_script(text)
    found = script.find("torchrun", "pretrain_gpt.py", "pretrain_gpt")
    if found is None:
        raise FathomInputError(f"{source}: no torchrun or pretrain_gpt.py command found")
    o = Options(found[1], source, BARE_FLAGS)
    name = script.comment_value("fathom-model")
    parsed = spec_from_options(o, name or "megatron-model")
    spec = spec or parsed
    tp = o.number("--tensor-model-parallel-size", default=1)
    pp = o.number("--pipeline-model-parallel-size", default=1)
    cp = o.number("--context-parallel-size", default=1)
    world = o.number("--nnodes", default=1) * o.number("--nproc-per-node", "--nproc_per_node", default=0)
    world = world or num_gpus
    if not world:
        raise FathomInputError(f"{source}: no torchrun --nproc-per-node; give --num-gpus")
    if world % (tp * pp * cp):
        raise FathomInputError(f"{source}: {world} GPUs are not a multiple of tp*pp*cp = {tp * pp * cp}")
    vpp = o.number("--num-virtual-stages-per-pipeline-rank", default=1)
    if layers_per_stage := o.number("--num-layers-per-virtual-pipeline-stage"):
        if spec is None:
            raise FathomInputError(f"{source}: --num-layers-per-virtual-pipeline-stage needs the model (--model)")
        vpp = spec.num_layers // (pp * layers_per_stage)
    warnings: list[str] = []
    dispatcher = o.text("--moe-token-dispatcher-type", default="alltoall")
    if dispatcher == "allgather":
        warnings.append("moe_dispatcher: Megatron's allgather dispatcher read as alltoall")
    deepep = dispatcher == "flex" and (
        o.flag("--moe-enable-deepep") or o.text("--moe-flex-dispatcher-backend", default="deepep") == "deepep"
    )
    fsdp = o.text("--data-parallel-sharding-strategy", default="optim_grads_params")
    if o.flag("--use-megatron-fsdp"):
        zero = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}[fsdp]
    else:
        zero = 1 if o.flag("--use-distributed-optimizer") else 0
    eight_bit = o.text("--exp-avg-dtype") == "fp8" and o.text("--exp-avg-sq-dtype") == "fp8"
    optimizer = {"adam": "adam-8bit" if eight_bit else "adamw", "sgd": "sgd"}.get(o.text("--optimizer", default="adam"))
    if optimizer is None:
        warnings.append(f"optimizer: Megatron's {o.text('--optimizer')} read as adamw")
        optimizer = "adamw"
    precision = (
        "fp8" if o.has("--fp8-format") else "bf16" if o.flag("--bf16") else "fp16" if o.flag("--fp16") else "fp32"
    )
    granularity = o.text("--recompute-granularity")
    plan = TrainingPlan(
        seq_len=o.number("--seq-length", default=spec.max_seq_len if spec else 4096),
        global_batch=o.number("--global-batch-size", default=o.number("--micro-batch-size", default=1)),
        micro_batch=o.number("--micro-batch-size", default=1),
        tp=tp,
        pp=pp,
        cp=cp,
        dp=world // (tp * pp * cp),
        ep=o.number("--expert-model-parallel-size", default=1),
        vpp=vpp,
        sequence_parallel=o.flag("--sequence-parallel"),
        zero=zero,
        schedule="interleaved" if vpp > 1 else "1f1b",
        recompute=granularity or "none",
        precision=precision,
        optimizer=optimizer,
        offload="cpu" if o.flag("--optimizer-cpu-offload") else "none",
        attention="unfused" if o.text("--attention-backend") in ("unfused", "local") else "flash2",
        moe_dispatcher="deepep" if deepep else "alltoall",
        overlap_moe_comm=o.flag("--overlap-moe-expert-parallel-comm"),
        overlap_grad_reduce=o.flag("--overlap-grad-reduce"),
    )
    return ImportedTraining(plan=plan, model=name, model_spec=parsed, warnings=warnings)


ENGINE = TrainingEngine(name="megatron", title="Megatron-LM", doc_url=DOC_URL, write=write, read=read)
