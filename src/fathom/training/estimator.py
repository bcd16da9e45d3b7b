"""The training estimator: memory per GPU and step time for one plan or an array of plans.

``estimate_arrays`` is the vectorised core used by search and benchmarks; ``estimate_training`` wraps it
for a single plan and returns the JSON-ready result the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from fathom.costmodel.flops import finetune_flops_per_token, recompute_flops_per_token
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TRAIN_PRECISIONS, TrainingPlan
from fathom.training.communication import data_parallel_comm, layer_comm
from fathom.training.compute import LayerCompute, layer_compute
from fathom.training.finetune import parameter_bytes
from fathom.training.finetune_time import finetune_compute, page_optimizer
from fathom.training.memory import MemoryBreakdown, training_memory
from fathom.training.plans import PlanArrays, check_plan
from fathom.training.result import TrainingEstimate, build_result
from fathom.training.shapes import plan_shapes
from fathom.training.step_time import TimeBreakdown, step_time


@dataclass(frozen=True)
class TrainingArrays:
    """Everything estimated, one entry per plan."""

    memory: MemoryBreakdown
    time: TimeBreakdown
    step_time_s: np.ndarray
    tokens_per_s: np.ndarray
    model_flops_per_step: np.ndarray
    hardware_flops_per_step: np.ndarray
    tflops_per_gpu: np.ndarray
    mfu: np.ndarray
    hfu: np.ndarray
    peak_memory_bytes: np.ndarray
    fits: np.ndarray


def _reference_peak(cluster: Cluster, precision_codes: np.ndarray) -> np.ndarray:
    """The peak MFU is measured against: the 16-bit dense peak (fp32 for fp32 training), as the field does."""
    dev = cluster.device
    half = dev.peak_flops_per_s("bf16") if "bf16" in dev.peak_tflops else dev.peak_flops_per_s("fp16")
    fp32 = dev.peak_flops_per_s("fp32") if "fp32" in dev.peak_tflops else half
    return np.where(precision_codes == TRAIN_PRECISIONS.index("fp32"), fp32, half)


def _row_codes(columns: list[np.ndarray]) -> np.ndarray:
    """One int64 per plan that is equal exactly when every column is: mixed-radix codes of the columns' ranks.

    ``np.unique(axis=...)`` on the stacked columns sorts opaque row records, which took most of a 100,000-plan
    estimate; ranking each column and sorting one integer per plan is several times faster.
    """
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    radix = 1
    for column in columns:
        values, ranks = np.unique(column, return_inverse=True)
        if radix * len(values) >= 2**62:  # re-rank the codes so far before the product could overflow
            _, codes = np.unique(codes, return_inverse=True)
            codes, radix = codes.reshape(-1).astype(np.int64), int(codes.max()) + 1
        codes = codes * len(values) + ranks.reshape(-1)
        radix *= len(values)
    return codes


def _layer_compute_once(model: ModelSpec, device, plans: PlanArrays, shapes) -> LayerCompute:
    """``layer_compute`` priced once per distinct layer shape, then spread back over the plans.

    A layer's kernels depend only on precision, TP, EP, CP, the attention kernel, the micro-batch's tokens and the
    host-side levers (MoE dispatcher, router fusion, CUDA graphs),
    which a search repeats across thousands of plans that differ in PP, DP, ZeRO, schedule or offload.
    """
    keys = [plans.precision, plans.tp, plans.ep, plans.cp, plans.attention, plans.micro_batch,
            plans.seq_len, shapes.tokens_sp, plans.moe_dispatcher, plans.moe_router_fusion,
            plans.cuda_graphs]  # fmt: skip
    unique, first, inverse = np.unique(_row_codes(keys), return_index=True, return_inverse=True)
    if len(unique) == len(plans):
        return layer_compute(model, device, plans, shapes)
    inverse = inverse.reshape(-1)
    sub_shapes = replace(shapes, **{f.name: getattr(shapes, f.name)[first] for f in fields(shapes)
                                    if isinstance(getattr(shapes, f.name), np.ndarray)})  # fmt: skip
    sub = layer_compute(model, device, plans.take(first), sub_shapes)
    return LayerCompute(**{f.name: np.broadcast_to(getattr(sub, f.name), first.shape)[inverse] for f in fields(sub)})


def estimate_arrays(
    model: ModelSpec, cluster: Cluster, plans: PlanArrays, memory_headroom: float = 0.0
) -> TrainingArrays:
    """Price every plan at once. ``memory_headroom`` is the fraction of device memory kept free."""
    shapes = plan_shapes(model, cluster, plans)
    pb = parameter_bytes(model, plans, shapes)
    compute = _layer_compute_once(model, cluster.device, plans, shapes)
    compute = finetune_compute(model, cluster.device, plans, shapes, compute)
    comm = layer_comm(model, cluster.system, plans, shapes, compute.attn_fwd, compute.attn_bwd)
    # Gradients and updated parameters of the trainable part cross the DP group (ZeRO-3 gathers them all).
    dp_params = np.where(plans.zero >= 3, shapes.stage_params_local, pb.trainable)
    dp = data_parallel_comm(
        cluster.system, plans, replace(shapes, stage_params_local=dp_params), model.param_tensors_per_layer
    )
    times = step_time(model, cluster, plans, shapes, compute, comm, dp, pb)
    mem = training_memory(model, cluster, plans, shapes, pb)
    on_gpu, paging_s = page_optimizer(mem.optimizer, mem.total, cluster, plans)
    mem, times = replace(mem, optimizer=on_gpu), replace(times, optimizer=times.optimizer + paging_s)
    step = times.total
    tokens = plans.global_batch.astype(float) * plans.seq_len
    trainable = np.clip((model.num_layers - plans.frozen_layers) / model.num_layers, 0.0, 1.0)
    lora = plans.finetune > 0
    model_flops = tokens * finetune_flops_per_token(model, plans.seq_len, trainable, ~lora, ~lora)
    recomputed = trainable * recompute_flops_per_token(model, plans.seq_len, plans.recompute)  # backward layers only
    hw_flops = model_flops + tokens * recomputed
    gpus = float(cluster.num_gpus)
    peak = _reference_peak(cluster, plans.precision)
    peak_mem = mem.total
    return TrainingArrays(
        memory=mem,
        time=times,
        step_time_s=step,
        tokens_per_s=tokens / step,
        model_flops_per_step=model_flops,
        hardware_flops_per_step=hw_flops,
        tflops_per_gpu=model_flops / (step * gpus) / 1e12,
        mfu=model_flops / (step * gpus * peak),
        hfu=hw_flops / (step * gpus * peak),
        peak_memory_bytes=peak_mem,
        fits=peak_mem <= cluster.device.memory_bytes * (1.0 - memory_headroom),
    )


def estimate_training(
    model: ModelSpec,
    cluster: Cluster,
    plan: TrainingPlan,
    *,
    tokens: float | None = None,
    price_per_gpu_hour: float | None = None,
) -> TrainingEstimate:
    """Estimate one plan; raises FathomInputError when the plan cannot run on this model and cluster."""
    check_plan(model, cluster, plan)
    arrays = estimate_arrays(model, cluster, PlanArrays.from_plans([plan]))
    row = {f.name: getattr(arrays, f.name) for f in fields(arrays)}
    return build_result(model, cluster, plan, row, tokens=tokens, price_per_gpu_hour=price_per_gpu_hour)


__all__ = ["TrainingArrays", "estimate_arrays", "estimate_training", "GIB"]
