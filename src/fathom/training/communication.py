"""Communication of a training step, priced with the alpha-beta collectives of ``fathom.costmodel``.

Megatron rank order (TP fastest, then CP, then DP, then PP) fixes each group's stride, hence its tier.
- TP: two all-reduces per layer forward and two backward (Shoeybi et al. 2019); with sequence parallelism,
  all-gather + reduce-scatter pairs of the same total volume (Korthikanti et al. 2022); one pair for a parallel
  attention + MLP block. Exposed unless the plan overlaps them with the GEMMs (``fathom.training.step_time``).
- CP: ring attention passes K/V blocks around the CP ring (Liu et al. 2023); overlapped with the attention
  compute of the current block, so only the excess is exposed.
- EP: dispatch and combine all-to-alls, forward and backward (Lepikhin et al. 2020, GShard).
- PP: one activation send per micro-batch per stage boundary, each way.
- DP/ZeRO: gradient all-reduce (ZeRO 0), or reduce-scatter + parameter all-gather (ZeRO 1/2),
  per micro-batch gathers for ZeRO 3 (Rajbhandari et al. 2020), and for FSDP's SHARD_GRAD_OP (ZeRO 2 with
  ``zero2_comm="per-unit"``) without the backward re-gather. Frameworks reduce gradients in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.costmodel.collectives import (
    all_gather_s,
    all_reduce_s,
    all_to_all_s,
    p2p_s,
    reduce_scatter_s,
    ring_exchange_s,
)
from fathom.specs.hardware import SystemSpec
from fathom.specs.model import ModelSpec
from fathom.specs.plan import MOE_DISPATCHERS, ZERO2_COMMS, ZERO3_GATHERS
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes

GRAD_REDUCE_BYTES = 4.0
PARAM_GATHER_BYTES = 2.0


@dataclass(frozen=True)
class LayerComm:
    """Exposed seconds per layer per micro-batch (forward / backward), and per-boundary p2p."""

    tp_fwd: np.ndarray
    tp_bwd: np.ndarray
    cp_fwd: np.ndarray
    cp_bwd: np.ndarray
    ep_fwd: np.ndarray
    ep_bwd: np.ndarray
    pp_p2p: np.ndarray  # one send of one micro-batch's boundary activation


def layer_comm(
    model: ModelSpec,
    system: SystemSpec,
    p: PlanArrays,
    s: PlanShapes,
    attn_fwd: np.ndarray,
    attn_bwd: np.ndarray,
) -> LayerComm:
    h = model.hidden_size
    act = s.tokens * h * s.act_bytes
    tp_one = all_reduce_s(system, act, p.tp, 1)
    # Dense layers: one collective pair for attention, one for the MLP; MoE layers route the MLP through EP.
    # A parallel block gathers its one normalised input once and reduces the sum of both branches once
    # (PaLM, Chowdhery et al. 2022 Sec. 2; MegaScale Fig. 3a): one pair per layer.
    pairs = 1.0 if model.parallel_block and model.moe is None else 2.0 - s.moe_fraction
    tp_fwd = pairs * tp_one
    # CP: each of cp-1 ring steps moves this rank's K and V block; backward also returns dK, dV.
    kv_heads = model.num_kv_heads if model.mla is None else model.num_heads
    kv_dim = (
        model.head_dim
        if model.mla is None
        else (model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim + model.mla.v_head_dim) / 2
    )
    kv_block = 2 * s.tokens * kv_heads * kv_dim / np.maximum(p.tp, 1) * s.act_bytes
    ring_step = ring_exchange_s(system, kv_block, p.cp, p.tp)
    cp_steps = p.cp - 1.0
    cp_fwd = np.where(p.cp > 1, np.maximum(cp_steps * ring_step - attn_fwd, 0.0), 0.0)
    cp_bwd = np.where(p.cp > 1, np.maximum(2 * cp_steps * ring_step - attn_bwd, 0.0), 0.0)
    ep_fwd = ep_bwd = np.zeros_like(tp_fwd)
    if model.moe is not None:
        a2a = np.where(
            p.moe_dispatcher == MOE_DISPATCHERS.index("deepep"),
            _hierarchical_dispatch_s(model, system, p, s),
            _flat_dispatch_s(model, system, p, s),
        )
        ep_fwd = s.moe_fraction * 2 * a2a  # dispatch and combine
        ep_bwd = ep_fwd
    # Megatron's scatter/gather optimisation (Narayanan et al. 2021, Sec. 4.1): each TP rank sends 1/t of
    # the boundary activation across nodes and the receivers all-gather it over the fast intra-node tier.
    boundary = s.tokens / p.tp * h * s.act_bytes
    pp_stride = p.tp * p.cp * p.dp
    pp_p2p = np.where(p.pp > 1, p2p_s(system, boundary, pp_stride), 0.0)
    return LayerComm(tp_fwd, tp_fwd.copy(), cp_fwd, cp_bwd, ep_fwd, ep_bwd, pp_p2p)


def _flat_dispatch_s(model: ModelSpec, system: SystemSpec, p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """One NCCL all-to-all moving each token's top-k copies to the ranks holding their experts."""
    routed = s.tokens_sp * model.moe.top_k * model.hidden_size * s.act_bytes
    return all_to_all_s(system, routed, p.ep, 1)


def _hierarchical_dispatch_s(model: ModelSpec, system: SystemSpec, p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """DeepEP-style dispatch: one network copy per destination node, then NVLink forwarding inside it.

    With experts spread evenly over ``N`` nodes and top-k routing, a token reaches on average
    ``(N - 1)(1 - (1 - 1/N)^k)`` remote nodes instead of sending ``k (N - 1)/N`` copies over the network.
    """
    k = model.moe.top_k
    ep = p.ep.astype(float)
    local = np.minimum(float(system.domain_size), ep)
    nodes = np.ceil(ep / local)
    remote_nodes = (nodes - 1.0) * (1.0 - (1.0 - 1.0 / nodes) ** k)
    token_bytes = s.tokens_sp * model.hidden_size * s.act_bytes
    network = token_bytes * remote_nodes / system.inter_bytes_per_s
    nvlink = token_bytes * k * (1.0 - 1.0 / ep) / system.intra_bytes_per_s
    latency = np.where(nodes > 1, system.inter_node_latency_us, system.intra_node_latency_us) * 1e-6
    return np.where(ep > 1, np.maximum(network, nvlink) + latency, 0.0)


@dataclass(frozen=True)
class DataParallelComm:
    """Seconds per optimizer step of data-parallel traffic, before overlap (``total``) and per micro-batch."""

    per_step: np.ndarray  # ZeRO 0-2: gradient reduction + parameter gather, once per step
    per_micro_batch: np.ndarray  # ZeRO 3, FSDP ZeRO 2: per-unit gathers and reduce-scatters every micro-batch
    gather_pass: np.ndarray  # per-unit: one pass of parameter all-gathers over the stage (forward or backward)
    reduce_pass: np.ndarray  # per-unit: the gradient reduce-scatters of one backward pass


def data_parallel_comm(
    system: SystemSpec, p: PlanArrays, s: PlanShapes, tensors_per_layer: float = 1.0
) -> DataParallelComm:
    group = p.dp * p.cp  # gradients are averaged over DP and CP ranks
    stride = p.tp
    params = s.stage_params_local
    grad_bytes = params * GRAD_REDUCE_BYTES
    param_bytes = params * PARAM_GATHER_BYTES
    plain = all_reduce_s(system, grad_bytes, group, stride)
    sharded = reduce_scatter_s(system, grad_bytes, group, stride) + all_gather_s(system, param_bytes, group, stride)
    zero3 = p.zero == 3
    shard_grad_op = (p.zero == 2) & (p.zero2_comm == ZERO2_COMMS.index("per-unit"))
    per_unit = zero3 | shard_grad_op
    per_step = np.where(p.zero == 0, plain, np.where(per_unit, 0.0, sharded))
    # ZeRO-3 / FSDP gathers and reduces one layer (wrapping unit) at a time: the volume is the stage's, but every
    # layer pays its own collective latency.
    layers = s.layers_per_stage
    # DeepSpeed's first ZeRO-3 gathers and reduces every parameter tensor on its own (zero3_gather
    # "per-parameter-sync"): the same volume in more, smaller collectives, each paying its latency.
    per_param = zero3 & (p.zero3_gather == ZERO3_GATHERS.index("per-parameter-sync"))
    calls = layers * np.where(per_param, tensors_per_layer, 1.0)
    gather = np.where(per_unit, calls * all_gather_s(system, param_bytes / calls, group, stride), 0.0)
    reduce = np.where(per_unit, calls * reduce_scatter_s(system, grad_bytes / calls, group, stride), 0.0)
    # Forward gathers, one reduce-scatter, and for ZeRO-3 the backward re-gathers (FULL_SHARD frees each unit after
    # its forward; SHARD_GRAD_OP keeps it until its backward is done).
    gathers = np.where(zero3, 2.0, 1.0)
    return DataParallelComm(
        per_step=per_step, per_micro_batch=gathers * gather + reduce, gather_pass=gather, reduce_pass=reduce
    )
