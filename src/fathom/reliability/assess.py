"""A run's fault-tolerance figures: failures, checkpoint cost, restart, the optimal interval and goodput.

Failures are exponential with a cluster MTBF of the per-GPU MTBF divided by the GPU count (any GPU's failure
stops a synchronous job). The default per-GPU MTBF comes from Llama 3 pre-training: 419 unexpected
interruptions in a 54-day snapshot on 16,384 H100s (Dubey et al. 2024, "The Llama 3 Herd of Models", Sec. 3.3.4)
-> 54 x 24 x 16,384 / 419 = 50,677 GPU-hours. The default restart (detect, reschedule, re-initialise) of
10 minutes is a fathom default with no measurement behind it; set ``--restart-min``. An asynchronous or
in-memory checkpoint is safe only once persisted: a failure in that window loses one interval more, which adds
the persisting time to the expected loss per failure (counted with the restart time in Daly's formula), and the
next checkpoint cannot start before the previous one is persisted.
"""

from __future__ import annotations

import math

import numpy as np

from fathom.errors import FathomInputError
from fathom.reliability.checkpoint import checkpoint_cost
from fathom.reliability.interval import daly_interval, goodput, young_interval
from fathom.reliability.report import ReliabilityReport
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan

LLAMA3_MTBF_GPU_HOURS = 54 * 24 * 16384 / 419
DEFAULT_RESTART_MIN = 10.0


def assess_reliability(
    model: ModelSpec,
    cluster: Cluster,
    plan: TrainingPlan,
    *,
    step_time_s: float,
    run_time_s: float | None = None,
    checkpoint: str = "async",
    mtbf_hours: float | None = None,
    storage_bw_GBps: float | None = None,
    restart_min: float | None = None,
    interval_min: float | None = None,
) -> ReliabilityReport:
    mtbf_gpu = LLAMA3_MTBF_GPU_HOURS if mtbf_hours is None else mtbf_hours
    restart = DEFAULT_RESTART_MIN if restart_min is None else restart_min
    for flag, value in (("--mtbf-hours", mtbf_gpu), ("--checkpoint-interval", interval_min)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise FathomInputError(f"{flag}: {value} must be a positive number")
    if not (math.isfinite(restart) and restart >= 0):
        raise FathomInputError(f"--restart-min: {restart} must be >= 0")
    cost = checkpoint_cost(model, cluster, plan, checkpoint, storage_bw_GBps)
    mtbf_s = mtbf_gpu * 3600.0 / cluster.num_gpus
    restart_s = restart * 60.0 + cost.load_s
    loss_s = restart_s + cost.background_s
    young = float(young_interval(cost.blocking_s, mtbf_s))
    daly = max(float(daly_interval(cost.blocking_s, mtbf_s)), cost.background_s)
    tau = daly if interval_min is None else max(interval_min * 60.0, cost.background_s)
    with np.errstate(over="ignore"):  # exp(restart / MTBF) overflows when failures outpace restarts
        good = float(goodput(tau, cost.blocking_s, loss_s, mtbf_s))
    if not (math.isfinite(good) and good > 0.0):  # the expected time per interval is infinite: no progress
        raise FathomInputError(
            f"--mtbf-hours: {mtbf_gpu:g} h per GPU gives the {cluster.num_gpus}-GPU cluster a failure every "
            f"{mtbf_s:,.3g} s, against {loss_s:,.3g} s to restart and reload: the run would never make progress"
        )
    failures = days = None
    if run_time_s is not None:
        wall = run_time_s / good
        failures, days = wall / mtbf_s, wall / 86400.0
    return ReliabilityReport(
        checkpoint=checkpoint,
        mtbf_hours_per_gpu=mtbf_gpu,
        cluster_mtbf_hours=mtbf_s / 3600.0,
        checkpoint_gib_total=cost.total_bytes / GIB,
        checkpoint_gib_per_gpu=cost.per_gpu_bytes / GIB,
        gpu_to_host_s=cost.gpu_to_host_s,
        storage_write_s=cost.storage_write_s,
        peer_copy_s=cost.peer_copy_s,
        storage_bw_GBps=cost.storage_bw_GBps,
        blocking_s=cost.blocking_s,
        background_s=cost.background_s,
        restart_s=restart_s,
        checkpoint_interval_s=tau,
        checkpoint_interval_steps=tau / step_time_s,
        young_interval_s=young,
        daly_interval_s=daly,
        interval_is_optimal=interval_min is None,
        goodput=good,
        host_memory_fits=cost.host_memory_fits,
        expected_failures=failures,
        run_days_with_failures=days,
    )
