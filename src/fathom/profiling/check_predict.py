"""The predicting side of ``fathom check``: fathom's own estimate for exactly the run the worker times.

Training: one optimizer step of ``micro_batch`` sequences per rank, ``dp`` ranks (plain all-reduce DDP, ZeRO 0),
no recomputation, fp32 (or pure bf16: weights, gradients and AdamW's moments in bf16, no fp32 master copy),
AdamW, fused attention. Forward, backward and optimizer are split from the estimator's
per-layer times (``fathom.training.compute``) the same way ``step_time`` assembles them, so they add up to its
``step_time_s``; the exposed DP all-reduce belongs to backward (DDP's ``backward()`` returns once it is done).
Serving: the inference step model's time of the prefill iteration and of each decode iteration.
"""

from __future__ import annotations

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.errors import FathomInputError
from fathom.inference.memory import activation_peak_bytes, kv_bytes_per_token_per_gpu, weight_bytes_per_gpu
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan
from fathom.specs.serving import ServingPlan
from fathom.training.communication import data_parallel_comm, layer_comm
from fathom.training.compute import layer_compute
from fathom.training.estimator import estimate_arrays
from fathom.training.plans import PlanArrays, check_plan
from fathom.training.shapes import plan_shapes


def check_supported(spec: ModelSpec) -> None:
    """Models the worker can build (``torch_model.Decoder``); checked before any worker starts."""
    if spec.moe is not None or spec.mla is not None:
        raise FathomInputError(f"--model: check builds dense decoders only; {spec.name} uses MoE or MLA")
    if spec.position_embedding == "alibi" or spec.sliding_window:
        raise FathomInputError(
            f"--model: check supports rope, learned or no positions and full attention; {spec.name} uses "
            + ("ALiBi" if spec.position_embedding == "alibi" else "a sliding window")
        )


def train_plan(micro_batch: int, seq_len: int, dp: int, precision: str = "fp32") -> TrainingPlan:
    return TrainingPlan(
        seq_len=seq_len,
        global_batch=micro_batch * dp,
        micro_batch=micro_batch,
        dp=dp,
        zero=0,
        recompute="none",
        precision=precision,
        optimizer="adamw",
        attention="flash2",
        sequence_parallel=False,
        master_weights=precision == "fp32",  # bf16: the model, its gradients and AdamW's moments all in bf16
    )


def predict_train(spec: ModelSpec, gpu: str, micro_batch: int, seq_len: int, dp: int, precision: str = "fp32") -> dict:
    cluster = resolve_cluster(gpu, dp)
    plan = train_plan(micro_batch, seq_len, dp, precision)
    check_plan(spec, cluster, plan)
    arrays = PlanArrays.from_plans([plan])
    est = estimate_arrays(spec, cluster, arrays)
    shapes = plan_shapes(spec, cluster, arrays)
    c = layer_compute(spec, cluster.device, arrays, shapes)
    comm = layer_comm(spec, cluster.system, arrays, shapes, c.attn_fwd, c.attn_bwd)
    layers = shapes.layers_per_stage
    layer_fwd = c.fwd + comm.tp_fwd
    # As step_time: a device that runs its ops inline adds the host's per-op cost, a GPU hides it under the work.
    layer_fwd = layer_fwd + c.host_fwd if cluster.device.ops_run_inline else np.maximum(layer_fwd, c.host_fwd)
    forward = shapes.micro_batches * (layers * layer_fwd + c.head_fwd)
    optimizer = est.time.optimizer
    total = est.step_time_s
    mem = est.memory
    state = mem.weights + mem.gradients + mem.optimizer
    dp_raw = data_parallel_comm(cluster.system, arrays, shapes).per_step
    return {
        "phases": {
            "forward": float(forward[0]),
            "backward": float((total - forward - optimizer)[0]),
            "optimizer": float(optimizer[0]),
        },
        "total": float(total[0]),
        "runtime_measured": cluster.device.runtime_reserved_gib is not None,
        "dp_comm_exposed": float(est.time.dp_comm[0]),
        "dp_comm_total": float(dp_raw[0]),
        "memory": {
            "weights_grads_optimizer": float(state[0]),
            "activations": float(mem.activations[0] + mem.recompute[0] + mem.outside_layers[0]),
            "comm_buffers": float(mem.comm_buffers[0]),
            "runtime_reserved": float(mem.runtime[0]),
        },
    }


def serve_plan(batch: int, input_len: int) -> ServingPlan:
    """The engine the worker is: bf16 weights and KV, eager, the whole batch prefilled in one iteration."""
    return ServingPlan(
        weight_dtype="bf16",
        kv_dtype="bf16",
        cuda_graphs=False,
        max_batch=batch,
        max_batch_tokens=max(batch * input_len, 1),
        block_size=1,
    )


def serve_memory(spec: ModelSpec, batch: int, input_len: int, output_len: int) -> dict[str, float]:
    """The serving memory model's tensors for the worker's run (no device needed, so it can be checked first)."""
    plan = serve_plan(batch, input_len)
    return {
        "weights": weight_bytes_per_gpu(spec, plan),
        # the worker preallocates every sequence's cache for its whole length, as a paged engine would fill it
        "kv_cache": kv_bytes_per_token_per_gpu(spec, plan) * batch * (input_len + output_len),
        "activations": activation_peak_bytes(spec, plan),  # the prefill: the largest iteration
    }


def predict_serve(spec: ModelSpec, gpu: str, batch: int, input_len: int, output_len: int) -> dict:
    cluster = resolve_cluster(gpu, 1)
    step = InferenceStepModel(spec, cluster, serve_plan(batch, input_len))
    prefill = step.step_time_s([input_len] * batch, [0] * batch, [])
    # Decode iteration i runs one new token per sequence against the context cached so far.
    decode = [step.step_time_s([], [], np.full(batch, float(input_len + i))) for i in range(output_len - 1)]
    memory = serve_memory(spec, batch, input_len, output_len)
    return {"prefill_s": float(prefill), "decode_step_s": [float(x) for x in decode], "memory": memory}
