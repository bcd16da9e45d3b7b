"""Plan search from catalog names (or file paths): the best training plans for a model, cluster and workload."""

from __future__ import annotations

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.errors import FathomInputError, unknown_name_error
from fathom.search.training_report import TrainingSearchResult
from fathom.search.training_search import search_training
from fathom.search.training_space import SearchAxes, gpu_counts

# Plan fields the search keeps as given (numerics and framework switches); the others are searched.
SHARED_PLAN_FIELDS = (
    "precision",
    "optimizer",
    "attention",
    "moe_dispatcher",
    "overlap_moe_comm",
    "overlap_grad_reduce",
    "sequence_parallel",
)


def search_training_plans(
    *,
    model: str,
    gpu: str,
    seq_len: int,
    global_batch: int,
    num_gpus: int | None = None,
    max_gpus: int | None = None,
    system: str | None = None,
    system_overrides: dict | None = None,
    objective: str = "throughput",
    tokens: float | None = None,
    max_days: float | None = None,
    top: int = 10,
    memory_headroom: float = 0.0,
    price_per_gpu_hour: float | None = None,
    pareto: bool = False,
    axes: SearchAxes | None = None,
    **plan_fields,
) -> TrainingSearchResult:
    """Rank every plan of the search space on ``num_gpus`` GPUs, or on each GPU count up to ``max_gpus``.

    ``axes`` narrows the candidates of searched axes (TP, PP, ZeRO, ...); ``plan_fields`` fixes the fields in
    ``SHARED_PLAN_FIELDS`` for every plan (defaults as in :class:`fathom.specs.plan.TrainingPlan`).
    """
    for key in plan_fields:
        if key not in SHARED_PLAN_FIELDS:
            raise unknown_name_error("plan field", key, SHARED_PLAN_FIELDS)
    if (num_gpus is None) == (max_gpus is None):
        raise FathomInputError("num_gpus/max_gpus: give exactly one (a fixed GPU count, or the most to try)")
    spec = get_model(model)
    size = num_gpus if num_gpus is not None else max_gpus
    cluster = resolve_cluster(gpu, size, system=system, overrides=system_overrides or None)
    counts = None if max_gpus is None else gpu_counts(max_gpus, cluster.system.gpus_per_node)
    return search_training(
        spec,
        cluster,
        seq_len=seq_len,
        global_batch=global_batch,
        gpu_counts=counts,
        objective=objective,
        tokens=tokens,
        max_days=max_days,
        top=top,
        memory_headroom=memory_headroom,
        price_per_gpu_hour=price_per_gpu_hour,
        pareto=pareto,
        axes=axes,
        **plan_fields,
    )
