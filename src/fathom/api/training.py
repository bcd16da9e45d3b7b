"""Training estimates from catalog names (or file paths) and plan fields."""

from __future__ import annotations

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
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
    **plan_fields,
) -> TrainingEstimate:
    """Estimate a training plan from catalog names (or file paths) and plan fields.

    ``dp`` is inferred from the GPU count when omitted; every other plan field has the defaults of
    :class:`fathom.specs.plan.TrainingPlan`.
    """
    spec = get_model(model)
    cluster = resolve_cluster(gpu, num_gpus, system=system, overrides=system_overrides or None)
    if dp is None:
        provisional = TrainingPlan(seq_len=seq_len, global_batch=global_batch, dp=1, **plan_fields)
        check_plan(spec, cluster, provisional, model_only=True)
        dp = infer_dp(num_gpus, plan_fields.get("tp", 1), plan_fields.get("pp", 1), plan_fields.get("cp", 1))
    plan = TrainingPlan(seq_len=seq_len, global_batch=global_batch, dp=dp, **plan_fields)
    return estimate_training(spec, cluster, plan, tokens=tokens, price_per_gpu_hour=price_per_gpu_hour)
