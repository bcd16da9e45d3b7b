"""``fathom validate training``: predict every published run and compare, metric by metric.

A row is predicted only when its configuration is complete (the data file says which and why not);
incomplete rows are listed with the reason, never silently dropped. The error is
``(predicted - measured) / measured`` in the row's own metric. Throughput metrics (TFLOP/s, tokens/s, MFU)
are computed from the predicted step time with the FLOP convention the source uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model, list_models
from fathom.costmodel.flops import model_flops_per_token, recompute_flops_per_token
from fathom.errors import FathomInputError
from fathom.specs.model import ModelSpec
from fathom.specs.plan import RECOMPUTES, TrainingPlan
from fathom.training.estimator import estimate_training
from fathom.training.result import TrainingEstimate
from fathom.validation.runs import RunRow, load_runs
from fathom.validation.summary import error_summary

STEP_METRICS = ("step_time_s", "tflops_per_gpu", "tokens_per_s_per_gpu", "mfu_pct", "hfu_pct")
MEMORY_METRICS = ("activation_memory_gib", "peak_memory_gib", "state_memory_gib")


@dataclass(frozen=True)
class ValidationResult:
    row_id: str
    source: str
    model: str
    gpu: str
    num_gpus: int
    metric: str
    measured: float
    predicted: float | None
    error_pct: float | None
    skipped: str | None = None


def row_model(row: RunRow) -> ModelSpec:
    """The preset named by the row, with the row's published shape taking precedence."""
    shape = {
        "num_layers": row.int("num_layers"),
        "hidden_size": row.int("hidden_size"),
        "num_heads": row.int("num_heads"),
        "num_kv_heads": row.int("num_kv_heads") or row.int("num_heads"),
        "ffn_size": row.int("ffn_size"),
        "vocab_size": row.int("vocab_size"),
    }
    shape = {k: v for k, v in shape.items() if v}
    name = row["model"]
    if name and name != "-" and name in list_models():
        base = get_model(name)
        if base.is_moe:
            return base
        update = dict(shape, hidden_dropout=row.flag("dropout"))
        if "hidden_size" in update and "num_heads" in update:
            update["head_dim"] = update["hidden_size"] // update["num_heads"]
        return base.model_copy(update=update)
    h, heads = shape["hidden_size"], shape["num_heads"]
    gated = row.flag("gated_mlp")
    return ModelSpec(
        name=row["id"],
        family="gpt" if not gated else "llama",
        head_dim=h // heads,
        ffn_size=shape.get("ffn_size", 4 * h),
        gated_mlp=gated,
        tied_embeddings=not gated,
        norm_type="layernorm" if not gated else "rmsnorm",
        position_embedding="learned" if not gated else "rope",
        qkv_bias=not gated,
        attn_out_bias=not gated,
        mlp_bias=not gated,
        max_seq_len=row.int("seq_len") or 2048,
        hidden_dropout=row.flag("dropout"),
        embedding_norm=row.flag("embedding_norm"),  # BLOOM's --embed-layernorm
        **{k: v for k, v in shape.items() if k != "ffn_size"},
    )


def row_plan(row: RunRow) -> TrainingPlan:
    vpp = row.int("vpp") or 1
    schedule = row["schedule"] or ("interleaved" if vpp > 1 else "1f1b")
    return TrainingPlan(
        seq_len=row.int("seq_len"),
        global_batch=row.int("global_batch"),
        micro_batch=row.int("micro_batch") or 1,
        tp=row.int("tp") or 1,
        pp=row.int("pp") or 1,
        dp=row.int("dp") or 1,
        cp=row.int("cp") or 1,
        ep=row.int("ep") or 1,
        vpp=vpp,
        sequence_parallel=row.flag("sequence_parallel"),
        zero=row.int("zero") if row.int("zero") is not None else 1,
        schedule=schedule,
        recompute=row["recompute"] or "none",
        precision=row["precision"] or "bf16",
        attention=row["attention_kernel"] or "flash2",
        moe_dispatcher=row["moe_dispatcher"] or "alltoall",
        overlap_moe_comm=row.flag("overlap_moe_comm"),
        moe_routing=row["moe_routing"] or "balanced",
        moe_router_fusion=row.flag("moe_router_fusion"),
        cuda_graphs=row["cuda_graphs"] or "none",
        async_tp_allreduce=row.flag("async_tp_allreduce", default=True),
        zero3_gather=row["zero3_gather"] or "prefetch",
        zero2_comm=row["zero2_comm"] or "per-step",
        pipeline_engine=row["pipeline_engine"] or "megatron",
        overlap_grad_reduce=row.flag("overlap_grad_reduce", default=True),
        overlap_tp_comm=row.flag("overlap_tp_comm"),
        overlap_param_gather=row.flag("overlap_param_gather"),
        activation_offload_layers=row.int("activation_offload_layers") or 0,
        fp8_saved_inputs=row.flag("fp8_saved_inputs", default=True),
        balance_pipeline_ends=row.flag("balance_pipeline_ends"),
    )


def predicted_metric(metric: str, est: TrainingEstimate, row: RunRow, model: ModelSpec, plan: TrainingPlan) -> float:
    hardware_flops = row["flops"] == "hardware"
    if metric == "step_time_s":
        return est.step_time_s
    if metric == "tokens_per_s_per_gpu":
        return est.tokens_per_s_per_gpu
    if metric == "tflops_per_gpu":
        # The source's own FLOP count per token, applied to the predicted throughput.
        causal = row["flops"] == "model_causal"
        per_token = model_flops_per_token(model, plan.seq_len, causal)
        if hardware_flops:
            per_token = per_token + recompute_flops_per_token(
                model, plan.seq_len, RECOMPUTES.index(plan.recompute), causal
            )
        return float(est.tokens_per_s_per_gpu * per_token / 1e12)
    if metric == "mfu_pct":
        return 100 * est.mfu
    if metric == "hfu_pct":
        return 100 * est.hfu
    if metric == "activation_memory_gib":
        return est.memory.breakdown["activations"]
    if metric == "state_memory_gib":
        b = est.memory.breakdown
        return b["weights"] + b["gradients"] + b["optimizer"]
    if metric == "peak_memory_gib":
        return est.memory.peak_gib
    raise FathomInputError(f"validation data: unknown metric {metric!r}")


def validate_row(row: RunRow) -> ValidationResult:
    base = dict(
        row_id=row["id"],
        source=row["source"],
        model=row["model"],
        gpu=row["gpu"],
        num_gpus=row.int("num_gpus") or 0,
        metric=row["metric"],
        measured=row.value,
    )
    if not row.complete:
        return ValidationResult(**base, predicted=None, error_pct=None, skipped=row["note"] or "incomplete")
    try:
        cluster = resolve_cluster(row["gpu"], row.int("num_gpus"), system=row["system"] or None)
        model, plan = row_model(row), row_plan(row)
        est = estimate_training(model, cluster, plan)
    except (FathomInputError, ValueError, TypeError) as exc:
        return ValidationResult(**base, predicted=None, error_pct=None, skipped=f"cannot model: {exc}")
    pred = predicted_metric(row["metric"], est, row, model, plan)
    return ValidationResult(**base, predicted=pred, error_pct=100.0 * (pred - row.value) / row.value)


def validate_training(which: str = "published") -> list[ValidationResult]:
    return [validate_row(r) for r in load_runs(which)]


def summarize(results: list[ValidationResult]) -> dict[str, dict[str, float]]:
    """Mean and max absolute % error and row count, per source, for time and memory metrics."""
    return error_summary(("memory" if r.metric in MEMORY_METRICS else "time", r.source, r.error_pct) for r in results)
