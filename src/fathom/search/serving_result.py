"""What a serving search returns: deployments best first, each with its simulated ``fathom serve`` metrics, the
heterogeneous fleet, the cost/latency front, and what comes closest when nothing meets the SLOs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from fathom.serving.metrics import ServingReport


class Deployment(ServingReport):
    """One deployment and the report of its simulation (the ``fathom serve --json`` keys, at the top level)."""

    rank: int | None = None
    gpu: str
    tp: int
    pp: int
    replicas: int  # all replicas; disaggregated: prefill + decode
    precision: str
    kv_dtype: str
    scheduler: str
    max_batch: int
    max_batch_tokens: int
    mode: Literal["aggregated", "disaggregated"]
    prefill_replicas: int | None = None
    decode_replicas: int | None = None
    num_gpus: int
    cost_per_hour: float  # USD: GPUs x price per GPU-hour
    meets_slo: bool
    slo_gap: float  # max(percentile TTFT / SLO, percentile TPOT / SLO); <= 1 meets
    slo_attainment: float  # share of requests finished within both SLOs
    analytic_replicas: int  # what the analytical capacity model asked for before simulation
    command: str  # the ``fathom serve`` command that reproduces this simulation


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FleetPart(_Frozen):
    gpu: str
    tp: int
    pp: int
    precision: str
    scheduler: str
    max_batch: int
    max_batch_tokens: int
    replicas: int
    num_gpus: int
    cost_per_hour: float
    load_share: float  # fraction of the requests routed to this part
    buckets: list[int]  # prompt-length buckets it serves (indices into ``Fleet.bucket_edges``)
    # As ``Deployment``: a part kept from a disaggregated deployment runs prefill and decode pools (``replicas`` is
    # their sum), which a fleet must deploy as such.
    mode: Literal["aggregated", "disaggregated"] = "aggregated"
    prefill_replicas: int | None = None
    decode_replicas: int | None = None


class Fleet(_Frozen):
    """A fleet of several GPU types sharing the load (Melange, Griggs et al. 2024), chosen by an integer program;
    never costlier than the best single-type fleet, which is one of its feasible points."""

    parts: list[FleetPart]
    cost_per_hour: float
    num_gpus: int
    best_single_cost_per_hour: float
    saving: float  # fraction of the best single-type fleet's cost saved
    meets_slo: bool
    slo_gap: float
    slo_attainment: float
    bucket_edges: list[int]  # upper prompt length of each bucket
    solver: str
    note: str
    metrics: ServingReport | None


class SLOSpec(_Frozen):
    ttft_s: float
    tpot_s: float
    percentile: int


class ServingSearchResult(_Frozen):
    model: str
    gpus: list[str]
    objective: str
    rate: float  # requests/s
    requests: int  # simulated per candidate
    slo: SLOSpec
    space_size: int  # deployments considered (layouts x engine settings x modes), before replica counts
    fits_memory: int
    analytically_feasible: int
    simulations: int
    seconds: float
    truncated: bool  # stopped at the simulation limit
    feasible: bool
    message: str
    deployments: list[Deployment]
    closest: Deployment | None
    fleet: Fleet | None
    pareto: list[Deployment]
    skipped_gpus: dict[str, str]


def describe(d: Deployment | FleetPart) -> str:
    """A deployment or fleet part in one line: ``12 x h100-sxm TP4 fp8, chunked-prefill b256/t2048`` (``9P+3D x``
    for prefill and decode pools)."""
    if d.mode == "disaggregated":
        count = f"{d.prefill_replicas}P+{d.decode_replicas}D"
    else:
        count = str(d.replicas)
    layout = f"TP{d.tp}" + (f" PP{d.pp}" if d.pp > 1 else "")
    return f"{count} x {d.gpu} {layout} {d.precision}, {d.scheduler} b{d.max_batch}/t{d.max_batch_tokens}"
