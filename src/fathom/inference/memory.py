"""Memory of one serving replica per GPU: weights, activation peak, runtime reserve, and what is left for KV.

Like vLLM's profiling run: the KV cache gets ``memory_utilization`` of device memory minus the weights, the
peak activations of the largest iteration (``max_batch_tokens``) and the runtime's own reserve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fathom.costmodel.kernels import BYTES
from fathom.errors import FathomInputError
from fathom.specs.hardware import GIB, DeviceSpec
from fathom.specs.model import ModelSpec
from fathom.specs.serving import ServingPlan, check_serving_plan

# int4 weights carry a 16-bit scale per group of 128 (AWQ/GPTQ/MARLIN layout): 0.5 + 2/128 bytes per weight.
WEIGHT_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0 + 2.0 / 128, "int4": 0.5 + 2.0 / 128}
RUNTIME_RESERVED_BYTES = 1.5 * GIB  # CUDA context, cuBLAS workspaces, NCCL buffers, CUDA-graph pools


def runtime_reserved_bytes(device: DeviceSpec) -> float:
    """What the runtime holds besides tensors: the device's measured figure (``fathom profile`` records the
    framework's own pages on a CPU), else a GPU's CUDA context and workspaces."""
    return device.runtime_reserved_gib * GIB if device.runtime_reserved_gib is not None else RUNTIME_RESERVED_BYTES


@dataclass(frozen=True)
class ReplicaMemory:
    weights_bytes: float  # per GPU
    activation_bytes: float
    runtime_bytes: float
    kv_bytes_per_token: float  # per GPU: this GPU's layers and heads
    kv_capacity_tokens: int  # per replica (every GPU holds its share of each token)
    # offloaded inference (``ServingPlan.offload_weights/offload_kv``): weights kept off the device, per GPU
    offloaded_weights_bytes: float = field(default=0.0, kw_only=True)
    resident_weight_fraction: float = field(default=1.0, kw_only=True)
    kv_on_host: bool = field(default=False, kw_only=True)

    @property
    def kv_cache_bytes(self) -> float:
        return self.kv_capacity_tokens * self.kv_bytes_per_token


def kv_bytes_per_token_per_gpu(model: ModelSpec, plan: ServingPlan) -> float:
    """K and V of one token on one GPU: its pipeline stage's layers, its TP share of the KV heads.

    GQA heads are split by TP but replicated once TP exceeds their number; MLA caches one latent vector and a
    RoPE key per layer (DeepSeek-V2), the same on every TP rank.
    """
    layers = -(-model.num_layers // plan.pp)
    elem = BYTES[plan.kv_dtype]
    if model.mla is not None:
        return layers * (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * elem
    heads = max(model.num_kv_heads / plan.tp, 1.0)
    return layers * 2.0 * heads * model.head_dim * elem


def weight_bytes_per_gpu(model: ModelSpec, plan: ServingPlan) -> float:
    """Weights of the fullest GPU: TP and PP split everything. EP (a divisor of TP) splits the routed experts ep
    ways and each expert tp/ep ways, so a GPU still holds 1/tp of them: EP changes how experts compute, not memory."""
    return model.num_params / (plan.tp * plan.pp) * WEIGHT_BYTES[plan.weight_dtype]


def activation_peak_bytes(model: ModelSpec, plan: ServingPlan) -> float:
    """Largest iteration's live activations: one layer's intermediates plus fp32 logits of the batch."""
    t = plan.max_batch_tokens
    ffn = model.ffn_size if model.moe is None else model.moe.expert_ffn_size * model.moe.top_k
    per_token = 4 * model.hidden_size + 3 * ffn / plan.tp + (model.num_heads + 2 * model.num_kv_heads) * model.head_dim
    logits = plan.max_batch * model.vocab_size / plan.tp * 4.0
    return t * per_token * 2.0 + logits


def replica_memory(model: ModelSpec, device: DeviceSpec, plan: ServingPlan) -> ReplicaMemory:
    """Memory of one GPU of the replica; a layout that cannot run the model is an input error first."""
    check_serving_plan(model, plan)
    weights = weight_bytes_per_gpu(model, plan)
    acts = activation_peak_bytes(model, plan)
    kv_token = kv_bytes_per_token_per_gpu(model, plan)
    if plan.offload_weights != "none" or plan.offload_kv != "none":
        return _offloaded_memory(model, device, plan, weights, acts, kv_token)
    if plan.kv_free_fraction is not None:
        free = plan.kv_free_fraction * (device.memory_bytes - weights - acts - runtime_reserved_bytes(device))
    else:
        free = device.memory_bytes * plan.memory_utilization - weights - acts - runtime_reserved_bytes(device)
    tokens = int(free // kv_token) // plan.block_size * plan.block_size if free > 0 else 0
    if tokens < plan.block_size:
        need = (weights + acts + runtime_reserved_bytes(device)) / GIB
        raise FathomInputError(
            f"model does not fit: {model.name} needs {need:.1f} GiB per GPU before any KV cache, "
            f"{device.name} offers {device.memory_gib * plan.memory_utilization:.1f} GiB at "
            f"memory utilization {plan.memory_utilization:g}; raise --tp/--pp, quantise the weights or offload them"
        )
    return ReplicaMemory(weights, acts, runtime_reserved_bytes(device), kv_token, tokens)


def _kv_room(device: DeviceSpec, plan: ServingPlan, weights: float, acts: float) -> float:
    """Device bytes left for the KV cache once ``weights`` bytes of weights are resident (the same rule as above)."""
    if plan.kv_free_fraction is not None:
        return plan.kv_free_fraction * (device.memory_bytes - weights - acts - runtime_reserved_bytes(device))
    return device.memory_bytes * plan.memory_utilization - weights - acts - runtime_reserved_bytes(device)


def _offloaded_memory(model: ModelSpec, device: DeviceSpec, plan: ServingPlan, weights: float, acts: float,
                      kv_token: float) -> ReplicaMemory:  # fmt: skip
    """Placement of FlexGen (Sheng et al. 2023, section 4): a fraction ``f`` of every layer's weights stays on the
    device, the rest streams in layer by layer into a double buffer (two layers' streamed share); KV kept in host
    memory streams the same way (two layers of the batch's KV staged on the device). Without a given ``f``, the one
    of most decode throughput (``_best_resident_fraction``) among those that leave room for the KV of one longest
    sequence, or all of them when they all fit so. Host capacity is checked by ``fathom.inference.offload``, which
    knows the node."""
    if device.ops_run_inline:
        raise FathomInputError(
            f"--offload-weights/--offload-kv: {device.name} computes out of host memory already, nothing to offload;"
            " drop the flags"
        )
    layers = -(-model.num_layers // plan.pp)
    kv_dev = kv_token * 2.0 / layers if plan.offload_kv != "none" else kv_token  # device bytes per KV token
    longest = plan.max_model_len or model.max_seq_len
    need_kv = -(-longest // plan.block_size) * plan.block_size * kv_dev
    staging = min(2.0 / layers, 1.0) * weights  # the double buffer of streamed layers

    def resident(f: float) -> float:
        return weights if plan.offload_weights == "none" else f * weights + (1.0 - f) * staging

    f = 1.0 if plan.offload_weights == "none" else plan.resident_weight_fraction
    if f is None:
        room0, room1 = _kv_room(device, plan, resident(0.0), acts), _kv_room(device, plan, resident(1.0), acts)
        if room1 >= need_kv:
            f = 1.0  # every weight fits beside a longest sequence: nothing streams, prefills included
        elif room0 < need_kv:
            f = 0.0  # even fully streamed the longest sequence does not fit: the error below says by how much
        else:  # room falls linearly in f; past f_max not even one longest sequence fits
            f_max = max(0.0, (room0 - need_kv) / (room0 - room1) - 1e-9)  # rounding must not lose the last block
            f = _best_resident_fraction(model, device, plan, weights, kv_token, kv_dev, longest, f_max,
                                        lambda x: _kv_room(device, plan, resident(x), acts))  # fmt: skip
    free = _kv_room(device, plan, resident(f), acts)
    tokens = int(free // kv_dev) // plan.block_size * plan.block_size if free > 0 else 0
    if tokens < plan.block_size:
        need = (resident(f) + acts + runtime_reserved_bytes(device)) / GIB
        raise FathomInputError(
            f"model does not fit: {model.name} needs {need:.1f} GiB per GPU before any KV cache even with "
            f"{1 - f:.0%} of its weights offloaded ({plan.offload_weights}); {device.name} offers "
            f"{device.memory_gib * plan.memory_utilization:.1f} GiB; lower --resident-weight-fraction, raise --tp/--pp "
            f"or quantise"
        )
    return ReplicaMemory(resident(f), acts, runtime_reserved_bytes(device), kv_token, tokens,
                         offloaded_weights_bytes=weights - f * weights if plan.offload_weights != "none" else 0.0,
                         resident_weight_fraction=f, kv_on_host=plan.offload_kv != "none")  # fmt: skip


def _best_resident_fraction(model: ModelSpec, device: DeviceSpec, plan: ServingPlan, weights: float, kv_token: float,
                            kv_dev: float, longest: int, f_max: float, kv_room) -> float:  # fmt: skip
    """The resident weight fraction in ``[0, f_max]`` of most decode tokens/s, by an analytic cost model as FlexGen
    (Sheng et al. 2023, section 5) chooses its placement: a step of ``B(f)`` sequences of the longest length, ``B``
    what the KV room ``kv_room(f)`` holds (at most ``max_batch``), takes the longest of streaming the offloaded
    weights (and host-resident KV) over the host link, reading resident weights and KV from HBM, and the batch's
    matmul FLOPs. Resident weights stream less but leave less room for KV: with the weights streaming-bound and the
    batch KV-bound, tokens/s goes as KV room / streamed bytes, so when the weights cannot all stay resident it is
    best to stream them all and fill the device with KV, unless ``max_batch`` caps the batch first. Ties go to the
    larger fraction. NVMe is priced at the host link's rate here (the device does not know its node's drives).
    Only called when the weights do not all fit: the decode-only model leaves out the prefills' streaming, which
    would make a fraction below 1 a loss on any prompt-heavy load of a model that fits."""
    fs = np.unique(np.append(np.linspace(0.0, f_max, 101), f_max))
    room = np.array([kv_room(x) for x in fs])
    batch = np.minimum(plan.max_batch, np.floor(np.maximum(room, 0.0) / (kv_dev * longest)))
    on_host = plan.offload_kv != "none"
    kv_read = batch * longest * kv_token  # every sequence's context, every layer of this GPU
    stream = ((1.0 - fs) * weights + (kv_read if on_host else 0.0)) / device.host_link_bytes_per_s
    hbm = (fs * weights + (0.0 if on_host else kv_read)) / (device.mem_bw_bytes_per_s * device.efficiency.memory)
    flops = 2.0 * model.num_active_params / (plan.tp * plan.pp) * batch
    math = flops / device.peak_flops_per_s("fp8" if plan.weight_dtype == "fp8" else "bf16")
    step = np.maximum(np.maximum(stream, hbm), math)
    rate = np.where((batch >= 1) & (step > 0), batch / np.where(step > 0, step, 1.0), 0.0)
    if not rate.max() > 0:
        return f_max  # not even one longest sequence fits: the caller's error says by how much
    return float(fs[np.flatnonzero(rate >= rate.max() * (1 - 1e-9))[-1]])
