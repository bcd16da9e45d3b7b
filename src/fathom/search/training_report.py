"""What a training search returns (a JSON contract) and the plain-words reason the winner wins."""

from __future__ import annotations

from pydantic import BaseModel

from fathom.search.objectives import Objective
from fathom.training.result import TrainingEstimate

TIE = 1e-6  # relative difference below which two plans count as equally good
PLAN_KEYS = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "micro_batch", "recompute", "schedule", "offload")


class RankedPlan(TrainingEstimate):
    """One plan of the search: its plan fields at the top level, then every ``fathom train`` JSON key."""

    rank: int | None = None  # 1 = best; None for plans shown for another reason (Pareto front, closest miss)
    objective_value: float
    tp: int
    pp: int
    dp: int
    cp: int
    ep: int
    vpp: int
    zero: int
    micro_batch: int
    recompute: str
    schedule: str
    offload: str


class TrainingSearchResult(BaseModel):
    model: str
    gpu: str
    system: str
    objective: str
    objective_unit: str
    memory_headroom: float
    gpu_counts: list[int]
    skipped_gpu_counts: list[int] = []  # too few GPUs to meet --max-days even at peak rate: not priced
    space_size: int  # plans enumerated
    valid: int  # structurally valid (all of the space unless axes were forced)
    fits_memory: int  # fit in memory with the headroom kept free
    feasible: int  # fit, and finish within --max-days when given
    seconds: float
    plans: list[RankedPlan]  # best first
    why: list[str] = []
    pareto: list[RankedPlan] | None = None
    closest: RankedPlan | None = None  # when nothing is feasible: the plan that misses by the least
    message: str | None = None


def ranked(est: TrainingEstimate, rank: int | None, objective_value: float) -> RankedPlan:
    fields = {k: est.plan[k] for k in PLAN_KEYS}
    return RankedPlan(**est.model_dump(), **fields, rank=rank, objective_value=objective_value)


def _percent(x: float) -> str:
    return f"{x:.1%}" if abs(x) >= 0.01 else f"{x * 100:.2g}%"


def _number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def describe(p: RankedPlan) -> str:
    """A plan's layout in one short line."""
    parts = [f"{p.num_gpus}:", f"tp{p.tp} pp{p.pp} dp{p.dp}"]
    parts += [f"{k}{getattr(p, k)}" for k in ("cp", "ep", "vpp") if getattr(p, k) > 1]
    parts += [f"zero{p.zero}", f"mb{p.micro_batch}", f"rc={p.recompute}"]
    if p.pp > 1:
        parts.append(p.schedule + (" balanced-ends" if p.plan.get("balance_pipeline_ends") else ""))
    if p.offload != "none":
        parts.append(f"offload={p.offload}")
    return " ".join(parts)


def _advantage(best: RankedPlan, other: RankedPlan, goal: Objective) -> str:
    if goal.higher_is_better:
        gain = best.objective_value / other.objective_value - 1.0
        text = f"{_percent(gain)} more throughput"
    else:
        gain = 1.0 - best.objective_value / other.objective_value
        text = f"{_percent(gain)} less {goal.name}"
    return "a tie, ranked first as the simpler plan" if abs(gain) < TIE else text


def _differences(best: RankedPlan, other: RankedPlan) -> str:
    """Plan fields that differ, and the step-time components that moved most (same global batch per step)."""
    fields = [
        f"{k} {getattr(other, k)}->{getattr(best, k)}" for k in PLAN_KEYS if getattr(best, k) != getattr(other, k)
    ]
    if best.num_gpus != other.num_gpus:
        fields.insert(0, f"GPUs {other.num_gpus}->{best.num_gpus}")
    deltas = {k: best.time_breakdown[k] - other.time_breakdown.get(k, 0.0) for k in best.time_breakdown}
    moved = sorted(deltas, key=lambda k: -abs(deltas[k]))[:3]
    parts = [
        f"{k.replace('_', ' ')} {abs(deltas[k]):.3g} s {'less' if deltas[k] < 0 else 'more'}"
        for k in moved
        if abs(deltas[k]) > 1e-6 * other.step_time_s
    ]
    step = f"step {other.step_time_s:.3g} s -> {best.step_time_s:.3g} s"
    memory = f"memory {other.memory.peak_gib:.1f} -> {best.memory.peak_gib:.1f} GiB"
    return f"changes {', '.join(fields) or 'nothing'}; {step} ({', '.join(parts) or 'no component moved'}); {memory}"


def explain_winner(
    best: RankedPlan, runner_up: RankedPlan | None, other_shape: RankedPlan | None, goal: Objective, ties: int = 0
) -> list[str]:
    """Why the winner wins: what it spends its step on, and what it gains over the closest alternatives."""
    share = best.time_breakdown[best.bottleneck] / best.step_time_s
    value = "" if goal.higher_is_better else f"{_number(best.objective_value)} {goal.unit}, "
    lines = [
        f"best: {describe(best)}: {value}{best.tokens_per_s:,.0f} tokens/s, "
        f"MFU {best.mfu:.1%}, {best.memory.peak_gib:.1f} of {best.memory.capacity_gib:.0f} GiB; "
        f"its step is {share:.0%} {best.bottleneck.replace('_', ' ')}"
    ]
    if ties:
        lines.append(
            f"{ties} other plan{'s' if ties > 1 else ''} tie with it (within {TIE:.0e}); ties go to fewer GPUs, "
            "then more free memory, then the simpler plan"
        )
    if runner_up is not None:
        also = ", also the best other layout" if other_shape is runner_up else ""
        lines.append(
            f"vs the next-best plan (#{runner_up.rank}{also}: {describe(runner_up)}): "
            f"{_advantage(best, runner_up, goal)}; {_differences(best, runner_up)}"
        )
    if other_shape is not None and other_shape is not runner_up:
        lines.append(
            f"vs the best other layout (#{other_shape.rank}: {describe(other_shape)}): "
            f"{_advantage(best, other_shape, goal)}; {_differences(best, other_shape)}"
        )
    return lines
