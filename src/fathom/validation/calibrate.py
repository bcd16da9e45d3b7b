"""Fit the two in-training constants of the efficiency model on measured single-node iterations.

- ``host_op_us``: small layers are CPU-bound, the GPU waiting for Python/PyTorch to issue kernels;
- ``gemm_sustained``: GEMMs inside a running step keep only part of their isolated microbenchmark rate.
vTrain's 1,440 measured iterations (Bang et al. MICRO 2024) span tiny to GEMM-bound layers on one 8xA100 node,
which pins both down. The fit minimises the mean absolute log error of the step time over a grid; everything
else stays at its datasheet or microbenchmark value, and every other dataset is out of sample.
Rows are priced in vectorised groups (one model shape
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
class StackFit:
    """The fitted constants and how well they explain the data."""

    host_op_us: float
    gemm_sustained: float
    mean_abs_error_pct: float
    rows: int


def _groups(which: str):
    groups: dict[tuple, list] = defaultdict(list)
    models = {}
    for row in load_runs(which):
        if row.complete and row["metric"] == "step_time_s":
            model = row_model(row)
            shape = model.model_dump_json(exclude={"name"})
            models.setdefault(shape, model)
            groups[(row["gpu"], row["system"], row.int("num_gpus"), shape)].append(row)
    for (gpu, system, num_gpus, shape), rows in groups.items():
        cluster = resolve_cluster(gpu, num_gpus, system=system or None)
        plans = PlanArrays.from_plans([row_plan(r) for r in rows])
        yield models[shape], cluster, plans, np.array([r.value for r in rows])


def _with_constants(cluster: Cluster, host_op_us: float, gemm_sustained: float) -> Cluster:
    eff = cluster.device.efficiency.model_copy(update={"host_op_us": host_op_us, "gemm_sustained": gemm_sustained})
    return cluster.model_copy(update={"device": cluster.device.model_copy(update={"efficiency": eff})})


def _score(groups, host_op_us: float, gemm_sustained: float) -> tuple[float, int]:
    errors = []
    for model, cluster, plans, measured in groups:
        pred = estimate_arrays(model, _with_constants(cluster, host_op_us, gemm_sustained), plans).step_time_s
        errors.append(np.abs(np.log(pred / measured)))
    flat = np.concatenate(errors)
    return float(np.mean(flat)), int(flat.size)


def _best(groups, hosts, sustains):
    return min((_score(groups, h, g)[0], float(h), float(g)) for h in hosts for g in sustains)


def fit_stack_constants(which: str = "vtrain") -> StackFit:
    """Least mean absolute log error over a grid (1 us x 0.01), coarse first, then fine around the best point."""
    groups = list(_groups(which))
    _, host, sustain = _best(groups, np.arange(20.0, 101.0, 4.0), np.arange(0.70, 1.001, 0.04))
    hosts = np.arange(max(host - 4.0, 0.0), host + 4.5, 1.0)
    sustains = np.round(np.arange(max(sustain - 0.06, 0.5), min(sustain + 0.065, 1.0), 0.01), 2)
    score, host, sustain = _best(groups, hosts, sustains)
    _, rows = _score(groups, host, sustain)
    return StackFit(host_op_us=host, gemm_sustained=sustain, mean_abs_error_pct=100 * (np.exp(score) - 1), rows=rows)


def is_local_optimum(which: str, host_op_us: float, gemm_sustained: float, tolerance: float = 5e-4) -> bool:
    """True when no neighbour on the fit grid explains the data better by more than ``tolerance``."""
    groups = list(_groups(which))
    here, _ = _score(groups, host_op_us, gemm_sustained)
    best, _, _ = _best(
        groups,
        (host_op_us - 1, host_op_us, host_op_us + 1),
        (gemm_sustained - 0.01, gemm_sustained, gemm_sustained + 0.01),
    )
    return here <= best + tolerance
