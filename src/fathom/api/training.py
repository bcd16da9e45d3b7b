"""Training estimates from catalog names (or file paths) and plan fields."""

from __future__ import annotations

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.energy.footprint import with_energy
from fathom.reliability.assess import assess_reliability
from fathom.specs.plan import TrainingPlan
from fathom.training.estimator import estimate_training
from fathom.training.plans import check_plan, infer_dp
from fathom.training.result import TrainingEstimate


def estimate_training_plan(
    *,
    model: str,
    gpu: str,
    num_gpus: int,
    seq_len: int,
    global_batch: int,
    system: str | None = None,
    system_overrides: dict | None = None,
    dp: int | None = None,
    tokens: float | None = None,
    price_per_gpu_hour: float | None = None,
    region: str | None = None,
    power_cap_w: float | None = None,
    pue: float | None = None,
    checkpoint: str | None = None,
    mtbf_hours: float | None = None,
    storage_bw_GBps: float | None = None,
    restart_min: float | None = None,
    checkpoint_interval_min: float | None = None,
    **plan_fields,
) -> TrainingEstimate:
    """Estimate a training plan from catalog names (or file paths) and plan fields.

    ``dp`` is inferred from the GPU count when omitted; every other plan field has the defaults of
    :class:`fathom.specs.plan.TrainingPlan`. ``region``/``power_cap_w``/``pue`` shape the energy and carbon
    figures (``fathom.energy``); any of the checkpoint/failure options adds the ``reliability`` report.
    """
    spec = get_model(model)
    overrides = {**(system_overrides or {}), **({"pue": pue} if pue is not None else {})}
    cluster = resolve_cluster(gpu, num_gpus, system=system, overrides=overrides or None)
    if dp is None:
        provisional = TrainingPlan(seq_len=seq_len, global_batch=global_batch, dp=1, **plan_fields)
        check_plan(spec, cluster, provisional, model_only=True)
        dp = infer_dp(num_gpus, plan_fields.get("tp", 1), plan_fields.get("pp", 1), plan_fields.get("cp", 1))
    plan = TrainingPlan(seq_len=seq_len, global_batch=global_batch, dp=dp, **plan_fields)
    est = estimate_training(spec, cluster, plan, tokens=tokens, price_per_gpu_hour=price_per_gpu_hour)
    est = with_energy(est, cluster, region=region, power_cap_w=power_cap_w)
    asked = (checkpoint, mtbf_hours, storage_bw_GBps, restart_min, checkpoint_interval_min)
    if any(v is not None for v in asked):
        report = assess_reliability(
            spec,
            cluster,
            plan,
            step_time_s=est.step_time_s,
            run_time_s=est.run.time_s if est.run else None,
            checkpoint=checkpoint or "async",
            mtbf_hours=mtbf_hours,
            storage_bw_GBps=storage_bw_GBps,
            restart_min=restart_min,
            interval_min=checkpoint_interval_min,
        )
        est = est.model_copy(update={"reliability": report})
    return est
