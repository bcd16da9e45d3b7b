"""``fathom validate energy``: predict published training footprints from their GPU-hours, GPU, PUE and grid.

Per row: fathom estimates one step of the row's plan, the phase-aware power model turns the step's breakdown
into an average board power per GPU (plus the host's share for rows that count whole servers), and
``energy = GPU-hours x power x PUE`` (PUE only where the published figure includes it); CO2e multiplies by the
row's grid intensity. The error is ``(predicted - published) / published``. Nothing is fitted per row.
A row's plan is the published one, the published layout with the knobs the source leaves out chosen by fathom
(``published-search``), or fathom's own throughput-best plan (``search``); see ``data/ENERGY_SOURCES.md``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.energy.carbon import operational_co2e_t
from fathom.energy.power import power_profile, step_power
from fathom.errors import FathomInputError
from fathom.search.training_space import divisors
from fathom.specs.plan import RECOMPUTES, TrainingPlan
from fathom.training.estimator import estimate_arrays, estimate_training
from fathom.training.plans import PlanArrays, validity
from fathom.validation.summary import error_summary

PLAN_SOURCES = ("published", "published-search", "search")


@dataclass(frozen=True)
class EnergyCheck:
    row_id: str
    source: str
    model: str
    gpu: str
    gpu_hours: float | None
    scope: str
    plan: str
    avg_power_w: float | None  # per GPU, board (+ host share for server rows)
    tdp_w: float | None
    tflops_per_gpu: float | None  # model TFLOPs/s per GPU of the plan whose phase mix sets the power
    published_tflops_per_gpu: float | None  # the source's achieved throughput, where it gives one
    published_mwh: float
    predicted_mwh: float | None
    error_pct: float | None
    published_co2e_t: float
    predicted_co2e_t: float | None
    co2e_error_pct: float | None
    skipped: str | None = None


def load_footprints() -> list[dict[str, str]]:
    text = resources.files("fathom.validation").joinpath("data", "energy_footprints.csv").read_text(encoding="utf-8")
    return [dict(r) for r in csv.DictReader(text.splitlines())]


def _breakdown(row: dict[str, str], model, cluster) -> tuple[dict[str, float], str, float]:
    """The step-time breakdown of the row's plan (published, published layout with fathom's knobs, or searched),
    a description of the plan, and its model TFLOPs/s per GPU."""
    source = row["plan_source"]
    if source == "search":
        from fathom.search.training_search import search_training

        best = search_training(model, cluster, seq_len=int(row["seq_len"]), global_batch=int(row["global_batch"]),
                               top=1, precision=row["precision"]).plans[0]  # fmt: skip
        p = best.plan
        text = f"search: tp{p['tp']} pp{p['pp']} cp{p['cp']} zero{p['zero']} {p['recompute']}"
        return best.time_breakdown, text, float(best.tflops_per_gpu)
    if source == "published-search":
        plan = best_plan_for_layout(row, model, cluster)
        text = (f"published layout tp{plan.tp} pp{plan.pp} cp{plan.cp} {plan.schedule}, fathom's knobs: "
                f"vpp{plan.vpp} mb{plan.micro_batch} zero{plan.zero} {plan.recompute}")  # fmt: skip
        est = estimate_training(model, cluster, plan)
        return est.time_breakdown, text, est.tflops_per_gpu
    if source != "published":
        raise FathomInputError(f"plan_source: {source!r} (row {row['id']}) is not one of {', '.join(PLAN_SOURCES)}")
    plan = _plan(row)
    text = f"published: tp{plan.tp} pp{plan.pp} cp{plan.cp} vpp{plan.vpp} {plan.recompute}"
    est = estimate_training(model, cluster, plan)
    return est.time_breakdown, text, est.tflops_per_gpu


def _candidates(row: dict[str, str], name: str, default: list) -> list:
    """The row's value of a knob when the source states it, else every candidate fathom tries."""
    value = row[name].strip()
    return [type(default[0])(value)] if value else default


def best_plan_for_layout(row: dict[str, str], model, cluster) -> TrainingPlan:
    """Fathom's throughput-best plan among those that fit memory, with the source's TP/PP/CP/DP and schedule.

    The knobs the source leaves blank (interleaving depth, micro-batch, ZeRO stage, recomputation) are searched.
    Unlike ``fathom.search`` this allows interleaving over uneven stages: the estimator prices the fullest stage
    (``ceil(layers / pp)`` layers), and the depths tried split that stage evenly. Dubey et al. 2024 (Llama 3,
    Sec. 3.3.2) run such a schedule: fewer layers on the first and last stages, any number of micro-batches.
    """
    gpus, tp, pp, cp = (int(row[k]) for k in ("plan_gpus", "tp", "pp", "cp"))
    dp, schedule = gpus // (tp * pp * cp), row["schedule"].strip() or "1f1b"
    per_replica = int(row["global_batch"]) // dp
    ends = row.get("balance_pipeline_ends", "").strip().lower() == "yes"  # the embedding and head take a slot each
    stage = (model.num_layers + 2) // pp if ends else -(-model.num_layers // pp)
    depths = [v for v in range(2, stage + 1) if stage % v == 0] if schedule == "interleaved" else [1]
    fixed = dict(seq_len=int(row["seq_len"]), global_batch=int(row["global_batch"]), tp=tp, pp=pp, cp=cp, dp=dp,
                 schedule=schedule, precision=row["precision"], balance_pipeline_ends=ends)  # fmt: skip
    plans = PlanArrays.grid(
        vpp=_candidates(row, "vpp", depths),
        micro_batch=_candidates(row, "micro_batch", [int(b) for b in divisors(per_replica)]),
        zero=_candidates(row, "zero", [0, 1, 2, 3]),
        recompute=_candidates(row, "recompute", list(RECOMPUTES)),
        **{k: [v] for k, v in fixed.items()},
    )
    plans = plans.take(validity(model, cluster, plans))
    if len(plans) == 0 or not (est := estimate_arrays(model, cluster, plans)).fits.any():
        raise FathomInputError(f"plan_source: no plan with row {row['id']}'s published layout fits in memory")
    return plans.plan(int(np.argmax(np.where(est.fits, est.tokens_per_s, -np.inf))))


def _plan(row: dict[str, str]) -> TrainingPlan:
    gpus, tp, pp, cp, vpp = (int(row[k]) for k in ("plan_gpus", "tp", "pp", "cp", "vpp"))
    return TrainingPlan(
        vpp=vpp,
        schedule=row["schedule"].strip() or ("interleaved" if vpp > 1 else "1f1b"),
        seq_len=int(row["seq_len"]),
        global_batch=int(row["global_batch"]),
        micro_batch=int(row["micro_batch"]),
        tp=tp,
        pp=pp,
        cp=cp,
        dp=gpus // (tp * pp * cp),
        zero=int(row["zero"]),
        recompute=row["recompute"],
        precision=row["precision"],
    )


def check_row(row: dict[str, str]) -> EnergyCheck:
    published, co2e = float(row["energy_mwh"]), float(row["co2e_t"])
    tflops_text = row.get("published_tflops_per_gpu", "").strip()
    published_tflops = float(tflops_text) if tflops_text else None
    common = dict(row_id=row["id"], source=row["source"], model=row["model"], gpu=row["gpu"], scope=row["scope"],
                  published_mwh=published, published_co2e_t=co2e,
                  published_tflops_per_gpu=published_tflops)  # fmt: skip
    if not row["gpu_hours"].strip():
        missing = dict(gpu_hours=None, plan="-", avg_power_w=None, tdp_w=None, tflops_per_gpu=None, predicted_mwh=None,
                       error_pct=None)  # fmt: skip
        return EnergyCheck(**missing, predicted_co2e_t=None, co2e_error_pct=None, skipped="GPU-hours not published",
                           **common)  # fmt: skip
    cluster = resolve_cluster(row["gpu"], int(row["plan_gpus"]))
    breakdown, plan_text, tflops = _breakdown(row, get_model(row["model"]), cluster)
    profile = power_profile(cluster.device)
    power = float(step_power(breakdown, profile).avg_power_w)
    if row["scope"] == "server":
        power += float(profile.host_w(power))
    gpu_hours = float(row["gpu_hours"])
    pue = float(row["pue"]) if row["energy_includes_pue"].strip().lower() == "yes" else 1.0
    predicted = gpu_hours * power * pue / 1e6
    predicted_co2e = float(operational_co2e_t(predicted, float(row["grid_gco2e_per_kwh"])))
    return EnergyCheck(
        gpu_hours=gpu_hours,
        plan=f"{row['plan_gpus']} GPUs, {plan_text}",
        avg_power_w=power,
        tdp_w=profile.tdp_w,
        tflops_per_gpu=float(tflops),
        predicted_mwh=predicted,
        error_pct=100.0 * (predicted - published) / published,
        predicted_co2e_t=predicted_co2e,
        co2e_error_pct=100.0 * (predicted_co2e - co2e) / co2e,
        **common,
    )


def validate_energy() -> list[EnergyCheck]:
    return [check_row(row) for row in load_footprints()]


def summarize_energy(checks: list[EnergyCheck]) -> dict[str, dict[str, float]]:
    """Mean/max absolute % error of energy and CO2e over the predicted rows."""
    items = [("energy", c.source, c.error_pct) for c in checks] + [("co2e", c.source, c.co2e_error_pct) for c in checks]
    summary = error_summary(items)
    return {k: v for k, v in summary.items() if k.endswith("all sources")}
