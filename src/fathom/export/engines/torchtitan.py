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
from fathom.export.base import ImportedTraining
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


def _stage_layout(num_layers: int, stages: int) -> dict[str, int]:
    """Layers per stage, with the first and last stages lighter so that exactly ``stages`` stages come out:
    torchtitan cuts num_layers + first_less + last_less layers into stages of layers_per_stage."""
    per_stage = -(-num_layers // stages)
    spare = stages * per_stage - num_layers
    return {
        "pipeline_parallel_layers_per_stage": per_stage,
        "pipeline_parallel_first_stage_less_layers": spare // 2,
        "pipeline_parallel_last_stage_less_layers": spare - spare // 2,
    }


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
    if p.vpp > 1:
        parallel.update(_stage_layout(spec.num_layers, p.pp * p.vpp))
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
    return "\n".join(lines) + "\n", _notes(plan, spec)


def _get(table: dict, key: str, default, kind):
    value = table.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise FathomInputError(f"torchtitan config: {key} must be {kind.__name__}, got {value!r}")
    return value


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
    par, train = config.get("parallelism", {}), config.get("training", {})
    model = config.get("model", {})
    warnings: list[str] = []
    tp, pp = _get(par, "tensor_parallel_degree", 1, int), _get(par, "pipeline_parallel_degree", 1, int)
    cp = _get(par, "context_parallel_degree", 1, int)
    replicate, shard = (
        _get(par, "data_parallel_replicate_degree", 1, int),
        _get(par, "data_parallel_shard_degree", -1, int),
    )
    if shard == -1:
        if not num_gpus:
            raise FathomInputError("torchtitan config: data_parallel_shard_degree = -1 needs --num-gpus")
        shard = num_gpus // (tp * pp * cp * replicate)
    if replicate > 1 and shard > 1:
        warnings.append("zero: HSDP (replicate x shard) read as full sharding over both")
    reshard = _get(par, "fsdp_reshard_after_forward", "default", str)
    zero = 0 if shard == 1 else 2 if reshard == "never" else 3
    schedule_name = _get(par, "pipeline_parallel_schedule", "1F1B", str)
    if schedule_name not in _FROM_SCHEDULE:
        raise FathomInputError(
            f"torchtitan config: pipeline_parallel_schedule {schedule_name!r}: fathom knows {', '.join(_FROM_SCHEDULE)}"
        )
    schedule, vpp = _FROM_SCHEDULE[schedule_name], 1
    if schedule == "interleaved":
        per_stage = par.get("pipeline_parallel_layers_per_stage")
        if per_stage is None or spec is None:
            raise FathomInputError(
                "torchtitan config: an interleaved schedule needs pipeline_parallel_layers_per_stage "
                "and the model (--model)"
            )
        effective = spec.num_layers + _get(par, "pipeline_parallel_first_stage_less_layers", 1, int)
        effective += _get(par, "pipeline_parallel_last_stage_less_layers", 1, int)
        vpp = max(1, -(-effective // per_stage) // pp)
    if schedule == "zero-bubble" and schedule_name != "InterleavedZeroBubble":
        warnings.append(f"schedule: {schedule_name} read as fathom's zero-bubble (ZB-H1)")
    dp = replicate * shard
    micro = (
        _get(par, "pipeline_parallel_microbatch_size", 1, int) if pp > 1 else _get(train, "local_batch_size", 8, int)
    )
    global_batch = _get(train, "global_batch_size", -1, int)
    if global_batch == -1:
        global_batch = _get(train, "local_batch_size", 8, int) * dp
    mode = config.get("activation_checkpoint", {}).get("mode", "selective")
    if mode not in ("none", "selective", "full"):
        warnings.append(f"recompute: torchtitan's {mode} activation checkpointing read as selective")
        mode = "selective"
    fp8 = any("float8" in c for c in model.get("converters", []))
    mixed = _get(train, "mixed_precision_param", "bfloat16", str)
    plan = TrainingPlan(
        seq_len=_get(train, "seq_len", 2048, int),
        global_batch=global_batch,
        micro_batch=micro,
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=_get(par, "expert_parallel_degree", 1, int),
        vpp=vpp,
        sequence_parallel=True,
        zero=zero,
        schedule=schedule,
        recompute=mode,
        precision="fp8" if fp8 else "fp32" if mixed == "float32" else "bf16",
        offload="cpu" if _get(train, "enable_cpu_offload", False, bool) else "none",
        moe_dispatcher="deepep" if par.get("expert_parallel_comm_backend") == "deepep" else "alltoall",
    )
    return ImportedTraining(plan=plan, model=_model_name(text, model), warnings=warnings)


ENGINE = TrainingEngine(name="torchtitan", title="torchtitan", doc_url=DOC_URL, write=write, read=read)
