"""The work behind each endpoint: a checked request in, ``fathom.api`` called as the CLI calls it, JSON out.

Each function runs in a worker thread (``fathom.web.jobs``); ``progress(done, total)`` reports finished runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fathom.api import estimate_training_plan, search_training_plans, simulate_serving
from fathom.api.search import search_serving_deployments
from fathom.api.serving import Workload
from fathom.catalog.hardware import list_gpus, resolve_cluster
from fathom.catalog.models import get_model
from fathom.errors import FathomInputError
from fathom.reports.series import cdf_points
from fathom.reports.serving_figures import build_timeline
from fathom.search.training_space import SearchAxes, enumerate_plans, gpu_counts
from fathom.serving.lengths import parse_length_dist
from fathom.serving.metrics import requests_table
from fathom.serving.request import RequestState
from fathom.specs.hardware import validate_or_explain
from fathom.specs.serving import ServingPlan
from fathom.web.inputs import catalog_name, check_hardware, model_argument
from fathom.web.limits import Limits, check
from fathom.web.schemas import (
    ServeSearchRequest,
    ServeSimulateRequest,
    ServeSweepRequest,
    TrainEstimateRequest,
    TrainSearchRequest,
)

Progress = Callable[[int, int], None]
CDF_POINTS = 200  # points per latency CDF sent to the page
TIMELINE_BINS = 200
_TRAIN_SHARED = (
    "precision",
    "optimizer",
    "attention",
    "moe_dispatcher",
    "overlap_moe_comm",
    "tokens",
    "price_per_gpu_hour",
)


def _no_progress(done: int, total: int) -> None:
    return None


def estimate(req: TrainEstimateRequest, limits: Limits, progress: Progress = _no_progress) -> dict[str, Any]:
    """``fathom train --json`` for one plan."""
    check(req.num_gpus, limits.max_gpus, "num_gpus")
    gpu, system = check_hardware(req.gpu, req.system)
    schedule = req.schedule or ("interleaved" if req.vpp > 1 else "1f1b")
    if schedule == "interleaved" and req.vpp == 1:
        raise FathomInputError("schedule: interleaved needs vpp 2 or more")
    fields = req.model_dump(
        include={
            "micro_batch",
            "tp",
            "pp",
            "dp",
            "cp",
            "ep",
            "vpp",
            "zero",
            "recompute",
            "offload",
            "sequence_parallel",
            "overlap_grad_reduce",
            *_TRAIN_SHARED,
        }
    )
    with model_argument(req.model, req.config, limits) as model:
        est = estimate_training_plan(
            model=model,
            gpu=gpu,
            system=system,
            num_gpus=req.num_gpus,
            seq_len=req.seq_len,
            global_batch=req.global_batch,
            schedule=schedule,
            **fields,
        )
    progress(1, 1)
    return est.model_dump(mode="json")


def _count_plans(
    model: str, gpu: str, system: str | None, req: TrainSearchRequest, axes: SearchAxes, counts: list[int]
) -> int:
    """Plans the search would enumerate (the same vectorised enumeration it runs, without pricing them)."""
    spec = get_model(model)
    fixed = req.model_dump(include={"precision", "optimizer", "attention", "moe_dispatcher", "overlap_moe_comm"})
    total = 0
    for n in counts:
        cluster = resolve_cluster(gpu, n, system=system)
        total += len(enumerate_plans(spec, cluster, req.seq_len, req.global_batch, axes, **fixed))
    return total


def search(req: TrainSearchRequest, limits: Limits, progress: Progress = _no_progress) -> dict[str, Any]:
    """``fathom plan train --json``: the best plans, the Pareto front, why the winner wins."""
    size = req.num_gpus if req.num_gpus is not None else req.max_gpus
    if size is not None:
        check(size, limits.max_search_gpus, "num_gpus" if req.num_gpus is not None else "max_gpus")
    gpu, system = check_hardware(req.gpu, req.system)
    axes = SearchAxes(
        tp=tuple(req.tp) if req.tp else None,
        pp=tuple(req.pp) if req.pp else None,
        zero=tuple(req.zero) if req.zero else None,
        recompute=tuple(req.recompute) if req.recompute else None,
        max_micro_batch=req.max_micro_batch,
    )
    fields = req.model_dump(include={"objective", "max_days", "top", "memory_headroom", "pareto", *_TRAIN_SHARED})
    with model_argument(req.model, req.config, limits) as model:
        if size is not None:
            node = resolve_cluster(gpu, 1, system=system).system.gpus_per_node
            counts = [size] if req.num_gpus is not None else [int(n) for n in gpu_counts(size, node)]
            plans = _count_plans(model, gpu, system, req, axes, counts)
            check(
                plans,
                limits.max_search_plans,
                "search space (plans)",
                "narrow tp, pp, zero or recompute, or lower max_gpus or max_micro_batch",
            )
        result = search_training_plans(
            model=model,
            gpu=gpu,
            system=system,
            seq_len=req.seq_len,
            global_batch=req.global_batch,
            num_gpus=req.num_gpus,
            max_gpus=req.max_gpus,
            axes=axes,
            **fields,
        )
    progress(1, 1)
    return result.model_dump(mode="json")


def _workload(req: ServeSimulateRequest, limits: Limits, rate: float | None = None) -> Workload:
    """The workload, with the requests it would generate and their tokens checked against the limits."""
    rate = rate if rate is not None else req.rate
    inputs = parse_length_dist(req.input_len, "input_len")
    outputs = parse_length_dist(req.output_len, "output_len")
    if "empirical" in (req.input_len + req.output_len).lower():
        raise FathomInputError("input_len/output_len: empirical:FILE reads a file; not available over HTTP")
    if req.arrival in ("poisson", "gamma", "fixed-rate"):
        if rate is None:
            raise FathomInputError(f"rate: arrival {req.arrival!r} needs a rate (requests per second)")
        if req.num_requests is None and req.duration_s is None:
            raise FathomInputError("num_requests/duration_s: give at least one to end the workload")
        by_time = math.inf if req.duration_s is None else rate * req.duration_s
        expected = min(req.num_requests or math.inf, by_time)
    else:
        if req.num_requests is None:
            raise FathomInputError(f"num_requests: arrival {req.arrival!r} needs num_requests")
        if req.arrival == "closed-loop" and req.concurrency is None:
            raise FathomInputError("concurrency: arrival 'closed-loop' needs concurrency (requests in flight)")
        expected = req.num_requests
    check(expected, limits.max_requests, "simulated requests", "lower num_requests, duration_s or rate")
    check(expected * outputs.mean, limits.max_output_tokens, "simulated output tokens (requests x mean length)")
    check(expected * inputs.mean, limits.max_input_tokens, "simulated input tokens (requests x mean length)")
    return Workload(
        arrival=req.arrival,
        rate=rate,
        cv=req.cv,
        duration_s=req.duration_s,
        num_requests=req.num_requests,
        concurrency=req.concurrency,
        input_len=req.input_len,
        output_len=req.output_len,
    )


def _run(req: ServeSimulateRequest, limits: Limits, model: str, rate: float | None = None):
    gpu, system = check_hardware(req.gpu, req.system)
    fields = dict(
        tp=req.tp,
        pp=req.pp,
        ep=req.ep,
        weight_dtype=req.precision,
        cuda_graphs=req.cuda_graphs,
        max_batch=req.max_batch,
        max_batch_tokens=req.max_batch_tokens,
        memory_utilization=req.memory_utilization,
        kv_dtype=req.kv_dtype or ("fp8" if req.precision == "fp8" else "bf16"),
    )
    plan = validate_or_explain(ServingPlan, fields, "serving plan")
    check(plan.num_gpus * req.replicas, limits.max_gpus, "GPUs (tp x pp x replicas)")
    workload = _workload(req, limits, rate)
    return simulate_serving(
        model=model,
        gpu=gpu,
        system=system,
        plan=plan,
        workload=workload,
        replicas=req.replicas,
        scheduler=req.scheduler,
        preemption=req.preemption,
        prefix_caching=req.prefix_caching,
        router=req.router,
        slo_ttft_s=req.slo_ttft_s,
        slo_tpot_s=req.slo_tpot_s,
        seed=req.seed,
        price_per_gpu_hour=req.price_per_gpu_hour,
    ), plan.num_gpus * req.replicas


def _finite(values: np.ndarray) -> list[float]:
    return [float(v) if math.isfinite(v) else 0.0 for v in values]


def simulate(req: ServeSimulateRequest, limits: Limits, progress: Progress = _no_progress) -> dict[str, Any]:
    """``fathom serve --json``, plus what the page draws: latency CDFs and the load timeline."""
    with model_argument(req.model, req.config, limits) as model:
        run, gpus = _run(req, limits, model)
    table = requests_table(run.result.requests)
    done = table["state"] == str(RequestState.FINISHED)
    cdf = {}
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        x, y = cdf_points(table[key][done], max_points=CDF_POINTS)
        cdf[key] = {"x": _finite(x), "y": _finite(y)}
    tl = build_timeline(run.result.replicas, run.result.total_time_s, bins=TIMELINE_BINS)
    pools = {pool: {k: _finite(v) for k, v in series.items()} for pool, series in tl.pools.items()}
    progress(1, 1)
    return {
        "report": run.report.model_dump(mode="json"),
        "cdf": cdf,
        "timeline": {"time_s": _finite(tl.time_s), "pools": pools},
        "num_gpus": gpus,
    }


def sweep(req: ServeSweepRequest, limits: Limits, progress: Progress = _no_progress) -> dict[str, Any]:
    """The deployment at each offered rate, in the order given: the throughput-vs-load curve."""
    check(len(req.rates), limits.max_sweep_rates, "rates")
    scenario = req.scenario
    if scenario.arrival not in ("poisson", "gamma", "fixed-rate"):
        raise FathomInputError("scenario.arrival: a sweep varies the rate, so it needs poisson, gamma or fixed-rate")
    for rate in req.rates:  # check every run before the first one costs anything
        _workload(scenario, limits, rate)
    points = []
    with model_argument(scenario.model, scenario.config, limits) as model:
        for i, rate in enumerate(req.rates):
            run, _ = _run(scenario, limits, model, rate)
            points.append({"rate": rate, "report": run.report.model_dump(mode="json")})
            progress(i + 1, len(req.rates))
    return {"points": points}


def serve_search(req: ServeSearchRequest, limits: Limits, progress: Progress = _no_progress) -> dict[str, Any]:
    """``fathom plan serve --json``: the cheapest deployments (GPU type, parallelism, replicas) meeting the SLOs."""
    gpus = [catalog_name("gpus", g, list_gpus()) for g in req.gpus]
    _, system = check_hardware(gpus[0], req.system)
    check(req.max_simulations, limits.max_search_simulations, "max_simulations")
    inputs = parse_length_dist(req.input_len, "input_len")
    outputs = parse_length_dist(req.output_len, "output_len")
    if "empirical" in (req.input_len + req.output_len).lower():
        raise FathomInputError("input_len/output_len: empirical:FILE reads a file; not available over HTTP")
    # The API's default run length (four request lifetimes, at least 30 s), so the limit sees what will be simulated.
    duration = req.duration_s or math.ceil(max(30.0, 4.0 * (outputs.mean * req.slo_tpot_s + req.slo_ttft_s)))
    per_run = min(req.num_requests or math.inf, req.rate * duration)
    check(per_run, limits.max_requests, "simulated requests per candidate", "lower rate, duration_s or num_requests")
    check(per_run * outputs.mean, limits.max_output_tokens, "simulated output tokens per candidate")
    check(per_run * inputs.mean, limits.max_input_tokens, "simulated input tokens per candidate")
    fields = req.model_dump(
        include={
            "slo_ttft_s",
            "slo_tpot_s",
            "rate",
            "input_len",
            "output_len",
            "duration_s",
            "num_requests",
            "percentile",
            "objective",
            "top",
            "max_simulations",
            "seed",
        }
    )
    with model_argument(req.model, req.config, limits) as model:
        result = search_serving_deployments(model=model, gpus=gpus, system=system, **fields)
    progress(1, 1)
    return result.model_dump(mode="json")
