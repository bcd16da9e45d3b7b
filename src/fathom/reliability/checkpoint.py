"""Checkpoint size from the plan and the time to write it along GPU -> host -> storage (or a peer's memory).

A checkpoint holds the 16-bit weights and the optimizer states (fp32 master weights and moments; the bytes per
parameter of ``fathom.training.memory``). Each GPU writes its own shard in parallel (Megatron-LM distributed
checkpointing, PyTorch DCP), so one shard crosses each GPU's host link and the whole checkpoint crosses the
storage system's aggregate bandwidth. Modes:
- ``blocking``: training waits for the whole write (GPU -> host -> storage).
- ``async`` (DataStates-LLM, Maurya et al. HPDC'24; Check-N-Run): only the GPU -> host snapshot blocks; the
  flush to storage overlaps the next steps, and a failure before it ends falls back to the previous checkpoint.
- ``in-memory`` (Gemini, Wang et al. SOSP'23): the snapshot goes to host memory and one copy to a peer node's
  host memory over the scale-out network; restarts read from a peer instead of storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from fathom.errors import FathomInputError
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan
from fathom.training.memory import OPTIMIZER_STATE_BYTES

CHECKPOINT_MODES: tuple[str, ...] = ("blocking", "async", "in-memory")


@dataclass(frozen=True)
class CheckpointCost:
    total_bytes: float
    per_gpu_bytes: float
    gpu_to_host_s: float
    storage_write_s: float
    peer_copy_s: float | None
    blocking_s: float
    background_s: float
    load_s: float  # reading the last checkpoint back onto the GPUs at restart
    storage_bw_GBps: float
    host_memory_fits: bool | None


def checkpoint_bytes(model: ModelSpec, plan: TrainingPlan) -> float:
    """Weights (2 bytes, 4 in fp32 training) + optimizer states (master weights included) of every parameter."""
    fp32 = plan.precision == "fp32"
    state = OPTIMIZER_STATE_BYTES[plan.optimizer] - (4.0 if fp32 else 0.0)
    return float(model.num_params) * ((4.0 if fp32 else 2.0) + state)


def default_storage_bw(cluster: Cluster) -> float:
    """Aggregate GB/s when none is given: every node writing to its local NVMe (the system's ``nvme_bw_GBps``)."""
    nodes = max(1, -(-cluster.num_gpus // cluster.system.gpus_per_node))
    return nodes * cluster.system.nvme_bw_GBps


def checkpoint_cost(
    model: ModelSpec, cluster: Cluster, plan: TrainingPlan, mode: str, storage_bw_GBps: float | None
) -> CheckpointCost:
    if mode not in CHECKPOINT_MODES:
        raise FathomInputError(f"--checkpoint: unknown mode {mode!r} (valid: {', '.join(CHECKPOINT_MODES)})")
    if storage_bw_GBps is not None and not storage_bw_GBps > 0:
        raise FathomInputError(f"--storage-bw: {storage_bw_GBps} must be a positive GB/s figure")
    bw = storage_bw_GBps if storage_bw_GBps is not None else default_storage_bw(cluster)
    total = checkpoint_bytes(model, plan)
    shard = total / cluster.num_gpus
    d2h = shard / cluster.device.host_link_bytes_per_s
    storage = total / (bw * 1e9)
    peer = fits = None
    if mode == "in-memory":
        peer = shard / cluster.system.inter_bytes_per_s
        per_node = 2.0 * shard * min(cluster.system.gpus_per_node, cluster.num_gpus)  # own + a peer's copy
        fits = per_node <= cluster.system.host_memory_gib * GIB
    blocking = d2h + storage if mode == "blocking" else d2h
    background = {"blocking": 0.0, "async": storage, "in-memory": peer or 0.0}[mode]
    load = d2h + (peer if mode == "in-memory" else storage)
    return CheckpointCost(total, shard, d2h, storage, peer, blocking, background, load, bw, fits)
