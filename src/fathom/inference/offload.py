"""Offloaded inference as a cost model: weights (and KV) kept off the device stream over the host link every step.

FlexGen (Sheng et al. 2023, "FlexGen: High-Throughput Generative Inference of Large Language Models with a Single
GPU", ICML, section 4.1-4.2): a step walks the layers in order and, while layer ``i`` computes, loads layer ``i+1``'s
offloaded weights and KV (CPU -> GPU) and stores layer ``i-1``'s new KV (GPU -> CPU) on the other direction of the
link. Its cost model takes each layer as the max of those overlapped streams and compute; with identical layers a
step is ``max(compute, load, store)`` plus the first layer's load, which nothing hides. "LLM in a flash"
(Alizadeh et al. 2024) streams weights from flash: the same schedule with NVMe bandwidth in front of the host link.

Which bytes: the device keeps ``resident_weight_fraction`` of each layer (``fathom.inference.memory``); the rest
of every layer crosses the link once per step, whatever the batch (why FlexGen wants large batches). With
``offload_kv: cpu`` every token of KV a step attends to (each decode's context, each prefill chunk's cached
context) crosses the link too, and each new token's KV goes back. Host memory is the node's, shared by the GPUs of
the deployment on it (at most ``gpus_per_node``); NVMe bandwidth likewise. Sliding-window layers are counted as
reading the whole context (an overestimate for such models).
"""

from __future__ import annotations

from dataclasses import replace

from fathom.errors import FathomInputError
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.hardware import GIB, Cluster


class OffloadStepModel:
    """The ``StepCostModel`` of a replica whose weights and/or KV live partly in host memory or on NVMe."""

    def __init__(self, base: InferenceStepModel, cluster: Cluster, deployed_gpus: int = 1) -> None:
        mem, plan, system = base.memory, base.plan, cluster.system
        self.base, self.model, self.plan = base, base.model, plan
        self.block_size, self.max_context = base.block_size, base.max_context
        self.kv_bytes_per_token = base.kv_bytes_per_token
        self.host_link_bytes_per_s = link = base.host_link_bytes_per_s
        sharing = max(1, min(system.gpus_per_node, deployed_gpus))  # GPUs of this deployment on one node
        self.host_bytes = system.host_memory_gib * GIB / sharing  # this GPU's share of its node's host memory
        self.offloaded_bytes = mem.offloaded_weights_bytes
        host_weights = self.offloaded_bytes if plan.offload_weights == "cpu" else 0.0
        if host_weights > self.host_bytes:
            raise FathomInputError(
                f"model does not fit anywhere: {base.model.name} offloads {host_weights / GIB:.1f} GiB of weights per "
                f"GPU to host memory, this GPU's share of {system.name}'s is {self.host_bytes / GIB:.1f} GiB; use "
                "--offload-weights nvme, quantise (--precision int4) or add GPUs (--tp)"
            )
        tokens = mem.kv_capacity_tokens
        if mem.kv_on_host:
            host_kv = int((self.host_bytes - host_weights) // self.kv_bytes_per_token)
            tokens = min(tokens, host_kv) // self.block_size * self.block_size
            if tokens < self.block_size:
                raise FathomInputError(
                    f"--offload-kv: no host memory left for KV after {host_weights / GIB:.1f} GiB of offloaded weights "
                    f"(this GPU's share: {self.host_bytes / GIB:.1f} GiB)"
                )
        self.kv_capacity_tokens = tokens
        self.memory = mem if tokens == mem.kv_capacity_tokens else replace(mem, kv_capacity_tokens=tokens)
        spare = self.host_bytes - host_weights - (tokens * self.kv_bytes_per_token if mem.kv_on_host else 0.0)
        self.host_swap_tokens = max(0, min(base.host_swap_tokens, int(spare // self.kv_bytes_per_token)))
        self.layers = base.layers
        # bandwidth of the weights' own source: host memory over the link, or NVMe (shared per node) then the link
        nvme = system.nvme_bw_GBps * 1e9 / sharing
        self.weight_source_bytes_per_s = link if plan.offload_weights != "nvme" else min(nvme, link)
        self._kv_on_host = mem.kv_on_host

    def swap_time_s(self, blocks: int) -> float:
        return self.base.swap_time_s(blocks)

    def stream_times_s(self, prefill_tokens, prefill_context, decode_context) -> tuple[float, float, float]:
        """Seconds of one step's (load, store, unhidden first-layer load) over the host link."""
        w = self.offloaded_bytes
        kv_in = kv_out = 0.0
        if self._kv_on_host:
            per = self.kv_bytes_per_token
            kv_in = (float(sum(prefill_context)) + float(sum(decode_context))) * per
            kv_out = (float(sum(prefill_tokens)) + len(decode_context)) * per
        link, src = self.host_link_bytes_per_s, self.weight_source_bytes_per_s
        load = max(w / src, (w + kv_in) / link)
        first = (w / src + kv_in / link) / self.layers
        return load, kv_out / link, first

    def step_time_s(self, prefill_tokens, prefill_context, decode_context, *extra) -> float:
        compute = self.base.step_time_s(prefill_tokens, prefill_context, decode_context, *extra)
        if compute <= 0.0:
            return compute
        load, store, first = self.stream_times_s(prefill_tokens, prefill_context, decode_context)
        return max(compute, load, store) + first

    def placement(self) -> dict[str, float | str]:
        """Where the bytes of one GPU live (GiB), for reports."""
        mem, plan = self.memory, self.plan
        kv = mem.kv_cache_bytes / GIB
        return {
            "offload_weights": plan.offload_weights,
            "offload_kv": plan.offload_kv,
            "resident_weight_fraction": mem.resident_weight_fraction,
            "weights_device_gib": mem.weights_bytes / GIB,
            "weights_host_gib": self.offloaded_bytes / GIB if plan.offload_weights == "cpu" else 0.0,
            "weights_nvme_gib": self.offloaded_bytes / GIB if plan.offload_weights == "nvme" else 0.0,
            "kv_device_gib": kv * (2.0 / self.layers if mem.kv_on_host else 1.0),
            "kv_host_gib": kv if mem.kv_on_host else 0.0,
            "host_memory_share_gib": self.host_bytes / GIB,
        }
