"""How each kind of claimed figure is predicted: scenario pairs run through fathom's public estimators.

Every runner takes one figure entry of ``data/claims.yaml`` and returns ``(baseline, technique)`` values of the
figure's metric; ``fathom.validation.claims`` turns the pair into the claimed kind of figure (ratio, gain,
reduction, value). Nothing here knows a claim: all inputs come from the YAML entry, all physics from the same
estimators and defaults as ``fathom train`` and ``fathom serve``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from importlib import resources

import numpy as np

from fathom.api import estimate_training_plan, search_training_plans
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.costmodel.kernels import linear_s
from fathom.inference.memory import WEIGHT_BYTES
from fathom.inference.step_model import InferenceStepModel
from fathom.search.training_space import SearchAxes
from fathom.specs.plan import TrainingPlan
from fathom.specs.serving import ServingPlan
from fathom.training.estimator import estimate_training

Pair = tuple[float, float]


def _data_path(name: str) -> str:
    """Model files shipped beside the claims (``claim_models/*.yaml``) resolve to their installed path."""
    if name.startswith("claim_models/"):
        return str(resources.files("fathom.validation").joinpath("data").joinpath(name))
    return name


def _metric(estimate, path: str) -> float:
    """``tokens_per_s``, ``memory.peak_gib``, ``memory.breakdown.optimizer``, ``hfu`` ... of a training estimate."""
    value = estimate
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return float(value)


def _reduce(values: list[float], how: str) -> float:
    return float({"max": np.max, "min": np.min, "mean": np.mean}[how](values))


def _cases(fig: dict) -> list[dict]:
    """The scenario inputs shared by both sides: ``common`` x each of ``cases`` x each ``sweep`` value (a list
    value inside a case is swept too)."""
    common = dict(fig.get("common", {}))
    out = []
    for case in fig.get("cases", [{}]):
        merged = {**common, **case, **{k: v for k, v in fig.get("sweep", {}).items()}}
        keys = [k for k, v in merged.items() if isinstance(v, list)]
        for combo in itertools.product(*(merged[k] for k in keys)):
            out.append({**merged, **dict(zip(keys, combo, strict=True))})
    return out


def training_ratio(fig: dict) -> tuple[list[Pair], str]:
    """The metric of both scenarios for each case; the caller reduces the per-case figures."""
    pairs = []
    for case in _cases(fig):
        case["model"] = _data_path(case["model"])
        base = estimate_training_plan(**case, **fig["baseline"])
        tech = estimate_training_plan(**case, **fig["technique"])
        pairs.append((_metric(base, fig["metric"]), _metric(tech, fig["metric"])))
    return pairs, f"{len(pairs)} scenario pair(s)"


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
    spec = get_model(_data_path(case.pop("model")))
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
    model, gpu = _data_path(case.pop("model")), case.pop("gpu")
    node = resolve_cluster(gpu, 1).system.gpus_per_node
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


def kernel_ratio(fig: dict) -> tuple[list[Pair], str]:
    """Time of one FP16 linear layer over the same layer with int4 weights (16-bit math), per batch size: the
    baseline value is the FP16 time, the technique value the int4 time inverted into a speed."""
    device = resolve_cluster(fig["gpu"], 1).device
    n, k = fig["shape"]["n"], fig["shape"]["k"]
    pairs = []
    for b in fig["batches"]:
        fp16 = float(linear_s(device, "fp16", b, n, k))
        int4 = float(linear_s(device, "fp16", b, n, k, weight_bytes=WEIGHT_BYTES["int4"]))
        pairs.append((1.0 / fp16, 1.0 / int4))  # speeds: technique / baseline is the speedup
    return pairs, f"{n} x {k} layer on {fig['gpu']}"


def prefix_decode_drop(fig: dict) -> tuple[list[Pair], str]:
    """Decode throughput of a batch sharing one prefix, at the shorter (baseline) and longer (technique) prefix:
    ``batch`` sequences each generate ``output_tokens`` tokens; the step model prices every decode step."""
    short, long_ = fig["prefixes"]
    plan = ServingPlan(tp=fig["tp"], max_model_len=long_ + fig["output_tokens"],
                       shared_prefix_attention=fig["shared_prefix_attention"])  # fmt: skip
    model = InferenceStepModel(get_model(fig["model"]), resolve_cluster(fig["gpu"], fig["tp"]), plan)
    batch, steps = fig["batch"], fig["output_tokens"]

    def throughput(prefix: int) -> float:
        seconds = sum(model.step_time_s([], [], np.full(batch, float(prefix + g)), shared_prefix=[(prefix, batch)])
                      for g in range(1, steps + 1))  # fmt: skip
        return batch * steps / seconds

    return [(throughput(short), throughput(long_))], f"batch {batch}, {steps} tokens, TP{fig['tp']} {fig['gpu']}"


RUNNERS: dict[str, Callable[[dict], tuple[list[Pair], str]]] = {
    "training_ratio": training_ratio,
    "training_largest_fit": training_largest_fit,
    "training_min_gpus": training_min_gpus,
    "kernel_ratio": kernel_ratio,
    "prefix_decode_drop": prefix_decode_drop,
}
MISSING_KINDS: tuple[str, ...] = ("missing_input", "missing_lever")
