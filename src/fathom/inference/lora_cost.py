"""Multi-LoRA serving as a cost model: the base model's step plus the batched adapter GEMMs, and the adapter pool.

Each adapted matrix ``W`` (``in`` -> ``out``) of a request with adapter ``a`` adds ``x A_a B_a`` with ``A_a`` of
``in x r`` and ``B_a`` of ``r x out``. S-LoRA (Sheng et al. 2023, "S-LoRA: Serving Thousands of Concurrent LoRA
Adapters", MLSys 2024) and Punica (Chen et al. 2023, "Punica: Multi-Tenant LoRA Serving", MLSys 2024) batch all
requests through the shared base GEMM and run the adapters as one gathered kernel per matrix: Punica's SGMV (and
S-LoRA's MBGMM/MBGMV) take a batch segmented by adapter, a "shrink" ``x A`` then an "expand" ``(x A) B``. The
FLOPs depend only on the tokens, but every distinct adapter in the batch has its own ``A`` and ``B`` to read, so at
decode sizes the kernel is bound by reading ``n_distinct`` adapters' weights (Punica section 4: latency grows with
the number of distinct models in the batch, flat when all requests share one). Priced per matrix and layer as a
roofline, the max of the FLOPs at the GEMM rate and of the bytes (adapters, plus the activations read and the
output read-modified-written) at the memory rate, plus two launches. Adapters are split across tensor-parallel
ranks like their base matrices (S-LoRA section 6) and kept in 16 bits.

The device keeps a pool of ``max_loras_per_batch`` adapters (S-LoRA's unified memory pool shares one budget with
the KV cache): the pool's bytes come out of the KV cache. Loading an adapter copies it over the host link, from
NVMe first when host memory does not cache it (``fathom.serving.lora_pool`` decides which).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fathom.errors import FathomInputError
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.serving import LoRAServingSpec

ADAPTER_BYTES = 2.0  # 16-bit adapter weights


def adapted_shapes(model: ModelSpec, targets: str) -> list[tuple[float, float]]:
    """``(in, out)`` of every adapted matrix of one layer (before tensor parallelism)."""
    h, hd = model.hidden_size, model.head_dim
    shapes = [(h, model.num_heads * hd), (h, model.num_kv_heads * hd), (h, model.num_kv_heads * hd),
              (model.num_heads * hd, h)]  # fmt: skip
    if targets == "all-linear":
        ffn = model.ffn_size
        shapes += [(h, ffn)] * (2 if model.gated_mlp else 1) + [(ffn, h)]
    return [(float(i), float(o)) for i, o in shapes]


class LoRAStepModel:
    """The ``StepCostModel`` of a replica serving many LoRA adapters over ``base`` (any step model).

    ``step_time_s(..., distinct_adapters)``: the base step plus the adapter kernels for the batch's new tokens when
    its requests use ``distinct_adapters`` different adapters (the replica passes its pool's count)."""

    def __init__(self, base, cluster: Cluster, lora: LoRAServingSpec, deployed_gpus: int = 1) -> None:
        self.base, self.lora, self.model = base, lora, base.model
        plan = base.plan
        self.plan = plan
        self.block_size, self.max_context = base.block_size, base.max_context
        self.kv_bytes_per_token = base.kv_bytes_per_token
        self.host_link_bytes_per_s = base.host_link_bytes_per_s
        dev, system = cluster.device, cluster.system
        layers = -(-base.model.num_layers // plan.pp)
        io = np.array(adapted_shapes(base.model, lora.targets)) / plan.tp  # each rank's slice
        r = float(lora.rank)
        self.adapter_bytes = float(layers * r * io.sum() * ADAPTER_BYTES)  # one adapter, per GPU
        # roofline coefficients per matrix, summed over layers and pipeline stages (which run one after another)
        stages = layers * plan.pp
        rate = dev.peak_flops_per_s("bf16") * dev.efficiency.gemm_fraction("bf16")
        bw = dev.mem_bw_bytes_per_s * dev.efficiency.memory
        self._flop_s = 2.0 * r * io.sum(axis=1) / rate  # per token
        self._adapter_s = r * io.sum(axis=1) * ADAPTER_BYTES / bw  # per distinct adapter
        self._act_s = (io[:, 0] + 2.0 * r + 2.0 * io[:, 1]) * ADAPTER_BYTES / bw  # per token
        self._stages = float(stages)
        self._launch_s = stages * io.shape[0] * 2 * dev.efficiency.kernel_launch_us * 1e-6
        # the pool's adapters share the device with the KV cache (S-LoRA's unified paging)
        mem = base.memory
        pool = lora.max_loras_per_batch * self.adapter_bytes
        device_kv_token = base.kv_bytes_per_token * (2.0 / layers if mem.kv_on_host else 1.0)  # see offload
        lost = -(-int(pool // device_kv_token + 1) // self.block_size) * self.block_size
        tokens = mem.kv_capacity_tokens - lost
        if tokens < self.block_size:
            raise FathomInputError(
                f"--max-loras-per-batch: {lora.max_loras_per_batch} adapters of rank {lora.rank} "
                f"({pool / GIB:.2f} GiB per GPU) leave no room for the KV cache; lower it or --adapter-rank"
            )
        self.memory = replace(mem, kv_capacity_tokens=tokens)
        self.kv_capacity_tokens = tokens
        self.host_swap_tokens = getattr(base, "host_swap_tokens", 0)
        sharing = max(1, min(system.gpus_per_node, deployed_gpus))
        self._host_load_s = self.adapter_bytes / self.host_link_bytes_per_s
        self._disk_load_s = self.adapter_bytes / (system.nvme_bw_GBps * 1e9 / sharing)

    def adapter_load_s(self, from_disk: bool) -> float:
        """Seconds to bring one adapter onto the device: over the host link, after NVMe when host memory lacks it."""
        return self._host_load_s + (self._disk_load_s if from_disk else 0.0)

    def lora_time_s(self, tokens: float, distinct_adapters: int) -> float:
        """Seconds of the adapter kernels of one step over ``tokens`` new tokens of ``distinct_adapters`` adapters."""
        if tokens <= 0:
            return 0.0
        compute = self._flop_s * tokens
        memory = self._adapter_s * max(distinct_adapters, 1) + self._act_s * tokens
        return float(np.maximum(compute, memory).sum()) * self._stages + self._launch_s

    def swap_time_s(self, blocks: int) -> float:
        return self.base.swap_time_s(blocks)

    def step_time_s(self, prefill_tokens, prefill_context, decode_context, distinct_adapters: int = 1) -> float:
        base = self.base.step_time_s(prefill_tokens, prefill_context, decode_context)
        tokens = float(sum(prefill_tokens)) + len(decode_context)
        return base + self.lora_time_s(tokens, distinct_adapters)
