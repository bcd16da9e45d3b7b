"""DeepSpeed: a ``ds_config.json``.

Keys as documented in https://www.deepspeed.ai/docs/config-json/ (batch sizes, ``zero_optimization``, offload,
``bf16``/``fp16``, ``optimizer``, ``activation_checkpointing``) and DeepSpeed's AutoTP training
(``tensor_parallel.autotp_size``) and Ulysses (``sequence_parallel_size``) keys. DeepSpeed checks
train_batch_size = train_micro_batch_size_per_gpu * gradient_accumulation_steps * data-parallel world size, so the
data-parallel degree reads back from the three batch numbers. Pipeline stages, expert parallelism and
activation-recompute granularity live in the model code (PipelineModule, MoE layers, deepspeed.checkpointing),
not in this file.
"""

from __future__ import annotations

import json

from fathom.errors import FathomInputError
from fathom.export.base import ImportedTraining, build_training_plan
from fathom.export.pipeline_split import priced_rank_layers
from fathom.export.registry import TrainingEngine
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan

DOC_URL = "https://www.deepspeed.ai/docs/config-json/"
# AdamW and Adam are DeepSpeed's own (FusedAdam); other names resolve to torch.optim.<name>.
_OPTIMIZERS = {"adamw": "AdamW", "sgd": "SGD", "adafactor": "Adafactor"}
_OPTIMIZER_PARAMS = {
    "AdamW": {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1},
    "SGD": {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.0},
    "Adafactor": {"lr": 1e-2, "weight_decay": 0.0},
}


def _notes(p: TrainingPlan, spec: ModelSpec) -> dict[str, str]:
    notes = {
        "seq_len": "ds_config carries no sequence length (the data loader's); give it to `fathom import --seq-len`"
    }
    if p.pp > 1:
        layers = priced_rank_layers(spec.num_layers, p.pp)
        notes["pp"] = (
            "DeepSpeed pipeline stages are set in code (PipelineModule(num_stages=...)), not in ds_config; "
            f"fathom priced at most {layers} of the {spec.num_layers} layers a stage"
        )
        for name, reason in (
            ("balance_pipeline_ends", "PipelineModule's partition_method places the embedding and head, in code"),
            ("overlap_p2p_comm", "DeepSpeed's PipelineEngine sends and receives between its compute steps"),
        ):
            if getattr(p, name):
                notes[name] = reason
    if p.vpp > 1 or p.schedule != "1f1b":
        notes["schedule"] = "DeepSpeed's pipeline engine runs its own 1F1B-style TrainSchedule only"
    if p.ep > 1:
        notes["ep"] = "DeepSpeed-MoE takes ep_size in the model code (deepspeed.moe.layer.MoE), not in ds_config"
    if p.cp > 1:
        notes["cp"] = "written as DeepSpeed-Ulysses sequence_parallel_size (all-to-all over heads, set up in code)"
    if p.tp > 1 and p.sequence_parallel:
        notes["sequence_parallel"] = "DeepSpeed AutoTP has no Megatron-style sequence parallelism"
    if p.recompute == "selective":
        notes["recompute"] = "DeepSpeed checkpoints whole layers the model code wraps; selective recompute not written"
    if p.precision == "fp8":
        notes["precision"] = "ds_config has no FP8 switch (Transformer Engine layers in code); wrote bf16"
    if p.optimizer == "adam-8bit":
        notes["optimizer"] = "8-bit Adam (bitsandbytes) is passed to deepspeed.initialize in code; wrote AdamW"
    if p.offload == "nvme" and p.zero < 3:
        notes["zero"] = "DeepSpeed offloads optimizer states to NVMe (ZeRO-Infinity) under ZeRO stage 3 only"
    if p.attention != "flash2":
        notes["attention"] = "the attention kernel is the model code's choice; ds_config does not set it"
    if p.overlap_moe_comm:
        notes["overlap_moe_comm"] = "not a ds_config setting"
    if p.moe_dispatcher != "alltoall":
        notes["moe_dispatcher"] = "DeepSpeed-MoE dispatches with one all-to-all"
    notes.update(_code_notes(p))
    return notes


def _code_notes(p: TrainingPlan) -> dict[str, str]:
    """Plan levers that live in the training script or in DeepSpeed's own code, not in ds_config."""
    notes = {}
    if p.finetune != "none":
        notes["finetune"] = f"{p.finetune} adapters are built in code (e.g. PEFT) before deepspeed.initialize"
    if p.frozen_layers:
        notes["frozen_layers"] = "frozen layers are set in code (requires_grad=False), not in ds_config"
    if p.activation_offload_layers:
        notes["activation_offload_layers"] = "ds_config offloads only checkpointed activations (cpu_checkpointing)"
    if p.cuda_graphs != "none":
        notes["cuda_graphs"] = "ds_config has no CUDA graph capture for training"
    if p.moe_routing == "dropless":
        notes["moe_routing"] = "DeepSpeed-MoE's token dropping is set in code (MoE(drop_tokens=False))"
    if p.moe_router_fusion:
        notes["moe_router_fusion"] = "DeepSpeed-MoE has no fused router"
    if p.zero == 3 and p.zero3_gather != "prefetch":
        notes["zero3_gather"] = "DeepSpeed ZeRO-3 has prefetched its gathers since 2021; ds_config cannot undo it"
    if p.zero == 2 and p.zero2_comm != "per-step":
        notes["zero2_comm"] = "DeepSpeed ZeRO-2 reduce-scatters gradients once per step"
    if p.tp > 1:
        if p.overlap_tp_comm:
            notes["overlap_tp_comm"] = "DeepSpeed AutoTP does not overlap its collectives with the GEMMs"
        if p.async_tp_allreduce:
            notes["async_tp_allreduce"] = "DeepSpeed AutoTP's backward all-reduce is not overlapped with the GEMMs"
    if p.overlap_param_gather and p.zero >= 1:
        notes["overlap_param_gather"] = "not a ds_config setting (ZeRO-3 prefetch is zero3_gather)"
    if not p.master_weights and p.precision != "fp32":
        notes["master_weights"] = "DeepSpeed keeps fp32 master weights beside bf16/fp16 parameters"
    if not p.fp8_saved_inputs and p.precision == "fp8":
        notes["fp8_saved_inputs"] = "FP8 layers are the model code's (Transformer Engine or torchao)"
    return notes


def write(plan: TrainingPlan, spec: ModelSpec, *, model_name: str, gpus_per_node: int = 8) -> tuple[str, dict]:
    p = plan
    config: dict = {
        "train_batch_size": p.global_batch,
        "train_micro_batch_size_per_gpu": p.micro_batch,
        "gradient_accumulation_steps": p.grad_accum_steps,
        "gradient_clipping": 1.0,
        "steps_per_print": 10,
    }
    if p.precision in ("bf16", "fp8"):
        config["bf16"] = {"enabled": True}
    elif p.precision == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    optimizer = _OPTIMIZERS.get(p.optimizer, "AdamW")
    config["optimizer"] = {"type": optimizer, "params": _OPTIMIZER_PARAMS[optimizer]}
    zero: dict = {"stage": p.zero, "overlap_comm": p.overlap_grad_reduce, "contiguous_gradients": True}
    if p.offload == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    elif p.offload == "nvme":
        zero["offload_optimizer"] = {"device": "nvme", "nvme_path": "/local_nvme", "pin_memory": True}
    config["zero_optimization"] = zero
    if p.tp > 1:
        config["tensor_parallel"] = {"autotp_size": p.tp}
    if p.cp > 1:
        config["sequence_parallel_size"] = p.cp
    if p.recompute == "full":
        config["activation_checkpointing"] = {
            "partition_activations": False,
            "contiguous_memory_optimization": False,
            "cpu_checkpointing": False,
            "synchronize_checkpoint_boundary": False,
            "profile": False,
        }
    return json.dumps(config, indent=2) + "\n", _notes(plan, spec)


def _int(config: dict, key: str, default: int | None = None, where: str = "") -> int | None:
    value = config.get(key, default)
    if value is None or value == "auto":  # "auto": filled in by the HF Trainer from its own arguments
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FathomInputError(f"ds_config: {where}{key} must be a positive integer, got {value!r}")
    return value


def _section(config: dict, key: str, where: str = "", example: str = "") -> dict:
    """A sub-object of ds_config ({} when absent); anything else is a one-line input error."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        shape = f" like {example}" if example else ""
        raise FathomInputError(f"ds_config: {where}{key} must be a JSON object{shape}, got {value!r}")
    return value


def _enabled(config: dict, key: str) -> bool | str:
    """``bf16`` / ``fp16``: {"enabled": true|false|"auto"}; a bare true/false is taken as the enabled flag."""
    value = config.get(key)
    if isinstance(value, bool):
        return value
    enabled = _section(config, key, example='{"enabled": true}').get("enabled", False)
    if enabled != "auto" and not isinstance(enabled, bool):
        raise FathomInputError(f'ds_config: {key}.enabled must be true, false or "auto", got {enabled!r}')
    return enabled


def _precision(config: dict, warnings: list[str]) -> str:
    bf16, fp16 = _enabled(config, "bf16"), _enabled(config, "fp16")
    if "auto" in (bf16, fp16):  # the HF Trainer's DeepSpeed integration sets "auto" from its --bf16 / --fp16
        picked = "bf16" if bf16 else "fp16"
        warnings.append(f'precision: "auto" follows the Hugging Face Trainer\'s --bf16/--fp16 flags; read as {picked}')
        return picked
    if bf16 and fp16:  # DeepSpeed refuses both
        raise FathomInputError("ds_config: bf16 and fp16 are both enabled; DeepSpeed takes one")
    return "fp16" if fp16 else "bf16" if bf16 else "fp32"


def _zero(config: dict, warnings: list[str]) -> tuple[int, str, dict]:
    """(stage, optimizer offload device, the zero_optimization object), warning about what fathom does not model."""
    zero = _section(config, "zero_optimization", example='{"stage": 3}')
    stage = zero.get("stage", 0)
    if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        raise FathomInputError(f"ds_config: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    where = "zero_optimization."
    device = _section(zero, "offload_optimizer", where, '{"device": "cpu"}').get("device", "none")
    if device not in ("none", "cpu", "nvme"):
        raise FathomInputError(f"ds_config: {where}offload_optimizer.device must be cpu|nvme|none, got {device!r}")
    if _section(zero, "offload_param", where, '{"device": "cpu"}').get("device", "none") != "none":
        warnings.append("offload: parameter offload (offload_param) is not modelled; optimizer offload only")
    # ZeRO++ (Wang et al. 2023): qwZ all-gathers int8 weights, hpZ keeps a second weight shard inside a node,
    # qgZ reduce-scatters int4 gradients; fathom prices the plain ZeRO-3 collectives.
    for key, what in (
        ("zero_quantized_weights", "ZeRO++ quantized weight gathers (qwZ)"),
        ("zero_hpz_partition_size", "ZeRO++ hierarchical weight partitions (hpZ)"),
        ("zero_quantized_gradients", "ZeRO++ quantized gradients (qgZ)"),
    ):
        value = zero.get(key)
        if value not in (None, False, 1) if key == "zero_hpz_partition_size" else value:
            warnings.append(f"zero: {where}{key} ({what}) is not modelled; priced plain ZeRO-{stage} traffic")
    if tuned := sorted(k for k in zero if k.startswith("stage3_")):
        warnings.append(
            f"zero: {', '.join(where + k for k in tuned)} not modelled (fathom prices ZeRO-3 with prefetched gathers "
            "and no persistent parameters)"
        )
    return stage, device, zero


def _other_warnings(config: dict, warnings: list[str]) -> bool:
    """Warnings for ds_config sections fathom reads as nothing; True when activation checkpointing is on."""
    pipeline = _section(config, "pipeline", example='{"stages": 4}')
    if pipeline.get("stages", "auto") != "auto":  # PipelineModule(num_stages=...) in code decides the stages
        warnings.append(
            f"pp: pipeline.stages {pipeline['stages']!r} not read; DeepSpeed pipelines are built in code "
            "(PipelineModule), so fathom priced pp=1"
        )
    if "activation_checkpointing" not in config:
        return False
    ckpt = _section(config, "activation_checkpointing", example='{"partition_activations": false}')
    # partition_activations splits each checkpoint across model-parallel ranks; cpu_checkpointing moves it to host
    for key in ("partition_activations", "cpu_checkpointing"):
        if ckpt.get(key):
            warnings.append(f"recompute: activation_checkpointing.{key} is not modelled; priced full recompute only")
    return True


_KEYS = {
    "global_batch": "train_batch_size",
    "micro_batch": "train_micro_batch_size_per_gpu",
    "tp": "tensor_parallel.autotp_size",
    "cp": "sequence_parallel_size",
    "dp": "data-parallel size (train_batch_size / micro-batch / accumulation)",
    "seq_len": "--seq-len",
}


def read(text: str, *, spec: ModelSpec | None = None, num_gpus: int | None = None) -> ImportedTraining:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FathomInputError(f"ds_config: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise FathomInputError("ds_config: expected a JSON object")
    tp_section = _section(config, "tensor_parallel", example='{"autotp_size": 4}')
    tp = _int(tp_section, "autotp_size", 1, "tensor_parallel.")
    cp = _int(config, "sequence_parallel_size", 1)
    micro = _int(config, "train_micro_batch_size_per_gpu", 1)
    accum = _int(config, "gradient_accumulation_steps", 1)
    batch = _int(config, "train_batch_size")
    warnings: list[str] = []
    auto = [k for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps") if config.get(k) == "auto"]
    if auto:
        warnings.append(f'batch: {", ".join(auto)} "auto" (set by the HF Trainer) read as 1')
    if batch is None:
        if not num_gpus:
            raise FathomInputError("ds_config: no train_batch_size; give --num-gpus to derive it")
        batch = micro * accum * (num_gpus // (tp * cp))
    if batch % (micro * accum):
        raise FathomInputError(
            f"ds_config: train_batch_size {batch} is not a multiple of micro-batch*accumulation {micro * accum}"
        )
    dp = batch // (micro * accum)
    if num_gpus and num_gpus != dp * tp * cp:
        warnings.append(f"dp: the batch sizes give dp={dp}, so {dp * tp * cp} GPUs, not {num_gpus}")
    stage, device, zero = _zero(config, warnings)
    precision = _precision(config, warnings)
    opt = _section(config, "optimizer", example='{"type": "AdamW", "params": {...}}')
    name = str(opt.get("type", "AdamW")).lower()
    optimizer = {"adamw": "adamw", "adam": "adamw", "sgd": "sgd", "adafactor": "adafactor"}.get(name)
    if optimizer is None:
        warnings.append(f"optimizer: DeepSpeed's {name} read as adamw")
        optimizer = "adamw"
    recompute = _other_warnings(config, warnings)
    plan = build_training_plan(
        "ds_config",
        _KEYS,
        seq_len=spec.max_seq_len if spec else 4096,
        global_batch=batch,
        micro_batch=micro,
        tp=tp,
        cp=cp,
        dp=dp,
        sequence_parallel=False,
        zero=stage,
        recompute="full" if recompute else "none",
        precision=precision,
        optimizer=optimizer,
        offload=device,
        overlap_grad_reduce=bool(zero.get("overlap_comm", stage == 3)),
        async_tp_allreduce=False,  # AutoTP's all-reduces wait for the GEMMs (TrainingPlan.async_tp_allreduce)
    )
    warnings.append("seq_len: ds_config has no sequence length; give --seq-len (default: the model's context)")
    return ImportedTraining(plan=plan, warnings=warnings)


ENGINE = TrainingEngine(name="deepspeed", title="DeepSpeed", doc_url=DOC_URL, write=write, read=read)
