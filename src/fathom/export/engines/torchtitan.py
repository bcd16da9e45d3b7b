"""torchtitan: a job config TOML (``--job.config_file``), as read by torchtitan 0.1-0.2's ``JobConfig``.

Sections and keys: torchtitan ``torchtitan/config/job_config.py`` (v0.2.2,
https://github.com/pytorch/torchtitan/blob/v0.2.2/torchtitan/config/job_config.py). torchtitan 0.3 replaced the
TOML file with Python config functions but kept the same ``section.key`` names as command-line overrides
(``--parallelism.tensor_parallel_degree 8``). FSDP2 is ZeRO-3 when it reshards after forward and ZeRO-2 when it
keeps the gathered parameters (``fsdp_reshard_after_forward = "never"``); TP always shards norms over the sequence.
With pipeline parallelism, one step's local batch is cut into ``pipeline_parallel_microbatch_size`` micro-batches.
"""

from __future__ import annotations

import tomllib

from fathom.errors import FathomInputError
from fathom.export.base import ImportedTraining, build_training_plan
from fathom.export.pipeline_split import (
    layer_chunks,
    priced_rank_layers,
    rank_layers,
    torchtitan_interleaved,
    torchtitan_stage_layers,
)
from fathom.export.registry import TrainingEngine
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan

DOC_URL = "https://github.com/pytorch/torchtitan/blob/v0.2.2/torchtitan/config/job_config.py"
# fathom presets that torchtitan ships as (model name, flavor).
FLAVORS = {
    "llama-3-8b": ("llama3", "8B"),
    "llama-3.1-8b": ("llama3", "8B"),
    "llama-3-70b": ("llama3", "70B"),
    "llama-3.1-70b": ("llama3", "70B"),
    "llama-3.3-70b": ("llama3", "70B"),
    "llama-3.1-405b": ("llama3", "405B"),
    "deepseek-v2": ("deepseek_v3", "236B"),
    "deepseek-v3": ("deepseek_v3", "671B"),
    "qwen3-8b": ("qwen3", "8B"),
    "qwen3-32b": ("qwen3", "32B"),
}
_SCHEDULE = {"1f1b": "1F1B", "interleaved": "Interleaved1F1B"}
_FROM_SCHEDULE = {
    "1F1B": "1f1b",
    "GPipe": "1f1b",
    "Interleaved1F1B": "interleaved",
    "LoopedBFS": "interleaved",
    "InterleavedZeroBubble": "zero-bubble",
    "ZBVZeroBubble": "zero-bubble",
    "DualPipeV": "zero-bubble",
}
_FLOAT8 = "quantize.linear.float8"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _stage_layout(p: TrainingPlan, spec: ModelSpec, notes: dict[str, str]) -> dict:
    """The pipeline keys that give the split fathom priced: torchtitan's defaults count the embedding and the head
    as a layer each (first/last_stage_less_layers 1), which can put more than ceil(L/pp) layers on a stage."""
    layers = spec.num_layers
    if p.vpp == 1:
        balanced = p.balance_pipeline_ends and (layers + 2) % p.pp == 0
        if p.balance_pipeline_ends and not balanced:
            notes["balance_pipeline_ends"] = f"needs num_layers + 2 = {layers + 2} to be a multiple of pp={p.pp}"
        return {
            "pipeline_parallel_first_stage_less_layers": int(balanced),
            "pipeline_parallel_last_stage_less_layers": int(balanced),
        }
    found = torchtitan_interleaved(layers, p.pp, p.vpp)
    if found and found[3] <= priced_rank_layers(layers, p.pp):
        per_stage, first_less, last_less, _ = found
        return {
            "pipeline_parallel_layers_per_stage": per_stage,
            "pipeline_parallel_first_stage_less_layers": first_less,
            "pipeline_parallel_last_stage_less_layers": last_less,
        }
    # No layers_per_stage gives it: name every stage's modules (torchtitan's own FQNs for its LLMs).
    chunks = layer_chunks(layers, p.pp, p.vpp)
    names, start = [], 0
    for k, n in enumerate(chunks):
        stage = [f"layers.{i}" for i in range(start, start + n)]
        start += n
        head = ["norm", "output"] if k == len(chunks) - 1 else []
        names.append((["tok_embeddings"] if k == 0 else []) + stage + head)
    return {"module_fqns_per_model_part": names}


def _notes(p: TrainingPlan, spec: ModelSpec) -> dict[str, str]:
    notes = {}
    if spec.name not in FLAVORS:
        notes["model"] = f"torchtitan ships no flavor of {spec.name}; set [model] name/flavor to your model"
    if p.zero == 1:
        notes["zero"] = "FSDP2 has no optimizer-only sharding; wrote ZeRO-2 (fsdp_reshard_after_forward = never)"
    if p.schedule == "zero-bubble":
        notes["schedule"] = "torchtitan's zero-bubble schedules need several stages per rank; wrote 1F1B"
    if p.schedule == "zero-bubble-2p":
        notes["schedule"] = "torchtitan has no ZB-H2 / ZB-2p schedule; wrote 1F1B"
    if p.tp > 1 and not p.sequence_parallel:
        notes["sequence_parallel"] = "torchtitan's tensor parallelism always shards norms over the sequence"
    if p.precision == "fp16":
        notes["precision"] = "torchtitan mixes precision in bfloat16 or float32 only; wrote bfloat16"
    if p.optimizer != "adamw":
        notes["optimizer"] = "torchtitan 0.2 builds Adam or AdamW only; wrote AdamW"
    if p.offload == "cpu":
        notes["offload"] = "FSDP2 CPU offload (enable_cpu_offload) moves parameters and gradients too"
    elif p.offload == "nvme":
        notes["offload"] = "torchtitan cannot offload to NVMe"
    if p.attention != "flash2":
        notes["attention"] = "torchtitan runs PyTorch SDPA (FlashAttention-2 kernels) or flex attention"
    if not p.overlap_grad_reduce:
        notes["overlap_grad_reduce"] = "FSDP2 and DDP always overlap the gradient reduction with backward"
    if p.overlap_moe_comm:
        notes["overlap_moe_comm"] = "torchtitan overlaps expert communication only inside its DualPipeV schedule"
    notes.update(_lever_notes(p, spec))
    return notes


def _lever_notes(p: TrainingPlan, spec: ModelSpec) -> dict[str, str]:
    """Plan levers torchtitan 0.2's job config has no key for, or that its stack fixes."""
    notes = {}
    if p.finetune != "none":
        notes["finetune"] = f"torchtitan 0.2 trains every weight; it has no {p.finetune} adapters"
    if p.frozen_layers:
        notes["frozen_layers"] = "torchtitan 0.2 has no key that freezes the leading layers"
    if p.activation_offload_layers:
        notes["activation_offload_layers"] = "torchtitan 0.2 does not offload activations to the host"
    if p.cuda_graphs != "none":
        notes["cuda_graphs"] = "torchtitan compiles with torch.compile; it has no per-layer CUDA graph key"
    if spec.is_moe and p.moe_router_fusion:
        notes["moe_router_fusion"] = "torchtitan's MoE router is not Transformer Engine's fused one"
    if spec.is_moe and p.moe_routing == "dropless":
        notes["moe_routing"] = "torchtitan routes dropless already: nothing to write, and it reads back as balanced"
    if not p.master_weights and p.precision != "fp32":
        notes["master_weights"] = "FSDP2 mixed precision keeps fp32 parameters beside the bf16 compute copy"
    if p.precision == "fp8" and p.fp8_saved_inputs:
        notes["fp8_saved_inputs"] = "torchao's Float8Linear (torchtitan's FP8) saves 16-bit inputs for backward"
    if p.tp > 1 and p.async_tp_allreduce:
        notes["async_tp_allreduce"] = "DTensor TP does not run its backward collectives under the weight GEMM"
    if p.dp > 1 and p.zero in (1, 2) and p.zero2_comm == "per-step":
        notes["zero2_comm"] = "FSDP2 without resharding gathers and reduce-scatters each block every micro-batch"
    if p.dp > 1 and p.zero == 3 and p.zero3_gather != "prefetch":
        notes["zero3_gather"] = "FSDP2 prefetches the next block's all-gather in forward and backward"
    if p.dp > 1 and p.zero >= 1 and p.overlap_param_gather:
        notes["overlap_param_gather"] = "FSDP2 schedules its own all-gathers (zero3_gather, zero2_comm)"
    if p.pp > 1 and p.pipeline_engine != "megatron":
        notes["pipeline_engine"] = "torch.distributed.pipelining frees sent stage outputs as Megatron-LM does"
    if p.pp > 1 and p.overlap_p2p_comm:
        notes["overlap_p2p_comm"] = "torch.distributed.pipelining waits on its sends and receives between steps"
    return notes


def write(plan: TrainingPlan, spec: ModelSpec, *, model_name: str, gpus_per_node: int = 8) -> tuple[str, dict]:
    p = plan
    name, flavor = FLAVORS.get(spec.name, (model_name, "custom"))
    sharded = p.zero >= 1
    local = p.global_batch // p.dp if p.pp > 1 else p.micro_batch
    parallel: dict = {
        "data_parallel_replicate_degree": 1 if sharded else p.dp,
        "data_parallel_shard_degree": p.dp if sharded else 1,
        "fsdp_reshard_after_forward": "always" if p.zero == 3 else "never",
        "tensor_parallel_degree": p.tp,
        "pipeline_parallel_degree": p.pp,
        "pipeline_parallel_schedule": _SCHEDULE.get(p.schedule, "1F1B"),
        "pipeline_parallel_microbatch_size": p.micro_batch,
        "context_parallel_degree": p.cp,
        "expert_parallel_degree": p.ep,
        "expert_parallel_comm_backend": "deepep" if p.moe_dispatcher == "deepep" else "standard",
    }
    notes = _notes(plan, spec)
    if p.pp > 1:
        parallel.update(_stage_layout(p, spec, notes))
    if p.overlap_tp_comm and p.tp > 1:  # async TP: inductor's micro-pipelined TP, which needs the model compiled
        parallel["enable_async_tensor_parallel"] = True
    sections: dict[str, dict] = {
        "job": {"description": f"fathom plan: {model_name} on {p.num_gpus} GPUs"},
        "model": {"name": name, "flavor": flavor, "converters": [_FLOAT8] if p.precision == "fp8" else []},
        "optimizer": {"name": "AdamW", "lr": 3e-4, "eps": 1e-8, "weight_decay": 0.1},
        "training": {
            "local_batch_size": local,
            "global_batch_size": p.global_batch,
            "seq_len": p.seq_len,
            "mixed_precision_param": "float32" if p.precision == "fp32" else "bfloat16",
            "enable_cpu_offload": p.offload == "cpu",
            "max_norm": 1.0,
        },
        "parallelism": parallel,
        "activation_checkpoint": {"mode": p.recompute, "selective_ac_option": "op"},
    }
    if parallel.get("enable_async_tensor_parallel"):
        sections["compile"] = {"enable": True, "components": ["model", "loss"]}
    if p.precision == "fp8":
        sections[_FLOAT8] = {
            "enable_fsdp_float8_all_gather": sharded,
            "precompute_float8_dynamic_scale_for_fsdp": sharded,
        }
    lines = [
        f"# torchtitan job config written by fathom ({p.num_gpus} GPUs). Keys: {DOC_URL}",
        f"# fathom-model: {model_name}",
    ]
    for section, values in sections.items():
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n", notes


def _get(table: dict, key: str, default, kind):
    value = table.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise FathomInputError(f"torchtitan config: {key} must be {kind.__name__}, got {value!r}")
    return value


def _degree(table: dict, key: str, default: int = 1) -> int:
    value = _get(table, key, default, int)
    if value < 1:
        raise FathomInputError(f"torchtitan config: {key} must be a positive integer, got {value!r}")
    return value


def _table(config: dict, name: str) -> dict:
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise FathomInputError(f"torchtitan config: [{name}] must be a table, got {value!r}")
    return value


# Keys of torchtitan releases before the [parallelism] section (2024): the degrees sat under [training] (pipeline
# under [experimental]), data_parallel_degree was the FSDP degree, and batch_size was today's local_batch_size.
_LEGACY = {
    ("training", "batch_size"): ("training", "local_batch_size"),
    ("training", "data_parallel_degree"): ("parallelism", "data_parallel_shard_degree"),
    ("training", "data_parallel_shard_degree"): ("parallelism", "data_parallel_shard_degree"),
    ("training", "data_parallel_replicate_degree"): ("parallelism", "data_parallel_replicate_degree"),
    ("training", "tensor_parallel_degree"): ("parallelism", "tensor_parallel_degree"),
    ("training", "context_parallel_degree"): ("parallelism", "context_parallel_degree"),
    ("experimental", "pipeline_parallel_degree"): ("parallelism", "pipeline_parallel_degree"),
    ("experimental", "pipeline_parallel_schedule"): ("parallelism", "pipeline_parallel_schedule"),
    ("experimental", "context_parallel_degree"): ("parallelism", "context_parallel_degree"),
}


def _legacy_keys(config: dict, warnings: list[str]) -> None:
    """Read older torchtitan keys under their current names (a current key, when both are given, wins)."""
    for (old_section, old_key), (section, key) in _LEGACY.items():
        old_table = _table(config, old_section)
        if old_key not in old_table:
            continue
        table = config.setdefault(section, {})
        if not isinstance(table, dict):
            raise FathomInputError(f"torchtitan config: [{section}] must be a table, got {table!r}")
        if key in table:
            warnings.append(
                f"{key}: [{old_section}] {old_key} (an older torchtitan key) ignored beside [{section}] {key}"
            )
        else:
            table[key] = old_table[old_key]
            warnings.append(f"{key}: read the older torchtitan key [{old_section}] {old_key} as [{section}] {key}")


_KEYS = {
    "seq_len": "[training] seq_len",
    "global_batch": "[training] global_batch_size",
    "micro_batch": "[training] local_batch_size (or pipeline_parallel_microbatch_size)",
    "tp": "[parallelism] tensor_parallel_degree",
    "pp": "[parallelism] pipeline_parallel_degree",
    "cp": "[parallelism] context_parallel_degree",
    "ep": "[parallelism] expert_parallel_degree",
    "dp": "[parallelism] data_parallel_replicate_degree x data_parallel_shard_degree",
    "vpp": "[parallelism] pipeline_parallel_layers_per_stage",
}


def _model_name(text: str, model: dict) -> str | None:
    for line in text.splitlines():
        if line.startswith("# fathom-model:"):
            return line.split(":", 1)[1].strip()
    pair = (model.get("name"), model.get("flavor"))
    return next((k for k, v in FLAVORS.items() if v == pair), None)


def read(text: str, *, spec: ModelSpec | None = None, num_gpus: int | None = None) -> ImportedTraining:
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FathomInputError(f"torchtitan config: not valid TOML: {exc}") from None
    warnings: list[str] = []
    _legacy_keys(config, warnings)
    par, train = _table(config, "parallelism"), _table(config, "training")
    model = _table(config, "model")
    tp, pp = _degree(par, "tensor_parallel_degree"), _degree(par, "pipeline_parallel_degree")
    cp = _degree(par, "context_parallel_degree")
    replicate = _degree(par, "data_parallel_replicate_degree")
    shard = _get(par, "data_parallel_shard_degree", -1, int)
    if shard != -1 and shard < 1:
        raise FathomInputError(f"torchtitan config: data_parallel_shard_degree must be -1 or positive, got {shard}")
    others = tp * pp * cp * replicate
    if shard == -1:  # torchtitan fills the shard degree from the world size, which it needs to divide
        if not num_gpus:
            raise FathomInputError("torchtitan config: data_parallel_shard_degree = -1 needs --num-gpus")
        if num_gpus % others:
            raise FathomInputError(
                f"torchtitan config: --num-gpus {num_gpus} is not a multiple of tensor x pipeline x context x "
                f"replicate degrees = {others}"
            )
        shard = num_gpus // others
    elif num_gpus and num_gpus != others * shard:  # torchtitan asserts the degrees multiply to the world size
        warnings.append(f"dp: the parallel degrees multiply to {others * shard} GPUs, not --num-gpus {num_gpus}")
    if replicate > 1 and shard > 1:
        warnings.append("zero: HSDP (replicate x shard) read as full sharding over both")
    reshard = _get(par, "fsdp_reshard_after_forward", "default", str)
    zero = 0 if shard == 1 else 2 if reshard == "never" else 3
    schedule_name = _get(par, "pipeline_parallel_schedule", "1F1B", str)
    if schedule_name not in _FROM_SCHEDULE:
        raise FathomInputError(
            f"torchtitan config: pipeline_parallel_schedule {schedule_name!r}: fathom knows {', '.join(_FROM_SCHEDULE)}"
        )
    schedule = _FROM_SCHEDULE[schedule_name]
    vpp, balanced = _read_split(par, spec, pp, schedule, warnings)
    if schedule == "zero-bubble" and schedule_name != "InterleavedZeroBubble":
        warnings.append(f"schedule: {schedule_name} read as fathom's zero-bubble (ZB-H1)")
    dp = replicate * shard
    local = _degree(train, "local_batch_size", 8)
    micro = _degree(par, "pipeline_parallel_microbatch_size") if pp > 1 else local
    global_batch = _get(train, "global_batch_size", -1, int)
    if global_batch == -1:  # torchtitan's default: the local batch on every data-parallel rank
        global_batch = local * dp
    mode = _get(_table(config, "activation_checkpoint"), "mode", "selective", str)
    if mode not in ("none", "selective", "full"):
        warnings.append(f"recompute: torchtitan's {mode} activation checkpointing read as selective")
        mode = "selective"
    converters = model.get("converters", [])
    if not isinstance(converters, list):
        raise FathomInputError(f"torchtitan config: [model] converters must be a list, got {converters!r}")
    fp8 = any("float8" in str(c) for c in converters)
    mixed = _get(train, "mixed_precision_param", "bfloat16", str)
    compiled = _get(_table(config, "compile"), "enable", False, bool)
    compiled = compiled and "model" in _get(_table(config, "compile"), "components", ["model", "loss"], list)
    plan = build_training_plan(
        "torchtitan config",
        _KEYS,
        seq_len=_get(train, "seq_len", 2048, int),
        global_batch=global_batch,
        micro_batch=micro,
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=_degree(par, "expert_parallel_degree"),
        vpp=vpp,
        sequence_parallel=True,
        zero=zero,
        schedule=schedule,
        recompute=mode,
        precision="fp8" if fp8 else "fp32" if mixed == "float32" else "bf16",
        offload="cpu" if _get(train, "enable_cpu_offload", False, bool) else "none",
        moe_dispatcher="deepep" if par.get("expert_parallel_comm_backend") == "deepep" else "alltoall",
        balance_pipeline_ends=balanced,
        overlap_tp_comm=compiled and _get(par, "enable_async_tensor_parallel", False, bool),
        # DTensor TP leaves the backward collectives exposed; FSDP2 without resharding gathers per block and
        # micro-batch; torchao's Float8Linear keeps 16-bit inputs for backward (TrainingPlan's comments).
        async_tp_allreduce=False,
        zero2_comm="per-unit" if zero == 2 else "per-step",
        fp8_saved_inputs=not fp8,
    )
    return ImportedTraining(plan=plan, model=_model_name(text, model), warnings=warnings)


def _read_split(par: dict, spec: ModelSpec | None, pp: int, schedule: str, warnings: list[str]) -> tuple[int, bool]:
    """(stages a rank, balanced ends) of the pipeline keys, warning when torchtitan's split puts more layers on a
    rank than fathom prices (ceil(num_layers / pp))."""
    first_less = _get(par, "pipeline_parallel_first_stage_less_layers", 1, int)
    last_less = _get(par, "pipeline_parallel_last_stage_less_layers", 1, int)
    per_stage = par.get("pipeline_parallel_layers_per_stage")
    if per_stage is not None:
        per_stage = _degree(par, "pipeline_parallel_layers_per_stage")
    fqns = par.get("module_fqns_per_model_part")
    if fqns is not None and not (isinstance(fqns, list) and all(isinstance(m, list) for m in fqns) and fqns):
        raise FathomInputError("torchtitan config: module_fqns_per_model_part must be a list of lists of names")
    if fqns:
        if len(fqns) % pp:
            raise FathomInputError(f"torchtitan config: {len(fqns)} module_fqns_per_model_part stages for pp={pp}")
        vpp = len(fqns) // pp
        chunks = [sum(str(m).startswith("layers.") for m in stage) for stage in fqns]
    elif schedule == "interleaved":
        if per_stage is None or spec is None:
            raise FathomInputError(
                "torchtitan config: an interleaved schedule needs pipeline_parallel_layers_per_stage "
                "and the model (--model)"
            )
        vpp = max(1, -(-(spec.num_layers + first_less + last_less) // per_stage) // pp)
        chunks = torchtitan_stage_layers(spec.num_layers, pp * vpp, first_less, last_less)
    else:
        vpp = 1
        chunks = torchtitan_stage_layers(spec.num_layers, pp, first_less, last_less) if spec else None
    if spec is None or pp == 1:
        return vpp, False
    balanced = vpp == 1 and first_less == last_less == 1 and (spec.num_layers + 2) % pp == 0 and not fqns
    cap = priced_rank_layers(spec.num_layers, pp)
    if chunks is None:
        warnings.append(f"pp: torchtitan cannot cut {spec.num_layers} layers into {pp * vpp} stages as configured")
    elif not balanced and max(rank_layers(chunks, pp)) > cap:
        fullest = max(rank_layers(chunks, pp))
        warnings.append(f"pp: the config puts {fullest} layers on a pipeline rank; fathom prices {cap}")
    return vpp, balanced


ENGINE = TrainingEngine(name="torchtitan", title="torchtitan", doc_url=DOC_URL, write=write, read=read)
