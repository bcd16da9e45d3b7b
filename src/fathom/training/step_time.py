"""Step time: per-stage micro-batch time assembled by the pipeline schedule, plus DP and optimizer.

Pipeline schedules (per optimizer step, m micro-batches, p stages, v chunks per stage):
- 1F1B (Narayanan et al. 2021): (m - 1) t_max + sum over stages t_stage, i.e. a bubble of (p - 1) stage-times.
- Interleaved 1F1B: the bubble shrinks to (p - 1)/v stage-times; p2p sends grow v-fold.
- Zero bubble ZB-H1 (Qi et al. 2024): splitting backward into input- and weight-gradient passes fills the
  bubble except (p - 1)(t_F + t_B - t_W), about one forward per stage.
- Automatic zero bubble ZB-1p / ZB-2p (``zero-bubble-auto``, ``zero-bubble-auto-2p``, Qi et al. 2024 Sec. 3): a
  list scheduler over the plan's own F, B and W pass times under 1F1B's memory or twice it
  (``fathom.training.zero_bubble_auto``); the bubble is the busiest stage's span less its work.
- Zero bubble ZB-H2 (``zero-bubble-2p``, Qi et al. 2024 Sec. 2.2/3): extra warm-up forwards (2p - 1 micro-batches
  in flight) leave (p - 1)(t_F + t_B - 2 t_W), not below 0; t_B is the input-gradient pass, t_W the
  weight-gradient GEMMs (``LayerCompute.gemm_wgrad``).
TP collectives, pipeline sends and per-chunk ZeRO gathers overlap compute where the plan asks for it (MegaScale,
Jiang et al. 2024 Sec. 3.2). Data-parallel traffic of ZeRO 0-2 overlaps the last micro-batch's backward; ZeRO-3
gathers (and FSDP SHARD_GRAD_OP's per-unit ones) overlap each micro-batch's compute except the first layer's (and,
under FSDP's BACKWARD_POST, the backward re-gathers). The optimizer step is memory-bound.
Frozen leading layers neither recompute nor communicate backward; the optimizer step covers the trainable
parameters only (``fathom.training.finetune``). Activation CPU offloading's host-link copies overlap the other
layers' compute; what they exceed it by stalls the step (``fathom.training.activation_offload``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fathom.costmodel.kernels import memory_bound_s
from fathom.specs.hardware import Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import SCHEDULES, TRAIN_PRECISIONS, ZERO3_GATHERS
from fathom.training.activation_offload import exposed_copy_s
from fathom.training.communication import DataParallelComm, LayerComm
from fathom.training.compute import LayerCompute
from fathom.training.ep_overlap import exposed_ep_s
from fathom.training.finetune import ParameterBytes, galore_plans, parameter_bytes, trainable_layer_fraction
from fathom.training.finetune_time import galore_step_s
from fathom.training.memory import activation_bytes_per_layer
from fathom.training.moe_imbalance import with_dropless_imbalance
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes
from fathom.training.zero_bubble_auto import pipeline_span

# HBM bytes touched per parameter by one optimizer step (reads and writes of grads, master, states, weights).
# GaLore's entries are for the parameters it does not project (fathom.training.finetune prices the rest).
OPTIMIZER_STEP_BYTES = {"adamw": 30.0, "adam-8bit": 18.0, "adafactor": 22.0, "sgd": 22.0, "galore": 30.0,
                        "galore-8bit": 18.0}  # fmt: skip
HOST_OPTIMIZER_BW = 20e9  # bytes/s per GPU share of host DDR for CPU Adam (DeepSpeed CPU-Adam, ZeRO-Offload)


@dataclass(frozen=True)
class TimeBreakdown:
    """Seconds per optimizer step, by where the time goes (they add up to ``total``)."""

    gemm: np.ndarray
    attention: np.ndarray
    memory_bound: np.ndarray
    recompute: np.ndarray
    tp_comm: np.ndarray
    cp_comm: np.ndarray
    ep_comm: np.ndarray
    pp_comm: np.ndarray
    pipeline_bubble: np.ndarray
    host_overhead: np.ndarray  # GPU idle while the host issues ops (CPU-bound layers)
    dp_comm: np.ndarray
    optimizer: np.ndarray
    # Compute stalled on activation offload/reload copies over the host link (fathom.training.activation_offload).
    activation_offload_wait: np.ndarray | float = 0.0

    @property
    def total(self) -> np.ndarray:
        return sum(getattr(self, f) for f in self.__dataclass_fields__)  # type: ignore[return-value]


def _auto_bubble(p: PlanArrays, auto: np.ndarray, m, L, layer: tuple, head: tuple, p2p, stage_max, ends) -> np.ndarray:
    """Bubble of the automatic zero-bubble schedules: the scheduled span of the busiest stage less its own work.

    ``layer`` and ``head`` are one layer's and the LM head's (F, B, W) seconds per micro-batch. Stages run the
    fullest stage's ``L`` layers; the last also the head; with balanced ends the first and last one layer fewer.
    Blocking p2p sends count as stage time, as in the other schedules. ZB-1p holds at most 1F1B's p micro-batches,
    ZB-2p 2p - 1 (Qi et al. 2024).
    """
    out = np.zeros(len(p))
    full = lambda x: np.broadcast_to(x, out.shape)  # noqa: E731
    (lf, lb, lw), (hf, hb, hw) = (tuple(full(x) for x in layer), tuple(full(x) for x in head))
    send, fullest, micro, layers, short = full(p2p), full(stage_max), full(m), full(L), full(ends)
    for i in np.flatnonzero(auto):
        stages, mb = int(p.pp[i]), int(micro[i])
        limit = stages if p.schedule[i] == SCHEDULES.index("zero-bubble-auto") else 2 * stages - 1
        counts = [float(layers[i])] * stages
        if short[i]:
            counts[0] -= 1.0
            counts[-1] -= 1.0
        extra = [(0.0, 0.0, 0.0)] * (stages - 1) + [(hf[i], hb[i], hw[i])]
        half = send[i] / 2.0  # forward send and backward send
        f = tuple(n * lf[i] + e[0] + half for n, e in zip(counts, extra, strict=True))
        b = tuple(n * lb[i] + e[1] + half for n, e in zip(counts, extra, strict=True))
        w = tuple(n * lw[i] + e[2] for n, e in zip(counts, extra, strict=True))
        out[i] = max(pipeline_span(stages, mb, f, b, w, 0.0, limit) - mb * fullest[i], 0.0)
    return out


def _exposed_tp_backward(p: PlanArrays, tp_bwd: np.ndarray, c: LayerCompute) -> np.ndarray:
    """Backward TP seconds left exposed by Megatron's asynchronous collectives (megatron/core/tensor_parallel/
    layers.py, LinearWithGradAccumulationAndAsyncCommunication; async all-reduce since Sept 2021, the sequence-
    parallel overlap since March 2022).

    ``tp_bwd`` is two all-reduces' worth per layer: the input gradients of the two column-parallel GEMMs. Without
    sequence parallelism they run under those GEMMs' weight-gradient GEMMs. With
    sequence parallelism the backward has half that volume as all-gathers behind the row-parallel GEMMs (exposed),
    the other half as reduce-scatters under the weight-gradient GEMMs, plus a re-gather of each column-parallel input
    (the same volume again) under its input-gradient GEMM. Stacks without these asynchronous collectives
    (``async_tp_allreduce`` off) expose them all; chunked TP overlap (MegaScale) replaces this where the plan asks.
    """
    half = 0.5 * tp_bwd
    sp = p.sequence_parallel & (p.tp > 1)
    with_sp = half + np.maximum(half - c.column_wgrad, 0.0) + np.maximum(half - c.column_dgrad, 0.0)
    overlapped = np.where(sp, with_sp, np.maximum(tp_bwd - c.column_wgrad, 0.0))
    return np.where(p.async_tp_allreduce, overlapped, tp_bwd)


def _streaming_at(cluster: Cluster, share: float | None):
    """The device with its memory-bound share replaced by an optimizer step's own measured share (``fathom
    profile``), or as it is without one."""
    dev = cluster.device
    if share is None:
        return dev
    return dev.model_copy(update={"efficiency": dev.efficiency.model_copy(update={"memory": share})})


def _zero3_exposed(p: PlanArrays, dp: DataParallelComm, stage_max: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Per-unit ZeRO seconds per micro-batch that the stage's compute does not hide, by how the stack gathers.

    ZeRO-3 follows ``zero3_gather``; FSDP's SHARD_GRAD_OP (ZeRO-2, ``zero2_comm="per-unit"``) has no backward
    re-gathers, so its forward gathers and reduce-scatters overlap as under ``prefetch``.

    - ``prefetch``: every gather and reduce-scatter runs one unit ahead under compute; the first unit's gather
      and the last reduce-scatter (1/L of the traffic) and whatever exceeds the compute stay exposed.
    - ``per-parameter-sync``: DeepSpeed's first ZeRO-3 synchronises the device before every gather: nothing
      overlaps.
    - ``backward-post``: FSDP's ``BackwardPrefetch.BACKWARD_POST``, which PyTorch documents (torch/distributed/fsdp/
      api.py, ``BackwardPrefetch``, 2.0-2.1) as prefetching the next unit's parameters *after* the current unit's
      gradient computation: the reduce-scatters overlap the next gradient computation, the backward re-gathers do
      not, so one gather pass is exposed. The forward gathers (no ``forward_prefetch``: issued while the host runs
      ahead) and the reduce-scatters overlap as under ``prefetch``. fathom prices the documented overlap. In the
      code (_runtime_utils.py, 2.1: ``_post_backward_hook`` -> ``_post_backward_reshard`` -> ``_prefetch_handle``)
      that gather is issued after the host has issued the unit's gradient kernels, on the unshard stream, and with
      ``limit_all_gathers`` only once the unit before has finished (rate limiter, two gathers in flight); the
      stream itself does not wait for the compute, so a host running ahead could still hide part of it.
    """
    zero3 = dp.per_micro_batch
    layers = np.maximum(L, 1.0)
    prefetched = np.maximum(zero3 - stage_max, 0.0) + zero3 / layers
    hidden = dp.gather_pass + dp.reduce_pass  # backward-post: forward gathers and reduce-scatters still overlap
    # Exposing the backward gathers never leaves less exposed than prefetching them (traffic beyond the compute).
    post = np.maximum(dp.gather_pass + np.maximum(hidden - stage_max, 0.0) + hidden / layers, prefetched)
    exposed = np.select(
        [
            p.zero3_gather == ZERO3_GATHERS.index("per-parameter-sync"),
            p.zero3_gather == ZERO3_GATHERS.index("backward-post"),
        ],
        [zero3, post],
        prefetched,
    )
    return np.where(p.zero == 3, exposed, prefetched)  # prefetched is 0 where nothing is per-unit


def step_time(
    model: ModelSpec,
    cluster: Cluster,
    p: PlanArrays,
    s: PlanShapes,
    c: LayerCompute,
    comm: LayerComm,
    dp: DataParallelComm,
    pb: ParameterBytes | None = None,
) -> TimeBreakdown:
    pb = pb if pb is not None else parameter_bytes(model, p, s)
    c, comm = with_dropless_imbalance(model, p, c, comm)  # the busiest EP rank's MoE work under dropless routing
    live = trainable_layer_fraction(p, s)  # frozen leading layers have no backward pass
    L = s.layers_per_stage
    m = s.micro_batches
    pp = p.pp.astype(float)
    sel, full = p.recompute == 1, p.recompute == 2
    # TP/SP collectives chunked and pipelined with the GEMMs they feed or follow (MegaScale Fig. 3c): only what the
    # layer's GEMMs cannot cover stays exposed.
    comm = replace(
        comm,
        tp_fwd=np.where(p.overlap_tp_comm, np.maximum(comm.tp_fwd - c.gemm_fwd, 0.0), comm.tp_fwd),
        tp_bwd=np.where(
            p.overlap_tp_comm, np.maximum(comm.tp_bwd - c.gemm_bwd, 0.0), _exposed_tp_backward(p, comm.tp_bwd, c)
        ),
    )
    # Recomputation: selective redoes the attention core; full redoes the whole forward incl. TP traffic.
    recompute_compute = live * np.where(full, c.fwd, np.where(sel, c.attn_fwd, 0.0))
    recompute_comm = live * np.where(full, comm.tp_fwd + comm.ep_fwd, 0.0)
    comm = replace(comm, tp_bwd=live * comm.tp_bwd, cp_bwd=live * comm.cp_bwd, ep_bwd=live * comm.ep_bwd)
    # EP all-to-all overlapped with another micro-batch's compute (DeepSeek-V3's DualPipe, Megatron's 1F1B
    # all-to-all overlap): what stays exposed (fathom.training.ep_overlap), split like the traffic.
    ep_total = comm.ep_fwd + comm.ep_bwd
    ep_exposed = exposed_ep_s(p, m, ep_total, c.fwd + c.bwd)
    ep_scale = np.divide(ep_exposed, ep_total, out=np.zeros_like(ep_total), where=ep_total > 0)
    ep_fwd, ep_bwd = comm.ep_fwd * ep_scale, comm.ep_bwd * ep_scale
    layer_fwd = c.fwd + comm.tp_fwd + comm.cp_fwd + ep_fwd
    layer_bwd = c.bwd + comm.tp_bwd + comm.cp_bwd + ep_bwd + recompute_compute + recompute_comm
    # The GPU runs ahead of the host only while the host issues ops faster than the GPU retires them:
    # a layer takes at least the time to issue its ops (the CPU-bound regime of small layers).
    host_fwd = c.host_fwd
    host_bwd = c.host_bwd + live * np.where(full, c.host_fwd, 0.0)
    if cluster.device.ops_run_inline:  # a CPU issues and runs each op itself: the issue cost adds
        launch_bound = host_fwd + host_bwd
        layer_fwd, layer_bwd = layer_fwd + host_fwd, layer_bwd + host_bwd
    else:
        launch_bound = np.maximum(host_fwd - layer_fwd, 0.0) + np.maximum(host_bwd - layer_bwd, 0.0)
        layer_fwd = np.maximum(layer_fwd, host_fwd)
        layer_bwd = np.maximum(layer_bwd, host_bwd)
    offload_wait = 0.0
    if (p.activation_offload_layers > 0).any():  # host-link copies beyond the compute they overlap
        offload_wait = exposed_copy_s(
            cluster.device, p, s, activation_bytes_per_layer(model, p, s), layer_fwd, layer_bwd
        )
    chunks = np.where(p.schedule == SCHEDULES.index("interleaved"), p.vpp, 1).astype(float)
    p2p = 2.0 * chunks * comm.pp_p2p  # forward activation and backward gradient per micro-batch
    layers_fwd, layers_bwd = L * layer_fwd, L * layer_bwd
    # Decoupled asynchronous sends and receives run beside the stage's compute (MegaScale Fig. 4).
    p2p = np.where(p.overlap_p2p_comm, np.maximum(p2p - (layers_fwd + layers_bwd), 0.0), p2p)
    head = c.head_fwd + c.head_bwd
    # The fullest stage carries the LM head when pp > 1 (the last stage); with pp == 1 it is the only stage.
    # Balanced ends (pp >= 3): the embedding and the head count as a layer each in the split, so the first and last
    # stages hold one layer fewer and the head adds to the fullest stage only what it exceeds a layer by.
    ends = p.balance_pipeline_ends & (p.pp >= 3)
    layer_pair = layer_fwd + layer_bwd
    head_stage = np.where(ends, np.maximum(head - layer_pair, 0.0), head)
    stage_max = layers_fwd + layers_bwd + p2p + head_stage
    stage_avg = np.where(
        ends, ((pp * L - 2.0) * layer_pair + head) / pp + p2p, layers_fwd + layers_bwd + p2p + head / pp
    )
    zero3_exposed = _zero3_exposed(p, dp, stage_max, L)
    # Bubble, in units of the average stage time.
    fwd_share = layers_fwd / np.maximum(layers_fwd + layers_bwd, 1e-30)
    # ZB-H2: t_F + t_B - 2 t_W per stage with t_B = backward minus t_W, as a share of the stage's F + B + W.
    layers_wgrad = L * c.gemm_wgrad
    zb2_share = np.maximum(layers_fwd + layers_bwd - 3.0 * layers_wgrad, 0.0) / np.maximum(
        layers_fwd + layers_bwd, 1e-30
    )
    # The shorter bubbles need enough micro-batches in flight to fill the warm-up: interleaving and ZB-H1 at least
    # p (Megatron's interleaved schedule; Qi et al. 2024 Sec. 2), ZB-H2 its 2p - 1 warm-up forwards. With one
    # micro-batch the stages run one after another; only a stage's deferred weight-gradient pass overlaps the next
    # stage's backward, so a zero-bubble schedule saves (p - 1) t_W and interleaving nothing. Between those points
    # fathom fills the saving in linearly with the micro-batches (its own interpolation, monotone in m).
    wgrad_share = layers_wgrad / np.maximum(layers_fwd + layers_bwd, 1e-30)
    fill_p = np.clip((m - 1.0) / np.maximum(pp - 1.0, 1.0), 0.0, 1.0)
    fill_2p = np.clip((m - pp) / np.maximum(pp - 1.0, 1.0), 0.0, 1.0)
    zb_one = (pp - 1.0) * (1.0 - wgrad_share)
    zb1_units = (1.0 - fill_p) * zb_one + fill_p * (pp - 1.0) * np.minimum(fwd_share, 1.0 - wgrad_share)
    zb2_units = (1.0 - fill_2p) * zb1_units + fill_2p * (pp - 1.0) * zb2_share
    bubble_units = np.select(
        [
            p.schedule == SCHEDULES.index("interleaved"),
            p.schedule == SCHEDULES.index("zero-bubble"),
            p.schedule == SCHEDULES.index("zero-bubble-2p"),
        ],
        [(pp - 1.0) * (1.0 - fill_p * (1.0 - 1.0 / chunks)), zb1_units, zb2_units],
        pp - 1.0,
    )
    bubble = bubble_units * (stage_avg + zero3_exposed)
    auto = np.isin(p.schedule, [SCHEDULES.index("zero-bubble-auto"), SCHEDULES.index("zero-bubble-auto-2p")])
    if auto.any():
        layer = (layer_fwd, layer_bwd - c.gemm_wgrad, c.gemm_wgrad)
        head_passes = (c.head_fwd, c.head_bwd - c.head_wgrad, c.head_wgrad)
        scheduled = _auto_bubble(p, auto, m, L, layer, head_passes, p2p, stage_max, ends)
        # The handcrafted ZB-H1 / ZB-H2 is one schedule the automatic search covers at the same memory: never worse.
        handcrafted = np.where(p.schedule == SCHEDULES.index("zero-bubble-auto"), zb1_units, zb2_units) * (
            stage_avg + zero3_exposed
        )
        bubble = np.where(auto, np.minimum(scheduled, handcrafted), bubble)
    # DP: ZeRO 0-2 reduction hides under the last micro-batch's backward when overlap is on.
    hideable = np.where(p.overlap_grad_reduce, layers_bwd, 0.0)
    dp_exposed = np.maximum(dp.per_step - hideable, dp.per_step / np.maximum(L, 1.0))
    # Per-chunk ZeRO gathers before each chunk's forward and reduce-scatters after its backward overlap the whole
    # step; the first gather and the last reduce-scatter stay exposed, 1/(2 vpp) of the traffic (MegaScale
    # Sec. 3.2), unless the step's compute is too short to cover the rest.
    per_chunk = np.maximum(dp.per_step / (2.0 * chunks), dp.per_step - m * (layers_fwd + layers_bwd))
    chunked = p.overlap_param_gather & (p.zero >= 1) & (p.zero <= 2)
    dp_exposed = np.where(chunked, np.minimum(dp_exposed, per_chunk), dp_exposed)
    dp_exposed = np.where(dp.per_step > 0, dp_exposed, 0.0)
    opt_bytes = pb.step_bytes_per_param
    opt_shard = np.where(p.zero >= 1, (p.dp * p.cp).astype(float), 1.0)
    opt_params = pb.trainable / opt_shard
    opt_traffic = opt_params * opt_bytes + pb.galore_extra / opt_shard
    optimizer = memory_bound_s(_streaming_at(cluster, cluster.device.efficiency.optimizer), opt_traffic, 4)
    share_16 = cluster.device.efficiency.optimizer_16bit  # the step on 16-bit parameters, where measured
    if share_16 is not None:
        pure_16bit = ~p.master_weights & (p.precision != TRAIN_PRECISIONS.index("fp32"))
        optimizer = np.where(pure_16bit, memory_bound_s(_streaming_at(cluster, share_16), opt_traffic, 4), optimizer)
    optimizer = optimizer + galore_step_s(model, cluster.device, p, s) / opt_shard
    host = opt_params * opt_bytes / HOST_OPTIMIZER_BW + opt_params * 6.0 / cluster.device.host_link_bytes_per_s
    nvme_bw = cluster.system.nvme_bw_GBps * 1e9 / cluster.system.gpus_per_node
    optimizer = np.select([p.offload == 1, p.offload == 2], [host, host + opt_params * 24.0 / nvme_bw], optimizer)
    optimizer = np.where(galore_plans(p), m * optimizer, optimizer)  # per-layer updates in every backward pass
    return TimeBreakdown(
        gemm=m * (L * (c.gemm_fwd + c.gemm_bwd) + head_stage),
        attention=m * L * (c.attn_fwd + c.attn_bwd),
        memory_bound=m * L * (c.other_fwd + c.other_bwd),
        recompute=m * L * (recompute_compute + recompute_comm),
        tp_comm=m * L * (comm.tp_fwd + comm.tp_bwd),
        cp_comm=m * L * (comm.cp_fwd + comm.cp_bwd),
        ep_comm=m * L * (ep_fwd + ep_bwd),
        pp_comm=m * p2p,
        pipeline_bubble=bubble,
        host_overhead=m * L * launch_bound,
        dp_comm=dp_exposed + m * zero3_exposed,
        optimizer=optimizer,
        activation_offload_wait=m * offload_wait,
    )
