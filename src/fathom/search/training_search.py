"""Training plan search: enumerate the space, drop what cannot run or does not fit, rank, explain.

Per GPU count the whole space is priced as arrays in three passes of growing cost: structural validity,
then memory alone (an order of magnitude cheaper than a step time), then the full estimate of the plans that
fit. The few plans shown are re-estimated one by one with ``estimate_training``, so each one's report is
exactly what ``fathom train`` prints for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fathom.costmodel.flops import matmul_params_active
from fathom.errors import FathomInputError
from fathom.search.objectives import Objective
from fathom.search.pareto import training_pareto
from fathom.search.training_report import TIE, RankedPlan, TrainingSearchResult, explain_winner, ranked
from fathom.search.training_space import SearchAxes, enumerate_plans
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan
from fathom.training.estimator import estimate_arrays, estimate_training
from fathom.training.memory import training_memory
from fathom.training.plans import PlanArrays, check_plan, validity
from fathom.training.shapes import plan_shapes

_LAYOUT = ("tp", "pp", "dp", "cp", "ep")
MAX_PARETO = 50


@dataclass
class _Chunk:
    """The plans of one GPU count that survive every filter, with what ranking needs."""

    cluster: Cluster
    plans: PlanArrays
    tokens_per_s: np.ndarray
    peak_bytes: np.ndarray


@dataclass
class _Closest:
    """The best plan that failed a filter: by memory (bytes over the limit) or by time (days over the limit)."""

    excess: float = np.inf
    cluster: Cluster | None = None
    plan: TrainingPlan | None = None

    def offer(self, excess: np.ndarray, missed: np.ndarray, cluster: Cluster, plans: PlanArrays) -> None:
        """Keep the plan that misses by the least among ``plans[missed]`` if it beats the one kept so far."""
        if not missed.any():
            return
        i = int(np.argmin(np.where(missed, excess, np.inf)))
        if excess[i] < self.excess:
            self.excess, self.cluster, self.plan = float(excess[i]), cluster, plans.plan(i)


def search_training(
    model: ModelSpec,
    cluster: Cluster,
    *,
    seq_len: int,
    global_batch: int,
    gpu_counts: list[int] | np.ndarray | None = None,
    objective: str = "throughput",
    tokens: float | None = None,
    max_days: float | None = None,
    top: int = 10,
    memory_headroom: float = 0.0,
    price_per_gpu_hour: float | None = None,
    pareto: bool = False,
    axes: SearchAxes | None = None,
    **fixed,
) -> TrainingSearchResult:
    """Search every plan of the space on ``cluster`` (or on each of ``gpu_counts`` GPUs of its kind).

    ``fixed`` are plan fields every plan shares (precision, optimizer, attention, MoE dispatcher, overlaps).
    """
    start = time.perf_counter()
    if not 0.0 <= memory_headroom < 1.0:
        raise FathomInputError(f"memory_headroom: {memory_headroom} is not a fraction in [0, 1)")
    if top < 1:
        raise FathomInputError("top: must be a positive integer")
    if max_days is not None and (tokens is None or max_days <= 0):
        raise FathomInputError("max_days: needs --tokens and a positive number of days")
    if seq_len < 1 or global_batch < 1:
        raise FathomInputError("seq_len and global_batch: must be positive integers")
    goal = Objective.build(objective, cluster, tokens, price_per_gpu_hour)
    counts = sorted({int(n) for n in (gpu_counts if gpu_counts is not None else [cluster.num_gpus])})
    limit = cluster.device.memory_bytes * (1.0 - memory_headroom)
    scan = _Scan(model, cluster, seq_len, global_batch, axes, fixed, limit, memory_headroom, goal, max_days)
    # With a deadline, GPU counts too small to meet it even at the device's peak are skipped; the largest count
    # is always priced so a miss can show its closest plan. If any priced plan beats the bound, it is not a
    # bound for this estimator after all, and the skipped counts are priced too (the search stays exact).
    hopeless = [n for n in counts[:-1] if max_days is not None and goal.days(_peak_tokens_per_s(scan, n)) > max_days]
    for n in counts:  # a handful of GPU counts; every plan of one count is priced in one vectorised pass
        if n not in hopeless:
            scan.price(n)
    if not scan.bound_holds:
        for n in hopeless:
            scan.price(n)
        hopeless = []
    if scan.valid == 0:
        raise FathomInputError(_no_valid_plan(model, cluster, counts, seq_len, global_batch, axes, fixed))
    chunks, by_memory, by_time = scan.chunks, scan.by_memory, scan.by_time
    shared = dict(tokens=tokens, price_per_gpu_hour=goal.price_per_gpu_hour)
    result = TrainingSearchResult(
        model=model.name,
        gpu=cluster.device.name,
        system=cluster.system.name,
        objective=goal.name,
        objective_unit=goal.unit,
        memory_headroom=memory_headroom,
        gpu_counts=counts,
        skipped_gpu_counts=hopeless,
        space_size=scan.space,
        valid=scan.valid,
        fits_memory=scan.fitting,
        feasible=sum(len(ch.plans) for ch in chunks),
        seconds=0.0,
        plans=[],
    )
    if result.feasible == 0:
        _explain_infeasible(model, result, by_memory, by_time, limit, max_days, goal, shared)
    else:
        _rank(model, result, chunks, goal, top, pareto, shared)
    result.seconds = time.perf_counter() - start
    return result


def _peak_tokens_per_s(scan: _Scan, n: int) -> float:
    """No plan on ``n`` GPUs trains faster than every GPU at the device's highest peak spending nothing but
    the 6 FLOPs per active matmul parameter and token (Kaplan et al. 2020) that every plan must execute."""
    peak = max(scan.cluster.device.peak_tflops.values()) * 1e12
    return n * peak / (6.0 * matmul_params_active(scan.model))


@dataclass
class _Scan:
    """Prices the plans of one GPU count at a time and keeps what ranking and "closest miss" need."""

    model: ModelSpec
    cluster: Cluster
    seq_len: int
    global_batch: int
    axes: SearchAxes | None
    fixed: dict
    limit: float
    headroom: float
    goal: Objective
    max_days: float | None
    space: int = 0
    valid: int = 0
    fitting: int = 0
    bound_holds: bool = True
    chunks: list[_Chunk] = field(default_factory=list)
    by_memory: _Closest = field(default_factory=_Closest)
    by_time: _Closest = field(default_factory=_Closest)

    def price(self, n: int) -> None:
        model, c = self.model, self.cluster.model_copy(update={"num_gpus": n})
        plans = enumerate_plans(model, c, self.seq_len, self.global_batch, self.axes, **self.fixed)
        self.space += len(plans)
        plans = _subset(plans, validity(model, c, plans))
        self.valid += len(plans)
        # Memory alone first: an order of magnitude cheaper than a step time, and most plans fail it.
        peak = training_memory(model, c, plans, plan_shapes(model, c, plans)).total
        fits = peak <= self.limit
        self.by_memory.offer(peak - self.limit, ~fits, c, plans)
        plans = _subset(plans, fits)
        est = estimate_arrays(model, c, plans, self.headroom)
        self.bound_holds &= bool(np.all(est.tokens_per_s <= _peak_tokens_per_s(self, n)))
        keep = est.fits
        self.fitting += int(keep.sum())
        if self.max_days is not None:
            days = self.goal.days(est.tokens_per_s)
            self.by_time.offer(days - self.max_days, keep & (days > self.max_days), c, plans)
            keep &= days <= self.max_days
        self.chunks.append(_Chunk(c, _subset(plans, keep), est.tokens_per_s[keep], est.peak_memory_bytes[keep]))


def _subset(plans: PlanArrays, mask: np.ndarray) -> PlanArrays:
    """The plans where ``mask`` holds (no copy when it holds everywhere, the usual case for validity)."""
    return plans if bool(mask.all()) else plans.take(mask)


def _columns(chunks: list[_Chunk], goal: Objective) -> dict[str, np.ndarray]:
    """The surviving plans of every GPU count as flat arrays, with where each came from."""
    gpus = np.concatenate([np.full(len(ch.plans), ch.cluster.num_gpus) for ch in chunks])
    tps = np.concatenate([ch.tokens_per_s for ch in chunks])
    out = {
        "chunk": np.concatenate([np.full(len(ch.plans), i) for i, ch in enumerate(chunks)]),
        "local": np.concatenate([np.arange(len(ch.plans)) for ch in chunks]),
        "gpus": gpus,
        "tokens_per_s": tps,
        "peak": np.concatenate([ch.peak_bytes for ch in chunks]),
        "score": goal.score(tps, gpus),
    }
    for name in (*_LAYOUT, "vpp", "zero"):
        out[name] = np.concatenate([getattr(ch.plans, name) for ch in chunks])
    return out


def _rounded(x: np.ndarray) -> np.ndarray:
    """``x`` to about nine significant digits, so float noise between equal plans does not decide a tie."""
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(mantissa * 2.0**30) / 2.0**30, exponent)


def _rank(model, result, chunks, goal, top, pareto, shared) -> None:
    col = _columns(chunks, goal)
    # Best objective first (equal to 1e-9 counts as a tie); ties go to fewer GPUs, then to more free memory,
    # then to the simpler plan (no CP, less TP, shallower pipeline, lower ZeRO stage).
    plan_keys = [col[k] for k in ("zero", "vpp", "pp", "tp", "ep", "cp")]
    order = np.lexsort((*plan_keys, col["peak"], col["gpus"], _rounded(col["score"])))

    def report(i: int, rank: int | None = None) -> RankedPlan:
        ch = chunks[int(col["chunk"][i])]
        plan = ch.plans.plan(int(col["local"][i]))
        est = estimate_training(model, ch.cluster, plan, **shared)
        return ranked(est, rank, float(goal.value(est.tokens_per_s, est.num_gpus)))

    result.plans = [report(int(i), r + 1) for r, i in enumerate(order[:top])]
    # Compare the winner with plans that are really worse: ties (equivalent plans) are only counted.
    score = col["score"][order]
    tied = np.abs(score - score[0]) <= TIE * np.abs(score[0])
    layout = np.column_stack([col["gpus"]] + [col[k] for k in _LAYOUT])[order]
    other_layout = np.any(layout != layout[0], axis=1)

    def first(mask: np.ndarray) -> RankedPlan | None:
        hits = np.flatnonzero(mask & ~tied)
        return report(int(order[hits[0]]), int(hits[0]) + 1) if len(hits) else None

    runner_up = first(np.ones(len(order), dtype=bool))
    other_shape = first(other_layout)
    if runner_up is not None and other_shape is not None and runner_up.rank == other_shape.rank:
        other_shape = runner_up
    result.why = explain_winner(result.plans[0], runner_up, other_shape, goal, ties=int(tied.sum()) - 1)
    if pareto:
        cost = goal.price_per_gpu_hour or 1.0  # without a price, GPU-hours rank the same way
        tps, gpus = col["tokens_per_s"][order], col["gpus"][order]  # in rank order: ties keep the better-ranked
        front = order[training_pareto(tps, gpus * cost / tps, gpus)]
        front = front[np.argsort(col["gpus"][front], kind="stable")][:MAX_PARETO]
        result.pareto = [report(int(i)) for i in front]


def _explain_infeasible(model, result, by_memory, by_time, limit, max_days, goal, shared) -> None:
    if result.fits_memory and by_time.cluster is not None:
        est = estimate_training(model, by_time.cluster, by_time.plan, **shared)
        result.closest = ranked(est, None, float(goal.value(est.tokens_per_s, est.num_gpus)))
        result.message = (
            f"no plan trains {goal.tokens:.3g} tokens within {max_days:g} days; the fastest that fits takes "
            f"{by_time.excess + max_days:.1f} days ({by_time.excess:.1f} days over)"
        )
        return
    if by_memory.cluster is None:
        result.message = "no plan fits in memory"
        return
    est = estimate_training(model, by_memory.cluster, by_memory.plan, **shared)
    result.closest = ranked(est, None, float(goal.value(est.tokens_per_s, est.num_gpus)))
    kept = f" with {result.memory_headroom:.0%} of memory kept free" if result.memory_headroom else ""
    result.message = (
        f"no plan fits in memory{kept}: the closest needs {est.memory.peak_gib:.1f} GiB per GPU, "
        f"{by_memory.excess / GIB:.1f} GiB over the {limit / GIB:.1f} GiB limit"
    )


def _no_valid_plan(model, cluster, counts, seq_len, global_batch, axes, fixed) -> str:
    """Why no plan is valid: the first rule that the simplest plan allowed by the given axes breaks."""
    first = {k: getattr(axes, k)[0] for k in ("tp", "pp", "cp") if axes is not None and getattr(axes, k)}
    n = counts[-1]
    degrees = first.get("tp", 1) * first.get("pp", 1) * first.get("cp", 1)
    plan = TrainingPlan(seq_len=seq_len, global_batch=global_batch, dp=max(n // degrees, 1), **first, **fixed)
    try:
        check_plan(model, cluster.model_copy(update={"num_gpus": n}), plan)
    except FathomInputError as exc:
        return f"no valid plan in the search space: {exc}"
    return "no valid plan in the search space: the axis candidates given exclude every plan"
