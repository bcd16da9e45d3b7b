"""``fathom budget``: turn a FLOP, GPU-day or dollar budget into a model, a token count, a batch and a plan.

FLOPs -> compute-optimal (N, D) (``fathom.budget.scaling``) -> batch (``fathom.budget.batch``) -> a dense shape
(``fathom.budget.shape``) -> the throughput-best plan from ``fathom.search`` on the given GPUs -> time, cost,
energy from the training estimator. A GPU-day (or dollar) budget needs the achieved FLOP/s to become FLOPs, and
the achieved FLOP/s depends on the model the budget buys, so the two are iterated to a fixed point starting
from 40% MFU (until it moves by under 1%; the plan search is the cost of each).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from fathom.budget.batch import deepseek_batch_tokens, kaplan_critical_batch_tokens
from fathom.budget.scaling import chinchilla_optimum, data_constrained_optimum
from fathom.budget.shape import dense_shape
from fathom.catalog.hardware import resolve_cluster
from fathom.energy.footprint import with_energy
from fathom.errors import FathomInputError
from fathom.specs.hardware import Cluster
from fathom.specs.plan import TrainingPlan
from fathom.training.estimator import estimate_training
from fathom.training.result import TrainingEstimate

START_MFU = 0.40
ROUNDS = 8  # at most; stops once the achieved FLOP/s moves by less than 1%


class BudgetReport(BaseModel):
    flops: float
    gpu_days: float | None
    dollars: float | None
    params_optimal: float
    tokens: float  # tokens trained on, repeats included
    effective_tokens: float
    unique_tokens: float | None
    epochs: float
    predicted_loss: float  # Chinchilla fit, nats per token
    batch_tokens_deepseek: float
    critical_batch_tokens: float
    seq_len: int
    global_batch: int  # sequences
    shape: dict
    plan_source: str
    estimate: TrainingEstimate


def _optimum(flops: float, unique_tokens: float | None):
    if unique_tokens is None:
        o = chinchilla_optimum(flops)
    else:
        o = data_constrained_optimum(flops, unique_tokens)
    return tuple(float(x.reshape(-1)[0]) for x in (o.params, o.tokens, o.effective_tokens, o.loss, o.epochs))


def _best_plan(spec, cluster: Cluster, seq_len: int, global_batch: int) -> tuple[TrainingPlan, str]:
    try:
        from fathom.search.training_search import search_training
    except ImportError:  # plan search not installed: Megatron-style TP within a node, data parallel across
        tp = math.gcd(cluster.system.gpus_per_node, spec.num_heads, cluster.num_gpus)
        return TrainingPlan(seq_len=seq_len, global_batch=global_batch, tp=tp, dp=cluster.num_gpus // tp,
                            recompute="full"), "heuristic"  # fmt: skip
    try:
        found = search_training(spec, cluster, seq_len=seq_len, global_batch=global_batch, top=1)
    except FathomInputError as exc:  # no layout at all: a budget's batch too small for the cluster, say
        raise FathomInputError(
            f"budget: the compute-optimal {spec.name} trains with a global batch of {global_batch} sequences of "
            f"{seq_len} tokens, which no plan spreads over {cluster.num_gpus} x {cluster.device.name} ({exc}); "
            "give fewer --num-gpus or a larger budget"
        ) from None
    if not found.plans:  # the compute-optimal model does not fit this cluster in any plan
        why = " ".join((found.message or "no plan fits its memory").split())
        raise FathomInputError(
            f"budget: the compute-optimal {spec.name} ({spec.num_params / 1e9:,.1f}B parameters) has no plan on "
            f"{cluster.num_gpus} x {cluster.device.name}: {why}"
        )
    return TrainingPlan(**found.plans[0].plan), "fathom.search (throughput-best)"


def plan_budget(
    *,
    gpu: str,
    num_gpus: int,
    flops: float | None = None,
    gpu_days: float | None = None,
    dollars: float | None = None,
    unique_tokens: float | None = None,
    seq_len: int = 4096,
    price_per_gpu_hour: float | None = None,
    region: str | None = None,
) -> BudgetReport:
    given = [k for k, v in (("--flops", flops), ("--gpu-days", gpu_days), ("--dollars", dollars)) if v is not None]
    if len(given) != 1:
        raise FathomInputError("budget: give exactly one of --flops, --gpu-days, --dollars")
    for flag, value in (("--flops", flops), ("--gpu-days", gpu_days), ("--dollars", dollars),
                        ("--unique-tokens", unique_tokens)):  # fmt: skip
        if value is not None and not (math.isfinite(value) and value > 0):
            raise FathomInputError(f"{flag}: {value} must be a positive number")
    cluster = resolve_cluster(gpu, num_gpus)
    price = price_per_gpu_hour if price_per_gpu_hour is not None else cluster.device.price_per_gpu_hour_usd
    if price_per_gpu_hour is not None and dollars is not None and not price_per_gpu_hour > 0:
        raise FathomInputError(f"--price-per-gpu-hour: must be > 0 with --dollars (got {price_per_gpu_hour:g})")
    if dollars is not None:
        if not price:
            raise FathomInputError(f"--dollars: {cluster.device.name} has no catalog price; give --price-per-gpu-hour")
        gpu_days = dollars / price / 24.0
    peak = cluster.device.peak_flops_per_s("bf16")
    achieved = START_MFU * peak
    for _ in range(1 if flops is not None else ROUNDS):
        budget = flops if flops is not None else gpu_days * 86400.0 * achieved
        n, d, d_eff, loss, epochs = _optimum(budget, unique_tokens)
        b_ds = float(deepseek_batch_tokens(budget))
        b_crit = float(kaplan_critical_batch_tokens(loss))
        sequences = max(1, min(b_ds, b_crit) / seq_len)
        global_batch = 2 ** int(math.floor(math.log2(sequences)))
        spec = dense_shape(n, name=f"budget-{n / 1e9:.3g}b")
        plan, source = _best_plan(spec, cluster, seq_len, global_batch)
        est = estimate_training(spec, cluster, plan, tokens=d, price_per_gpu_hour=price)
        # Chinchilla FLOPs (6 N per token) per GPU-second, so that the budget's tokens take its GPU-days.
        previous, achieved = achieved, 6.0 * n * est.tokens_per_s_per_gpu
        if abs(achieved - previous) <= 0.01 * previous:
            break
    est = with_energy(est, cluster, region=region)
    shape = {k: getattr(spec, k) for k in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "ffn_size")}
    shape["num_params"] = spec.num_params
    return BudgetReport(flops=budget, gpu_days=gpu_days, dollars=dollars, params_optimal=n, tokens=d,
                        effective_tokens=d_eff, unique_tokens=unique_tokens, epochs=epochs, predicted_loss=loss,
                        batch_tokens_deepseek=b_ds, critical_batch_tokens=b_crit, seq_len=seq_len,
                        global_batch=global_batch, shape=shape, plan_source=source, estimate=est)  # fmt: skip
