"""The JSON-ready fault-tolerance report of one training estimate (the ``reliability`` key)."""

from __future__ import annotations

from pydantic import BaseModel


class ReliabilityReport(BaseModel):
    checkpoint: str  # blocking | async | in-memory
    mtbf_hours_per_gpu: float
    cluster_mtbf_hours: float
    checkpoint_gib_total: float  # weights + optimizer states of the whole model
    checkpoint_gib_per_gpu: float  # each GPU's shard (fully parallel save)
    gpu_to_host_s: float
    storage_write_s: float  # all shards to storage at the aggregate storage bandwidth
    peer_copy_s: float | None  # in-memory: one shard to a peer node's host memory
    storage_bw_GBps: float
    blocking_s: float  # training stalls this long per checkpoint
    background_s: float  # persisting after training resumes (the checkpoint is not yet safe)
    restart_s: float  # detect + reschedule + load the last checkpoint
    checkpoint_interval_s: float  # compute time between checkpoints
    checkpoint_interval_steps: float
    young_interval_s: float
    daly_interval_s: float
    interval_is_optimal: bool
    goodput: float  # fraction of wall-clock time doing useful (kept) training work
    host_memory_fits: bool | None  # in-memory: own + peer shard fit the host memory of a node
    expected_failures: float | None = None  # over the run (with --tokens)
    run_days_with_failures: float | None = None
