"""Training claims: scenario pairs through ``fathom train``'s estimator and plan search."""

from __future__ import annotations

from fathom.api import estimate_training_plan, search_training_plans
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.search.training_space import SearchAxes
from fathom.specs.plan import TrainingPlan
from fathom.training.estimator import estimate_training
from fathom.validation.claim_runners.common import Pair, cases, data_path, metric


def _metric(estimate, path: str) -> float:
    """A metric of the estimate; ``..._pct`` names a fraction (``mfu``, ``hfu``) in percent."""
    if path.endswith("_pct"):
        return 100.0 * metric(estimate, path.removesuffix("_pct"))
    return metric(estimate, path)


def training_ratio(fig: dict) -> tuple[list[Pair], str]:
    """The metric of both scenarios for each case; the caller reduces the per-case figures. A side may name its
    own ``model`` (a technique that changes the architecture, e.g. a parallel block)."""
    pairs = []
    for case in cases(fig):
        values = []
        for side in (fig["baseline"], fig["technique"]):
            inputs = {**case, **side}
            inputs["model"] = data_path(inputs["model"])
            values.append(_metric(estimate_training_plan(**inputs), fig["metric"]))
        pairs.append((values[0], values[1]))
    return pairs, f"{len(pairs)} scenario pair(s)"


def training_value(fig: dict) -> tuple[list[Pair], str]:
    """One published operating point's metric (e.g. a run's share of peak), no baseline: the scenario is
    ``common`` merged with each case; the caller reduces the per-case values."""
    values = []
    for case in cases(fig):
        inputs = dict(case)
        inputs["model"] = data_path(inputs["model"])
        values.append((float("nan"), _metric(estimate_training_plan(**inputs), fig["metric"])))
    return values, f"{len(values)} scenario(s)"


def _largest_depth(spec, cluster, plan_fields: dict) -> tuple[int, float]:
    """The most layers of ``spec``'s width that fit (bisection on depth: memory grows with it), and their params."""

    def fits(layers: int) -> bool:
        shaped = spec.model_copy(update={"num_layers": layers})
        return estimate_training(shaped, cluster, TrainingPlan(**plan_fields)).fits

    lo, hi = 0, 1
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    params = spec.model_copy(update={"num_layers": max(lo, 1)}).num_params if lo else 0.0
    return lo, float(params)


def training_largest_fit(fig: dict) -> tuple[list[Pair], str]:
    """Largest model (billions of parameters) of a fixed width that fits, baseline and technique plans."""
    case = dict(fig["common"])
    spec = get_model(data_path(case.pop("model")))
    cluster = resolve_cluster(case.pop("gpu"), case.pop("num_gpus"))
    depths, sizes = [], []
    for side in ("baseline", "technique"):
        layers, params = _largest_depth(spec, cluster, {**case, **fig[side]})
        depths.append(layers)
        sizes.append(params / 1e9)
    note = f"{depths[0]} vs {depths[1]} layers of width {spec.hidden_size}"
    return [(sizes[0], sizes[1])], note


def training_min_gpus(fig: dict) -> tuple[list[Pair], str]:
    """Fewest GPUs (whole nodes) on which the plan search finds a plan that fits; bisection over node counts."""
    case = dict(fig["common"])
    model, gpu = data_path(case.pop("model")), case.pop("gpu")
    node = resolve_cluster(gpu, 1, overrides=case.get("system_overrides")).system.gpus_per_node
    axes = SearchAxes(**{k: tuple(v) for k, v in fig.get("axes", {}).items()})

    def fits(nodes: int) -> bool:
        n = nodes * node
        result = search_training_plans(model=model, gpu=gpu, num_gpus=n, global_batch=n, top=1, axes=axes, **case)
        return result.feasible > 0

    hi = fig["max_gpus"] // node
    if not fits(hi):
        return [(float("nan"), float("nan"))], f"no plan fits on {hi * node} GPUs"
    lo = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return [(float("nan"), float(hi * node))], f"searched in steps of {node} GPUs (one node)"


RUNNERS = {
    "training_ratio": training_ratio,
    "training_value": training_value,
    "training_largest_fit": training_largest_fit,
    "training_min_gpus": training_min_gpus,
}
