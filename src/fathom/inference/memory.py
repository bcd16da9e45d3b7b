"""Memory of one serving replica per GPU: weights, activation peak, runtime reserve, and what is left for KV.

Like vLLM's profiling run: the KV cache gets ``memory_utilization`` of device memory minus the weights, the
peak activations of the largest iteration (``max_batch_tokens``) and the runtime's own reserve.
"""

from __future__ import annotations

from dataclasses import dataclass

from fathom.costmodel.kernels import BYTES
from fathom.errors import FathomInputError
from fathom.specs.hardware import GIB, DeviceSpec
from fathom.specs.model import ModelSpec
from fathom.specs.serving import ServingPlan

# int4 weights carry a 16-bit scale per group of 128 (AWQ/GPTQ/MARLIN layout): 0.5 + 2/128 bytes per weight.
WEIGHT_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0 + 2.0 / 128, "int4": 0.5 + 2.0 / 128}
RUNTIME_RESERVED_BYTES = 1.5 * GIB  # CUDA context, cuBLAS workspaces, NCCL buffers, CUDA-graph pools


@dataclass(frozen=True)
class ReplicaMemory:
    weights_bytes: float  # per GPU
    activation_bytes: float
    runtime_bytes: float
    kv_bytes_per_token: float  # per GPU: this GPU's layers and heads
    kv_capacity_tokens: int  # per replica (every GPU holds its share of each token)

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
    """Weights of the fullest GPU: TP and PP split everything; EP splits the routed experts instead of TP."""
    w = WEIGHT_BYTES[plan.weight_dtype]
    experts = model.num_moe_layers * model.expert_params_per_layer
    rest = model.num_params - experts
    expert_split = plan.ep if plan.ep > 1 else plan.tp
    return (rest / (plan.tp * plan.pp) + experts / (expert_split * plan.pp)) * w


def activation_peak_bytes(model: ModelSpec, plan: ServingPlan) -> float:
    """Largest iteration's live activations: one layer's intermediates plus fp32 logits of the batch."""
    t = plan.max_batch_tokens
    ffn = model.ffn_size if model.moe is None else model.moe.expert_ffn_size * model.moe.top_k
    per_token = 4 * model.hidden_size + 3 * ffn / plan.tp + (model.num_heads + 2 * model.num_kv_heads) * model.head_dim
    logits = plan.max_batch * model.vocab_size / plan.tp * 4.0
    return t * per_token * 2.0 + logits


def replica_memory(model: ModelSpec, device: DeviceSpec, plan: ServingPlan) -> ReplicaMemory:
    weights = weight_bytes_per_gpu(model, plan)
    acts = activation_peak_bytes(model, plan)
    kv_token = kv_bytes_per_token_per_gpu(model, plan)
    if plan.kv_free_fraction is not None:
        free = plan.kv_free_fraction * (device.memory_bytes - weights - acts - RUNTIME_RESERVED_BYTES)
    else:
        free = device.memory_bytes * plan.memory_utilization - weights - acts - RUNTIME_RESERVED_BYTES
    tokens = int(free // kv_token) // plan.block_size * plan.block_size if free > 0 else 0
    if tokens < plan.block_size:
        need = (weights + acts + RUNTIME_RESERVED_BYTES) / GIB
        raise FathomInputError(
            f"model does not fit: {model.name} needs {need:.1f} GiB per GPU before any KV cache, "
            f"{device.name} offers {device.memory_gib * plan.memory_utilization:.1f} GiB at "
            f"memory utilization {plan.memory_utilization:g}; raise --tp/--pp or quantise the weights"
        )
    return ReplicaMemory(weights, acts, RUNTIME_RESERVED_BYTES, kv_token, tokens)
