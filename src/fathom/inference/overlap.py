"""Intra-device overlap of an iteration's compute-, memory- and network-bound work through nano-batches.

NanoFlow (Zhu et al. 2024, arXiv:2408.12757, Sec. 3-4): an engine that runs an iteration's operations one after
another leaves the GPU's tensor cores idle during decode attention (bound by reading the KV cache) and during
tensor-parallel collectives (bound by the link). NanoFlow splits the batch into ``n`` nano-batches and runs an
operation-level pipeline, so that one nano-batch's GEMMs overlap another's attention and another's all-reduce;
the iteration is then bound by its slowest resource (Sec. 3). The cost (Sec. 4): each nano-batch runs its GEMMs over
``T / n`` tokens, so the weights are read ``n`` times and small GEMMs run less efficiently; collectives of smaller
messages pay their latency ``n`` times.

Each resource stream is priced with fathom's own kernel and collective models (no new constants):
- compute ``C``: ``n`` x the token-linear GEMMs and elementwise work at ``T / n`` tokens without their
  collectives, plus the LM head and prefill attention;
- memory ``M``: decode attention (reading every decoding request's KV) plus ``n`` reads of the weights, which
  share the same HBM bandwidth;
- network ``K``: ``n`` x the tensor-parallel all-reduces (and pipeline hops) of ``T / n`` tokens.
A nano-batch walks the layers as a chain GEMM -> attention -> collective, and ``n`` nano-batches are in flight, so
each layer takes the larger of the busiest resource's share and one nano-batch's own chain:
``time = max(C, M, K, (C + M + K) / n) + (C + M + K) / (n * layers)`` (the last term fills and drains the pipeline).
The interference of kernels sharing the device's SMs (NanoFlow's execution-unit scheduling) is not modelled, so this
is the overlap's upper bound; it is never longer than running everything in sequence.
"""

from __future__ import annotations

import numpy as np

from fathom.costmodel.collectives import all_reduce_s, p2p_s


class NanoBatchOverlap:
    """Overlapped iteration time of one replica's ``InferenceStepModel`` with ``plan.nano_batches`` nano-batches."""

    def __init__(self, step, grid: np.ndarray, act_bytes: float) -> None:
        self.step, self.n, self.grid = step, int(step.plan.nano_batches), grid
        m, p, system, dev = step.model, step.plan, step.cluster.system, step.cluster.device
        t = grid.astype(float)
        per_layer = 2.0 * all_reduce_s(system, t * m.hidden_size * act_bytes, p.tp, 1)
        hops = (p.pp - 1) * p2p_s(system, t * m.hidden_size * act_bytes, p.tp)
        self._network = p.pp * step.layers * per_layer + hops  # the collectives inside the token-linear table
        self.weight_read_s = step.memory.weights_bytes / (dev.mem_bw_bytes_per_s * dev.efficiency.memory)
        self.depth = step.layers * p.pp

    def network_s(self, tokens: float) -> float:
        return float(np.interp(tokens, self.grid, self._network))

    def step_s(self, linear: float, head: float, prefill_attn: float, decode_attn: float, tokens: float) -> float:
        """Seconds of the iteration's GPU work (without fixed launch costs) when its nano-batches overlap; the
        arguments are the sequential parts ``InferenceStepModel.step_time_s`` computed for ``tokens`` new tokens."""
        sequential = linear + head + prefill_attn + decode_attn
        n = int(min(self.n, tokens))
        if n <= 1:
            return sequential
        step, share = self.step, tokens / n
        network = n * self.network_s(share)
        compute = n * (step._table(step._linear, step._linear_dense, share) - self.network_s(share)) + head
        compute += prefill_attn
        memory = decode_attn + n * self.weight_read_s
        chain = compute + memory + network
        return min(sequential, max(compute, memory, network, chain / n) + chain / (n * self.depth))
