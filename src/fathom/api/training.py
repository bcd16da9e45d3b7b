"""Training estimates from catalog names (or file paths) and plan fields."""

from __future__ import annotations

import math

from pydantic import ValidationError

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.energy.carbon import grid_intensity
from fathom.energy.footprint import with_energy
from fathom.errors import FathomInputError
from fathom.reliability.assess import assess_reliability
from fathom.specs.plan import TrainingPlan, check_plan_limits
from fathom.training.estimator import estimate_training
from fathom.training.plans import check_plan, infer_dp
from fathom.training.result import TrainingEstimate

# Float inputs: keyword -> (flag, lowest, highest, unit). Every one must be finite (1e400 parses as inf, which would
# flow into the figures and print as bare Infinity in --json) and within a range far beyond any real run, so that
# the figures derived from it stay finite too. --power-cap is not here: fathom.energy checks it (inf included)
# against the device's settable range, which it names.
FLOAT_RANGES: dict[str, tuple[str, float, float, str]] = {
    "tokens": ("--tokens", 1.0, 1e18, "tokens"),
    "price_per_gpu_hour": ("--price-per-gpu-hour", 0.0, 1e6, "USD per GPU-hour"),
    "pue": ("--pue", 1.0, 10.0, ""),
    "mtbf_hours": ("--mtbf-hours", 0.001, 1e9, "hours"),
    "storage_bw_GBps": ("--storage-bw", 0.001, 1e9, "GB/s"),
    "restart_min": ("--restart-min", 0.0, 1e6, "minutes"),
    "checkpoint_interval_min": ("--checkpoint-interval", 0.001, 1e9, "minutes"),
    "intra_node_bw_GBps": ("--intra-node-bw", 0.001, 1e9, "GB/s"),
    "inter_node_bw_GBps": ("--inter-node-bw", 0.001, 1e9, "GB/s"),
}


def check_float_inputs(**values: float | None) -> None:
    """A one-line FathomInputError for the first value that is not finite or outside ``FLOAT_RANGES``."""
    for key, value in values.items():
        if value is None or key not in FLOAT_RANGES:
            continue
        flag, lo, hi, unit = FLOAT_RANGES[key]
        span = f"{lo:g}..{hi:g}"
        try:
            number = float(value)
        except OverflowError:  # an int past float range
            number = math.inf
        except (TypeError, ValueError):
            raise FathomInputError(f"{flag}: {value!r} is not a number: must be {span} {unit}".rstrip()) from None
        if not math.isfinite(number):
            raise FathomInputError(f"{flag} {number} is out of range: must be a finite number {span} {unit}".rstrip())
        if not lo <= number <= hi:
            raise FathomInputError(f"{flag} {number:g} is out of range: must be {span} {unit}".rstrip())


def check_positive_number(value: object, label: str, unit: str = "") -> None:
    """A one-line FathomInputError unless ``value`` is a real number, finite and > 0 (an API caller's value of any
    type: a bool, a string or NaN is named, not passed on)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise FathomInputError(f"{label}: expected a finite number{' of ' + unit if unit else ''} > 0, got {value!r}")


def _plan(**fields) -> TrainingPlan:
    """A TrainingPlan, pydantic's report turned into one line naming the flag."""
    try:
        return TrainingPlan(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(part) for part in err["loc"])
        raise FathomInputError(f"--{loc.replace('_', '-')}: {err['msg']}" if loc else err["msg"]) from None


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
    # system_overrides may carry pue too (a SystemSpec field): --pue wins, as resolve_cluster applies it last
    check_float_inputs(**{**(system_overrides or {}), "tokens": tokens, "price_per_gpu_hour": price_per_gpu_hour,
                          "mtbf_hours": mtbf_hours, "storage_bw_GBps": storage_bw_GBps, "restart_min": restart_min,
                          "checkpoint_interval_min": checkpoint_interval_min,
                          "pue": pue if pue is not None else (system_overrides or {}).get("pue")})  # fmt: skip
    check_plan_limits(num_gpus=num_gpus)
    if region is not None:
        grid_intensity(region)  # an unknown region is an error with or without --tokens
    spec = get_model(model)
    overrides = {**(system_overrides or {}), **({"pue": pue} if pue is not None else {})}
    cluster = resolve_cluster(gpu, num_gpus, system=system, overrides=overrides or None)
    if dp is None:
        provisional = _plan(seq_len=seq_len, global_batch=global_batch, dp=1, **plan_fields)
        check_plan(spec, cluster, provisional, model_only=True)
        dp = infer_dp(num_gpus, plan_fields.get("tp", 1), plan_fields.get("pp", 1), plan_fields.get("cp", 1))
    plan = _plan(seq_len=seq_len, global_batch=global_batch, dp=dp, **plan_fields)
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
