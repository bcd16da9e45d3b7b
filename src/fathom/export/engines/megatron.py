"""Megatron-LM: a ``torchrun ... pretrain_gpt.py`` launch script.

Flags as defined in Megatron-LM ``megatron/training/arguments.py`` (most generated from Megatron-Core's
``TransformerConfig`` / ``ModelParallelConfig`` dataclasses, ``--field-name`` for ``field_name``):
https://github.com/NVIDIA/Megatron-LM/blob/main/megatron/training/arguments.py
Data parallelism is what is left of the world size: dp = nnodes * nproc_per_node / (tp * pp * cp).
"""

from __future__ import annotations

from math import gcd

from pydantic import ValidationError

from fathom.errors import FathomInputError
from fathom.export.base import ImportedTraining, build_training_plan
from fathom.export.cmdline import Options, parse_script, render_command
from fathom.export.megatron_model import BARE_MODEL_FLAGS, model_flags, spec_from_options
from fathom.export.pipeline_split import (
    megatron_split,
    megatron_stage_layers,
    parse_megatron_layout,
    priced_rank_layers,
    rank_layers,
)
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
    "--no-overlap-p2p-communication",
    "--overlap-param-gather",
    "--tp-comm-overlap",
    "--moe-router-fusion",
    "--moe-router-force-load-balancing",
    "--account-for-embedding-in-pipeline-split",
    "--account-for-loss-in-pipeline-split",
    "--recompute-activations",
)
MULTI_FLAGS = ("--cuda-graph-scope", "--cuda-graph-modules")  # argparse nargs='+'
# fathom's cuda_graphs as Megatron-Core's --cuda-graph-impl transformer_engine scope; an empty scope is the whole
# layer. --cuda-graph-scope is the name Megatron-LM releases know (main reads it as --cuda-graph-modules).
_CUDA_GRAPH_SCOPE = {"attn": ["attn"], "attn-moe-router": ["attn", "moe_router", "moe_preprocess"], "full": []}


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
    f += _pipeline_flags(p, spec, notes)
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
    if p.overlap_param_gather and p.zero >= 1:  # Megatron asserts a sharded optimizer and --overlap-grad-reduce
        if p.overlap_grad_reduce:
            f.append(("--overlap-param-gather", None))
        else:
            notes["overlap_param_gather"] = "Megatron-LM overlaps parameter gathers only with --overlap-grad-reduce"
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
    if p.overlap_tp_comm and p.tp > 1:
        if p.sequence_parallel:
            f.append(("--tp-comm-overlap", None))  # Transformer Engine's userbuffers overlap
        else:
            notes["overlap_tp_comm"] = "Megatron-LM overlaps TP traffic with GEMMs only under sequence parallelism"
    if not p.async_tp_allreduce and p.tp > 1:
        notes["async_tp_allreduce"] = (
            "Megatron-LM always runs its backward TP collectives under the weight-gradient GEMM "
            "(--no-async-tensor-model-parallel-allreduce is gone)"
        )
    if p.activation_offload_layers:
        f.append(("--cpu-offloading-num-layers", p.activation_offload_layers))  # > 0 turns cpu_offloading on
    if p.cuda_graphs != "none":
        f.append(("--cuda-graph-impl", "transformer_engine"))
        if scope := _CUDA_GRAPH_SCOPE[p.cuda_graphs]:
            f.append(("--cuda-graph-scope", scope))
    if spec.is_moe:
        if p.moe_dispatcher == "deepep":
            f += [("--moe-token-dispatcher-type", "flex"), ("--moe-flex-dispatcher-backend", "deepep")]
        else:
            f.append(("--moe-token-dispatcher-type", "alltoall"))
        if p.overlap_moe_comm:
            f.append(("--overlap-moe-expert-parallel-comm", None))
        if p.moe_router_fusion:
            f.append(("--moe-router-fusion", None))
        if p.moe_routing == "dropless":
            notes["moe_routing"] = (
                "Megatron-LM routes dropless unless given --moe-expert-capacity-factor: nothing to write, and the "
                "file reads back as fathom's default balanced"
            )
    notes.update(_unsupported_notes(p))
    return f, notes


def _pipeline_flags(p: TrainingPlan, spec: ModelSpec, notes: dict[str, str]) -> list[tuple[str, object]]:
    """Pipeline stages holding the layers fathom priced: Megatron-Core asserts num_layers % pp == 0 (and a whole
    number of layers per virtual stage) unless the uneven first and last stages or a layout are given."""
    if p.pp == 1:
        return []
    layers, f = spec.num_layers, []
    if p.balance_pipeline_ends:  # the embedding and the loss count as a layer each (TrainingPlan's comment)
        if (layers + 2) % p.pp == 0 and ((layers + 2) // p.pp) % p.vpp == 0:
            f += [("--account-for-embedding-in-pipeline-split", None), ("--account-for-loss-in-pipeline-split", None)]
            return f + ([("--num-virtual-stages-per-pipeline-rank", p.vpp)] if p.vpp > 1 else []) + _p2p(p, notes)
        notes["balance_pipeline_ends"] = (
            f"Megatron-LM accounts for the embedding and loss only when num_layers + 2 = {layers + 2} splits into "
            f"pp x vpp equal stages; wrote fathom's unbalanced split"
        )
    split = megatron_split(layers, p.pp, p.vpp)
    if split.layout:  # sets the virtual stages itself
        return [("--pipeline-model-parallel-layout", split.layout)] + _p2p(p, notes)
    if p.vpp > 1:
        if split.first is None and split.last is None:
            f.append(("--num-layers-per-virtual-pipeline-stage", layers // (p.pp * p.vpp)))
        else:  # Megatron-LM asks for this form with uneven stages
            f.append(("--num-virtual-stages-per-pipeline-rank", p.vpp))
    if split.first is not None:
        f.append(("--decoder-first-pipeline-num-layers", split.first))
    if split.last is not None:
        f.append(("--decoder-last-pipeline-num-layers", split.last))
    return f + _p2p(p, notes)


def _p2p(p: TrainingPlan, notes: dict[str, str]) -> list[tuple[str, object]]:
    """Megatron-LM overlaps pipeline sends by default, in the interleaved schedule only, and needs it there at pp 2."""
    if p.vpp == 1:
        if p.overlap_p2p_comm:
            notes["overlap_p2p_comm"] = "Megatron-LM overlaps pipeline sends only in its interleaved schedule"
        return []
    if p.overlap_p2p_comm:
        return []
    if p.pp == 2:
        notes["overlap_p2p_comm"] = "Megatron-LM's interleaved schedule at pp=2 needs overlapped sends; left them on"
        return []
    return [("--no-overlap-p2p-communication", None)]


def _unsupported_notes(p: TrainingPlan) -> dict[str, str]:
    """Plan levers that pretrain_gpt.py has no argument for."""
    notes = {}
    if p.finetune != "none":
        notes["finetune"] = f"Megatron-LM's pretrain_gpt.py trains every weight; {p.finetune} is Megatron-Bridge's PEFT"
    if p.frozen_layers:
        notes["frozen_layers"] = "Megatron-LM has no argument that freezes the leading layers"
    if not p.master_weights and p.precision != "fp32":
        notes["master_weights"] = "Megatron-LM keeps fp32 master weights beside --bf16 / --fp16 parameters"
    if not p.fp8_saved_inputs and p.precision == "fp8":
        notes["fp8_saved_inputs"] = "Transformer Engine's linears (Megatron-LM's FP8) save FP8 inputs for backward"
    if p.zero == 3 and p.zero3_gather != "prefetch":
        notes["zero3_gather"] = "Megatron-FSDP prefetches each unit's all-gather ahead of its use"
    if p.zero == 2 and p.zero2_comm != "per-step":
        notes["zero2_comm"] = "Megatron-LM reduce-scatters ZeRO-2 gradients once per step, not per micro-batch"
    if p.pp > 1 and p.pipeline_engine != "megatron":
        notes["pipeline_engine"] = "Megatron-LM runs its own pipeline schedules (sent stage outputs freed)"
    return notes


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


_KEYS = {
    "seq_len": "--seq-length",
    "global_batch": "--global-batch-size",
    "micro_batch": "--micro-batch-size",
    "tp": "--tensor-model-parallel-size",
    "pp": "--pipeline-model-parallel-size",
    "cp": "--context-parallel-size",
    "ep": "--expert-model-parallel-size",
    "dp": "the data-parallel size (world / (tp*pp*cp))",
    "vpp": "--num-virtual-stages-per-pipeline-rank",
    "activation_offload_layers": "--cpu-offloading-num-layers",
}
# Shape flags checked against --model: (flag, ModelSpec field).
_SHAPE = (
    ("--num-layers", "num_layers"),
    ("--hidden-size", "hidden_size"),
    ("--num-attention-heads", "num_heads"),
    ("--kv-channels", "head_dim"),
    ("--vocab-size", "vocab_size"),
)


def _parsed_spec(o: Options, name: str, spec: ModelSpec | None) -> ModelSpec | None:
    """The shape the flags give; with --model, a script lacking part of it (a vocab from --tokenizer-model) is
    fine: the named model supplies the shape."""
    try:
        return spec_from_options(o, name)
    except FathomInputError:
        if spec is None:
            raise
        return None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc") or ()) or "model shape"
        raise FathomInputError(f"{o.source}: the model shape flags give a bad {where}: {err['msg']}") from None


def _shape_warnings(o: Options, spec: ModelSpec, warnings: list[str]) -> None:
    """--model against the script's own shape flags: name each one that disagrees (fathom prices --model)."""
    pairs = list(_SHAPE)
    if o.flag("--group-query-attention"):
        pairs.append(("--num-query-groups", "num_kv_heads"))
    if not spec.is_moe:
        pairs.append(("--ffn-hidden-size", "ffn_size"))
    differ = [
        f"{flag} {o.number(flag)} (model {getattr(spec, field)})"
        for flag, field in pairs
        if o.has(flag) and o.number(flag) != getattr(spec, field)
    ]
    if differ:
        warnings.append(f"model: {spec.name} differs from the script's {', '.join(differ)}; fathom priced {spec.name}")


def _world(o: Options, words: list[str], num_gpus: int | None, warnings: list[str]) -> int:
    """GPUs from torchrun's --nnodes x --nproc-per-node, else --num-gpus."""
    nodes = o.number("--nnodes", default=1, minimum=1)
    per_node = o.number("--nproc-per-node", "--nproc_per_node", default=0, minimum=1)
    world = nodes * per_node
    if world and num_gpus and num_gpus != world:
        warnings.append(
            f"num_gpus: torchrun launches {nodes} x {per_node} = {world} GPUs; --num-gpus {num_gpus} ignored"
        )
    if world or num_gpus:
        return world or num_gpus
    script_at = next((i for i, w in enumerate(words) if w.rsplit("/", 1)[-1].startswith("pretrain_gpt")), len(words))
    if unexpanded := [w for w in words[:script_at] if "$" in w]:
        raise FathomInputError(
            f"{o.source}: torchrun takes {' '.join(unexpanded)}, a shell variable fathom does not expand; "
            "give --num-gpus"
        )
    raise FathomInputError(f"{o.source}: no torchrun --nproc-per-node; give --num-gpus")


def _recompute(o: Options, spec: ModelSpec | None, pp: int, warnings: list[str]) -> str:
    """fathom's recompute from Megatron's --recompute-* flags (megatron/training/arguments.py)."""
    granularity = o.text("--recompute-granularity")
    if granularity is None and o.flag("--recompute-activations"):  # Megatron's older spelling of selective
        granularity = "selective"
    if granularity not in (None, "full", "selective"):
        raise FathomInputError(f"{o.source}: --recompute-granularity must be full or selective, got {granularity!r}")
    method = o.text("--recompute-method")
    if method not in (None, "uniform", "block"):
        raise FathomInputError(f"{o.source}: --recompute-method must be uniform or block, got {method!r}")
    if granularity != "full":
        if method is not None:  # Megatron reads the method only with full granularity
            warnings.append("recompute: --recompute-method applies only with --recompute-granularity full; ignored")
        return granularity or "none"
    chunk = o.number("--recompute-num-layers", default=1, minimum=1)
    if method is None:  # Megatron-Core's TransformerBlock raises on full recompute without a method
        warnings.append("recompute: full recompute needs --recompute-method; priced every layer recomputed")
    elif method == "block":  # only the first N layers of each pipeline stage are recomputed
        layers = priced_rank_layers(spec.num_layers, pp) if spec else None
        if layers is None or chunk < layers:
            warnings.append(
                f"recompute: --recompute-method block recomputes {chunk} layer(s) a pipeline stage and keeps the "
                "rest's activations; fathom prices all layers recomputed"
            )
    elif chunk > 1:  # uniform: one checkpoint per chunk of N layers, every layer recomputed
        warnings.append(
            f"recompute: --recompute-method uniform --recompute-num-layers {chunk} keeps one checkpoint every "
            f"{chunk} layers; fathom prices all layers recomputed with a checkpoint at each"
        )
    return "full"


def read(text: str, *, spec: ModelSpec | None = None, num_gpus: int | None = None) -> ImportedTraining:
    source = "megatron arguments"
    script = parse_script(text)
    found = script.find("torchrun", "pretrain_gpt.py", "pretrain_gpt")
    if found is None:
        raise FathomInputError(f"{source}: no torchrun or pretrain_gpt.py command found")
    o = Options(found[1], source, BARE_FLAGS, MULTI_FLAGS)
    name = script.comment_value("fathom-model")
    parsed = _parsed_spec(o, name or "megatron-model", spec)
    warnings: list[str] = []
    if spec is not None:
        _shape_warnings(o, spec, warnings)
    spec = spec or parsed
    tp = o.number("--tensor-model-parallel-size", default=1, minimum=1)
    pp = o.number("--pipeline-model-parallel-size", default=1, minimum=1)
    cp = o.number("--context-parallel-size", default=1, minimum=1)
    world = _world(o, found[1], num_gpus, warnings)
    if world % (tp * pp * cp):
        raise FathomInputError(f"{source}: {world} GPUs are not a multiple of tp*pp*cp = {tp * pp * cp}")
    ends = (o.flag("--account-for-embedding-in-pipeline-split"), o.flag("--account-for-loss-in-pipeline-split"))
    if any(ends) and not all(ends):
        warnings.append("balance_pipeline_ends: fathom balances both ends or neither; read as neither")
    vpp = _read_vpp(o, spec, pp, sum(ends), warnings)
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
    recompute = _recompute(o, spec, pp, warnings)
    plan = build_training_plan(
        source,
        _KEYS,
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
        recompute=recompute,
        precision=precision,
        optimizer=optimizer,
        offload="cpu" if o.flag("--optimizer-cpu-offload") else "none",
        attention="unfused" if o.text("--attention-backend") in ("unfused", "local") else "flash2",
        moe_dispatcher="deepep" if deepep else "alltoall",
        overlap_moe_comm=o.flag("--overlap-moe-expert-parallel-comm"),
        overlap_grad_reduce=o.flag("--overlap-grad-reduce"),
        overlap_param_gather=o.flag("--overlap-param-gather"),
        overlap_tp_comm=o.flag("--tp-comm-overlap"),
        overlap_p2p_comm=vpp > 1 and not o.flag("--no-overlap-p2p-communication"),
        balance_pipeline_ends=all(ends),
        activation_offload_layers=o.number("--cpu-offloading-num-layers", default=0),
        cuda_graphs=_read_cuda_graphs(o, warnings),
        moe_router_fusion=o.flag("--moe-router-fusion"),
    )
    return ImportedTraining(plan=plan, model=name, model_spec=parsed, warnings=warnings)


def _read_vpp(o: Options, spec: ModelSpec | None, pp: int, ends: int, warnings: list[str]) -> int:
    """Model chunks per pipeline rank, and a warning when the script's split puts more layers on a rank than fathom
    prices (ceil(num_layers / pp)) or is one Megatron-Core refuses."""
    stages: list[int] | None = None
    if layout := o.text("--pipeline-model-parallel-layout"):
        try:
            chunks = parse_megatron_layout(layout)
        except ValueError:
            raise FathomInputError(f"{o.source}: --pipeline-model-parallel-layout {layout!r} is malformed") from None
        if len(chunks) % pp:
            raise FathomInputError(f"{o.source}: --pipeline-model-parallel-layout has {len(chunks)} stages for pp={pp}")
        vpp, stages = len(chunks) // pp, rank_layers(chunks, pp)
    elif per_chunk := o.number("--num-layers-per-virtual-pipeline-stage", minimum=1):
        if spec is None:
            raise FathomInputError(f"{o.source}: --num-layers-per-virtual-pipeline-stage needs the model (--model)")
        per_stage, uneven = divmod(spec.num_layers + ends, pp)
        if not uneven and per_stage % per_chunk:  # Megatron asserts layers per stage % layers per chunk == 0
            raise FathomInputError(
                f"{o.source}: --num-layers-per-virtual-pipeline-stage {per_chunk} does not divide the {per_stage} "
                f"layers of each of the pp={pp} stages ({spec.num_layers} layers); Megatron-LM refuses it"
            )
        vpp = max(1, per_stage // per_chunk)
    else:
        vpp = o.number("--num-virtual-stages-per-pipeline-rank", default=1, minimum=1)
    if spec is None or pp == 1 or ends:
        return vpp
    first, last = o.number("--decoder-first-pipeline-num-layers"), o.number("--decoder-last-pipeline-num-layers")
    if stages is None:
        stages = megatron_stage_layers(spec.num_layers, pp, first, last)
    cap = priced_rank_layers(spec.num_layers, pp)
    if stages is None:
        warnings.append(f"pp: Megatron-Core cannot split {spec.num_layers} layers over pp={pp} as the script asks")
    elif max(stages) > cap:
        warnings.append(f"pp: the script puts {max(stages)} layers on a pipeline rank; fathom prices {cap}")
    return vpp


def _read_cuda_graphs(o: Options, warnings: list[str]) -> str:
    """fathom's cuda_graphs from --cuda-graph-impl and its scope (or the deprecated --enable-cuda-graph)."""
    impl = o.text("--cuda-graph-impl", default="none")
    if o.flag("--enable-cuda-graph") or o.flag("--external-cuda-graph"):
        impl = "local"
    if impl == "none":
        return "none"
    scope = o.words("--cuda-graph-scope", "--cuda-graph-modules")
    if not scope or scope == ["full"]:
        return "full"
    if "attn" in scope:
        return "attn-moe-router" if "moe_router" in scope else "attn"
    warnings.append(f"cuda_graphs: Megatron's CUDA graph scope {' '.join(scope)} read as the whole layer")
    return "full"


ENGINE = TrainingEngine(name="megatron", title="Megatron-LM", doc_url=DOC_URL, write=write, read=read)
