"""Serving simulations from catalog names: build the replicas' cost models, the workload, run, report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fathom.api.training import check_positive_number
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.errors import FathomInputError, unknown_name_error
from fathom.inference.lora_cost import LoRAStepModel
from fathom.inference.offload import OffloadStepModel
from fathom.inference.speculative import speculative_step_model
from fathom.inference.step_model import InferenceStepModel
from fathom.serving.lora_pool import draw_adapters
from fathom.serving.metrics import ServingReport, summarize
from fathom.serving.mixed_pool import MixedPoolPolicy
from fathom.serving.request import Request
from fathom.serving.simulator import ClosedLoop, Disaggregation, ReplicaConfig, SimulationResult, simulate
from fathom.serving.slowdown import IsolatedLatency, parse_slo, slowdown_report, slowdowns
from fathom.serving.workload import PrefixSpec, generate_requests, load_trace, make_request_factory, parse_length_dist
from fathom.specs.hardware import GIB, validate_or_explain
from fathom.specs.serving import LoRAServingSpec, ServingPlan, SpeculativeSpec, check_serving_plan
from fathom.sweep.serve_inputs import check_value

_ARRIVALS = ("poisson", "gamma", "fixed-rate", "offline", "closed-loop", "trace")


@dataclass(frozen=True)
class Workload:
    """Where requests come from: an open-loop process, a closed loop, offline, or a trace file."""

    arrival: str = "poisson"  # poisson | gamma | fixed-rate | offline | closed-loop | trace
    rate: float | None = None
    cv: float = 1.0
    duration_s: float | None = None
    num_requests: int | None = None
    concurrency: int | None = None
    trace: str | None = None
    input_len: str = "1024"  # a length spec: "N" or "lognormal:mean=..,sigma=.." ... (an int is taken as "N")
    output_len: str = "256"
    prefix: PrefixSpec | None = None

    def __post_init__(self) -> None:
        """Bad values and fields the arrival mode would silently ignore: a one-line error, as ``fathom serve``."""
        for name in ("input_len", "output_len"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, str(value))
            elif not isinstance(value, str):
                raise FathomInputError(f"Workload.{name}: expected a token count or a length spec, got {value!r}")
        for name, key in (("rate", "rate"), ("cv", "cv"), ("duration_s", "duration"),
                          ("num_requests", "num_requests"), ("concurrency", "concurrency")):  # fmt: skip
            check_value(key, getattr(self, name), f"Workload.{name}")
        if self.arrival not in _ARRIVALS:
            raise unknown_name_error("Workload.arrival", str(self.arrival), _ARRIVALS)
        default = Workload.__dataclass_fields__
        set_ = [n for n in ("rate", "duration_s", "num_requests", "concurrency", "trace", "input_len", "output_len",
                            "cv") if getattr(self, n) != default[n].default]  # fmt: skip
        allowed = {
            "trace": {"trace"},
            "offline": {"num_requests", "input_len", "output_len"},
            "closed-loop": {"concurrency", "num_requests", "input_len", "output_len"},
        }.get(self.arrival, {"rate", "duration_s", "num_requests", "input_len", "output_len", "cv"})
        stray = [n for n in set_ if n not in allowed]
        if stray:
            them = "them" if len(stray) > 1 else "it"
            raise FathomInputError(f"Workload: arrival={self.arrival!r} ignores {', '.join(stray)}; drop {them} or "
                                   f"pick the arrival that uses {them}")  # fmt: skip


@dataclass(frozen=True)
class ServingRun:
    report: ServingReport
    result: SimulationResult
    extras: dict = field(default_factory=dict)  # new JSON keys of optional levers: memory_placement, lora, samples


def _requests(w: Workload, rng: np.random.Generator) -> list[Request] | ClosedLoop:
    if w.arrival == "trace":
        if not w.trace:
            raise FathomInputError("--trace: a trace file is required")
        return load_trace(w.trace)
    input_dist = parse_length_dist(w.input_len, "input length")
    output_dist = parse_length_dist(w.output_len, "output length")
    if w.arrival == "closed-loop":
        if not w.concurrency or not w.num_requests:
            raise FathomInputError("--concurrency needs --num-requests")
        factory = make_request_factory(input_dist, output_dist, w.prefix)
        return ClosedLoop(concurrency=w.concurrency, num_requests=w.num_requests, make_request=factory)
    return generate_requests(
        arrival=w.arrival,
        rate=w.rate,
        num_requests=w.num_requests,
        duration_s=w.duration_s,
        cv=w.cv,
        input_dist=input_dist,
        output_dist=output_dist,
        rng=rng,
        prefix=w.prefix,
    )


def simulate_serving(
    *,
    model: str,
    gpu: str,
    plan: ServingPlan,
    workload: Workload,
    replicas: int = 1,
    system: str | None = None,
    scheduler: str = "continuous",
    preemption: str = "recompute",
    capacity_policy: str = "max-utilization",
    prefix_caching: bool = False,
    router: str = "round-robin",
    disaggregate: tuple[int, int] | None = None,
    decode_plan: ServingPlan | None = None,
    kv_link_GBps: float | None = None,
    decode_gpu: str | None = None,
    mixed_pool: bool = False,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
    seed: int = 0,
    price_per_gpu_hour: float | None = None,
    speculative: SpeculativeSpec | None = None,
    lora: LoRAServingSpec | None = None,
    samples: int = 1,
    slo_slowdown: dict | None = None,
    slowdown_reference_gpu: str | None = None,
) -> ServingRun:
    """Simulate a deployment of ``replicas`` identical replicas (or a prefill/decode split) under a workload.
    ``speculative``: decode speculatively with a draft model or n-gram proposals on every replica. ``plan``'s
    ``offload_weights``/``offload_kv``: offloaded inference (``fathom.inference.offload``); ``lora``: every request
    runs one of many LoRA adapters (``fathom.inference.lora_cost``); ``samples``: parallel samples per request;
    ``capacity_policy``: ``max-utilization`` (vLLM: admit while the prompt fits, preempt when blocks run out) or
    ``guaranteed-no-evict`` (TensorRT-LLM's default: admit only when the whole output's KV is reserved).
    ``decode_gpu``: the decode pool of a ``disaggregate`` split runs on this GPU type (Splitwise-HA, Patel et al.
    2024); ``mixed_pool``: its machines move into Splitwise's mixed pool under load (``fathom.serving.mixed_pool``,
    which then places requests instead of ``router``). ``slo_slowdown`` (``{"ttft"|"tbt"|"e2e": {percentile:
    max}}``): per-request slowdowns over the request run alone (``fathom.serving.slowdown``) on the prefill
    replica, or on one replica of ``slowdown_reference_gpu`` with the same plan, go to ``extras["slowdown"]`` with
    whether every bound holds."""
    plan, workload = _as_plan(plan), _as_workload(workload)
    if kv_link_GBps is not None:
        check_positive_number(kv_link_GBps, "kv_link_GBps", "GB/s")
    for key, value, label in (("slo_ttft_s", slo_ttft_s, None),
                              ("slo_tpot_s", slo_tpot_s, None), ("price_per_gpu_hour", price_per_gpu_hour, None),
                              ("samples", samples, None)):  # fmt: skip
        check_value(key, value, label)
    spec = get_model(model)
    _check_deployment(spec, plan, replicas, disaggregate, decode_plan, kv_link_GBps, seed)
    cluster = resolve_cluster(gpu, plan.num_gpus, system=system)
    offload = plan.offload_weights != "none" or plan.offload_kv != "none"
    _check_levers(plan, offload, lora, samples, speculative, disaggregate, prefix_caching)
    if decode_gpu and not disaggregate:
        raise FathomInputError("decode_gpu: a decode pool's GPU type needs disaggregate=(prefill, decode)")
    if mixed_pool and not disaggregate:
        raise FathomInputError("--mixed-pool: Splitwise's mixed pool needs --disaggregate PREFILL:DECODE")
    if mixed_pool and capacity_policy != "max-utilization":
        raise FathomInputError("--mixed-pool: not modelled with --capacity-policy guaranteed-no-evict")
    d_plan = decode_plan or plan
    deployed = (replicas * plan.num_gpus if not disaggregate
                else disaggregate[0] * plan.num_gpus + disaggregate[1] * d_plan.num_gpus)  # fmt: skip

    def config(p: ServingPlan, on_gpu: str = gpu) -> ReplicaConfig:
        replica_cluster = resolve_cluster(on_gpu, p.num_gpus, system=system if on_gpu == gpu else None)
        cost = InferenceStepModel(spec, replica_cluster, p)
        if speculative is not None:
            cost = speculative_step_model(cost, speculative, replica_cluster, p)
        if offload:
            cost = OffloadStepModel(cost, replica_cluster, deployed)
        if lora is not None:
            cost = LoRAStepModel(cost, replica_cluster, lora, deployed)
        return ReplicaConfig(cost=cost, scheduler=scheduler, max_batch=p.max_batch,
                             max_batch_tokens=p.max_batch_tokens, preemption=preemption,
                             capacity_policy=capacity_policy, prefix_caching=prefix_caching,
                             speculative=speculative, seed=seed)  # fmt: skip

    rng = np.random.default_rng(seed)
    requests = _tag(_requests(workload, rng), lora, samples, seed)
    disaggregation = None
    gpus = replicas * plan.num_gpus
    if disaggregate:
        n_prefill, n_decode = disaggregate
        link = (cluster.system.inter_node_bw_GBps if kv_link_GBps is None else kv_link_GBps) * 1e9
        disaggregation = Disaggregation(prefill=[config(plan)] * n_prefill,
                                        decode=[config(d_plan, decode_gpu or gpu)] * n_decode,
                                        kv_link_bytes_per_s=link,
                                        mixed_pool=MixedPoolPolicy() if mixed_pool else None)  # fmt: skip
        configs: list[ReplicaConfig] = []
        gpus = n_prefill * plan.num_gpus + n_decode * d_plan.num_gpus
    else:
        configs = [config(plan)] * replicas
    source = requests if isinstance(requests, ClosedLoop) else _handed_over(requests)
    del requests
    result = simulate(source, configs, router=router, seed=seed, disaggregation=disaggregation)
    first_cost = (disaggregation.decode[0] if disaggregation else configs[0]).cost
    series = [(r.timeseries["time_s"], r.timeseries["running"]) for r in result.replicas if r.timeseries]
    report = summarize(
        result.requests,
        slo_ttft_s=slo_ttft_s,
        slo_tpot_s=slo_tpot_s,
        concurrency_series=series,
        busy_gpu_seconds=sum(r.busy_s * (d_plan if r.role == "decode" else plan).num_gpus for r in result.replicas),
        num_gpus=gpus,
        device_power_w=cluster.device.tdp_w,
        pue=cluster.system.pue,
        price_per_gpu_hour=price_per_gpu_hour
        if price_per_gpu_hour is not None
        else cluster.device.price_per_gpu_hour_usd,
        # one replica's KV cache (the decode pool's when disaggregated): every GPU holds its layers' and heads' share
        kv_cache_gib=first_cost.memory.kv_cache_bytes * (d_plan if disaggregation else plan).num_gpus / GIB,
    )
    extras = _extras(first_cost, result, lora, samples)
    if result.mixed_pool is not None:
        extras["mixed_pool"] = result.mixed_pool
    if slo_slowdown is not None:
        slo = parse_slo(slo_slowdown)
        own = disaggregation.prefill[0] if disaggregation else configs[0]
        ref = config(plan, slowdown_reference_gpu).cost if slowdown_reference_gpu else own.cost
        extras["slowdown"] = slowdown_report(slowdowns(result.requests, IsolatedLatency(ref)), slo)
    return ServingRun(report=report, result=result, extras=extras)


def _as_plan(plan) -> ServingPlan:
    """A ServingPlan, or a mapping of its fields (an API caller's dict) checked into one."""
    if isinstance(plan, dict):
        return validate_or_explain(ServingPlan, plan, "plan")  # type: ignore[return-value]
    if not isinstance(plan, ServingPlan):
        raise FathomInputError(f"plan: expected a ServingPlan or a mapping of its fields, got {type(plan).__name__}")
    return plan


def _as_workload(workload) -> Workload:
    """A Workload, or a mapping of its fields."""
    if isinstance(workload, dict):
        unknown = [k for k in workload if k not in Workload.__dataclass_fields__]
        if unknown:
            raise unknown_name_error("workload field", str(unknown[0]), list(Workload.__dataclass_fields__))
        return Workload(**workload)
    if not isinstance(workload, Workload):
        raise FathomInputError(f"workload: expected a Workload or a mapping of its fields, got "
                               f"{type(workload).__name__}")  # fmt: skip
    return workload


def _check_deployment(spec, plan: ServingPlan, replicas: int, disaggregate, decode_plan, kv_link_GBps,
                      seed) -> None:  # fmt: skip
    """Layouts the model cannot run and arguments a deployment would silently ignore: a one-line error naming the
    flag, before anything is built."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FathomInputError(f"--seed: must be an integer >= 0 (numpy's generators take no negative seeds), "
                               f"got {seed}")  # fmt: skip
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or replicas < 1:
        raise FathomInputError(f"--replicas: must be an integer >= 1, got {replicas}")
    if disaggregate is not None and (
        len(disaggregate) != 2
        or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) for n in disaggregate)
        or min(disaggregate) < 1
    ):
        raise FathomInputError(
            f"--disaggregate: expected (prefill, decode) replica counts, integers >= 1, got {disaggregate}"
        )
    if disaggregate and replicas != 1:
        raise FathomInputError(
            f"--replicas {replicas}: --disaggregate PREFILL:DECODE sets the replica counts of both pools; "
            "drop --replicas"
        )
    if decode_plan is not None and not disaggregate:
        raise FathomInputError("--decode-tp: a decode pool's plan needs --disaggregate PREFILL:DECODE")
    if kv_link_GBps is not None and not disaggregate:
        raise FathomInputError("--kv-link-bw: the KV link between prefill and decode pools needs --disaggregate")
    check_serving_plan(spec, plan)
    if decode_plan is not None:
        check_serving_plan(spec, decode_plan, "decode-tp")


def _check_levers(plan, offload, lora, samples, speculative, disaggregate, prefix_caching) -> None:
    """Combinations of levers the simulator does not model: a one-line error naming the flags."""
    if samples < 1:
        raise FathomInputError(f"--samples: parallel samples per request must be >= 1, got {samples}")
    if speculative is not None and (offload or lora is not None or samples > 1):
        raise FathomInputError("--speculative: not modelled with --offload-weights/--offload-kv, --lora-adapters or "
                               "--samples")  # fmt: skip
    if disaggregate and (lora is not None or samples > 1):
        raise FathomInputError("--disaggregate: not modelled with --lora-adapters or --samples")
    if samples > 1 and prefix_caching:
        raise FathomInputError("--samples: not modelled with --prefix-caching (the samples already share the prompt)")
    if plan.shared_prefix_attention:
        if not prefix_caching:
            raise FathomInputError("--shared-prefix-attention needs --prefix-caching (the prefix's KV must be shared)")
        if speculative is not None or offload or lora is not None:
            raise FathomInputError("--shared-prefix-attention: not modelled with --speculative, --offload-weights/"
                                   "--offload-kv or --lora-adapters")  # fmt: skip


def _handed_over(requests: list[Request]):
    """The workload's requests one by one, each dropped from the list as the simulator copies it: the run keeps
    its own copies, so a day of traffic is not held twice."""
    for i, req in enumerate(requests):
        requests[i] = None
        yield req


def _tag(requests, lora: LoRAServingSpec | None, samples: int, seed: int):
    """Give each request its adapter (drawn from a generator of its own, so the workload's draws are unchanged)
    and its number of samples. A prefix cached under one adapter is not another's: prefix ids get the adapter."""
    if lora is None and samples == 1:
        return requests

    def tag(reqs: list[Request], adapters) -> list[Request]:
        for r, a in zip(reqs, adapters, strict=True):
            r.samples = samples
            if a is not None:
                r.adapter = int(a)
                if r.prefix_id is not None:
                    r.prefix_id = f"{r.prefix_id}@lora{r.adapter}"
        return reqs

    if isinstance(requests, ClosedLoop):
        make = requests.make_request

        def make_tagged(i: int, at: float, rng: np.random.Generator) -> Request:
            req = make(i, at, rng)
            return tag([req], draw_adapters(lora, rng, 1) if lora is not None else [None])[0]

        return ClosedLoop(requests.concurrency, requests.num_requests, make_tagged, requests.think_time_s)
    ids = draw_adapters(lora, np.random.default_rng([seed, 1]), len(requests)) if lora else [None] * len(requests)
    return tag(requests, ids)


def _extras(cost, result: SimulationResult, lora: LoRAServingSpec | None, samples: int) -> dict:
    extras: dict = {}
    node = cost
    while node is not None and not isinstance(node, OffloadStepModel):
        node = getattr(node, "base", None)
    if node is not None:
        extras["memory_placement"] = node.placement()
    if lora is not None:
        pools = [r.lora for r in result.replicas if r.lora]
        extras["lora"] = {
            **lora.model_dump(),
            "adapter_mib": cost.adapter_bytes / 2**20,
            "pool_gib": lora.max_loras_per_batch * cost.adapter_bytes / GIB,
            **{k: sum(p[k] for p in pools) for k in ("adapter_loads", "adapter_disk_loads", "adapter_load_s")},
        }
    if samples > 1:
        extras["samples"] = samples
    return extras
