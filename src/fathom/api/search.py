"""Plan search from catalog names (or file paths): the best training plans for a model, cluster and workload,
and the cheapest serving deployments for a load and its SLOs."""

from __future__ import annotations

import numpy as np

from fathom.api.training import check_float_inputs, check_positive_number
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.errors import FathomInputError, unknown_name_error
from fathom.search.serving_capacity import SLO
from fathom.search.serving_result import ServingSearchResult
from fathom.search.serving_search import search_serving
from fathom.search.serving_space import ServingAxes
from fathom.search.training_report import TrainingSearchResult
from fathom.search.training_search import search_training
from fathom.search.training_space import SearchAxes, gpu_counts
from fathom.serving.workload import generate_requests, load_trace, parse_length_dist
from fathom.specs.plan import TRAIN_PRECISIONS

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
    overrides = system_overrides or {}
    check_float_inputs(**{**overrides, "tokens": tokens, "price_per_gpu_hour": price_per_gpu_hour})
    if max_days is not None:
        check_positive_number(max_days, "--max-days", "days")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise FathomInputError(f"--top: expected an integer >= 1, got {top!r}")
    if "precision" in plan_fields and plan_fields["precision"] not in TRAIN_PRECISIONS:
        raise unknown_name_error("--precision", str(plan_fields["precision"]), TRAIN_PRECISIONS)
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


def search_serving_deployments(
    *,
    model: str,
    gpus: list[str],
    slo_ttft_s: float,
    slo_tpot_s: float,
    rate: float | None = None,
    input_len: str = "1024",
    output_len: str = "256",
    trace: str | None = None,
    duration_s: float | None = None,
    num_requests: int | None = None,
    percentile: int = 90,
    objective: str = "cost",
    top: int = 5,
    axes: ServingAxes | None = None,
    prices: dict[str, float] | None = None,
    buckets: int = 3,
    seed: int = 0,
    system: str | None = None,
    max_simulations: int = 80,
) -> ServingSearchResult:
    """The cheapest serving deployments of ``model`` on the GPU types ``gpus`` for a Poisson load of ``rate``
    requests/s with length specs ``input_len``/``output_len`` (as ``fathom serve``), or for a ``trace`` file.

    Each candidate is simulated on one seeded workload; without ``duration_s``/``num_requests`` it lasts four
    request lifetimes (output tokens x TPOT SLO + TTFT SLO) and at least 30 s, so the batch reaches steady state.
    """
    spec = get_model(model)
    if isinstance(gpus, str) or not gpus:
        raise FathomInputError(f"gpus: give a list of GPU types such as ['h100-sxm'], got {gpus!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FathomInputError(f"--seed: must be an integer >= 0, got {seed!r}")
    for name, usd in (prices or {}).items():
        check_positive_number(usd, f"--price {name}", "USD per GPU-hour")
    check_positive_number(slo_ttft_s, "--slo-ttft", "seconds")
    check_positive_number(slo_tpot_s, "--slo-tpot", "seconds")
    for gpu in gpus:
        resolve_cluster(gpu, 1, system=system)  # unknown names fail here, with close matches
    if (rate is None) == (trace is None):
        raise FathomInputError("workload: give exactly one of --rate and --trace")
    if trace is not None:
        requests, flags = load_trace(trace), f"--model {model} --trace {trace} --seed {seed}"
    else:
        if not rate > 0:
            raise FathomInputError(f"rate: must be > 0 requests/s (got {rate})")
        inputs, outputs = parse_length_dist(input_len, "input length"), parse_length_dist(output_len, "output length")
        if duration_s is None and num_requests is None:
            lifetime = outputs.mean * slo_tpot_s + slo_ttft_s
            duration_s = float(np.ceil(max(30.0, 4.0 * lifetime)))
        rng = np.random.default_rng(seed)  # the same draws as ``fathom serve --seed``
        requests = generate_requests(arrival="poisson", rate=rate, num_requests=num_requests, duration_s=duration_s,
                                     input_dist=inputs, output_dist=outputs, rng=rng)  # fmt: skip
        flags = f"--model {model} --rate {rate:g} --input-dist {input_len} --output-dist {output_len} --seed {seed}"
        flags += f" --duration {duration_s:g}" if duration_s is not None else ""
        flags += f" --num-requests {num_requests}" if num_requests is not None else ""
    return search_serving(spec, list(gpus), requests, slo=SLO(slo_ttft_s, slo_tpot_s, percentile), rate=rate,
                          axes=axes, prices=prices, objective=objective, top=top, buckets=buckets, seed=seed,
                          system=system, max_simulations=max_simulations, command_flags=flags)  # fmt: skip
