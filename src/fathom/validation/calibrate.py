"""Fit the one software-stack constant of the efficiency model: the host time to issue one op.

Small layers are CPU-bound: the GPU waits for Python/PyTorch to issue kernels. vTrain's 1,440 measured
iterations (Bang et al. MICRO 2024) span tiny to GEMM-bound layers on one 8xA100 node, which pins this cost
down. The fit is a grid search minimising the mean absolute log error of the step time; everything else in the
model stays at its datasheet or microbenchmark value. Rows are priced in vectorised groups (one model shape
and GPU count per group), so a whole fit takes seconds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.specs.hardware import Cluster
from fathom.training.estimator import estimate_arrays
from fathom.training.plans import PlanArrays
from fathom.validation.runs import load_runs
from fathom.validation.training import row_model, row_plan


@dataclass(frozen=True)
class HostFit:
    host_op_us: float
    mean_abs_error_pct: float
    rows: int


def _groups(which: str):
    groups: dict[tuple, list] = defaultdict(list)
    for row in load_runs(which):
        if row.complete and row["metric"] == "step_time_s":
            shape = row_model(row).model_dump_json(exclude={"name"})
            key = (row["gpu"], row["system"], row.int("num_gpus"), shape)
            groups[key].append(row)
    for (gpu, system, num_gpus, _), rows in groups.items():
        cluster = resolve_cluster(gpu, num_gpus, system=system or None)
        plans = PlanArrays.from_plans([row_plan(r) for r in rows])
        yield row_model(rows[0]), cluster, plans, np.array([r.value for r in rows])


def _with_host(cluster: Cluster, host_op_us: float) -> Cluster:
    eff = cluster.device.efficiency.model_copy(update={"host_op_us": host_op_us})
    return cluster.model_copy(update={"device": cluster.device.model_copy(update={"efficiency": eff})})


def fit_host_op_us(which: str = "vtrain", grid_us: np.ndarray | None = None) -> HostFit:
    grid = np.arange(0.0, 150.5, 1.0) if grid_us is None else np.asarray(grid_us, dtype=float)
    groups = list(_groups(which))
    best = None
    for value in grid:
        errors = []
        for model, cluster, plans, measured in groups:
            pred = estimate_arrays(model, _with_host(cluster, float(value)), plans).step_time_s
            errors.append(np.abs(np.log(pred / measured)))
        score = float(np.mean(np.concatenate(errors)))
        if best is None or score < best[1]:
            best = (float(value), score, sum(len(e) for e in errors))
    assert best is not None
    return HostFit(host_op_us=best[0], mean_abs_error_pct=100 * (np.exp(best[1]) - 1), rows=best[2])
