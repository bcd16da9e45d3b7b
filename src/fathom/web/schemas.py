"""Request and response bodies of the HTTP API (they are its OpenAPI schema).

Closed choices reuse the Literals of ``fathom.specs`` so the web form, the CLI and the estimators agree on what is
valid. Models and hardware are catalog names or a pasted ``config.json``: never a path, since a server must not
read files a request names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, WithJsonSchema

from fathom.search.objectives import OBJECTIVES
from fathom.specs.plan import AttentionKernel, MoEDispatcher, Offload, Optimizer, Recompute, Schedule, TrainPrecision
from fathom.specs.serving import KVDtype, WeightDtype

Objective = Literal[tuple(OBJECTIVES)]  # type: ignore[valid-type]
MAX_INT = 2**31 - 1  # JSON integers the estimators hold in int64 arrays without overflow


def _length_text(value: Any) -> Any:
    """A length given as a JSON number (``512``, as ``--input-len 512``) in the string form the API parses."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


LENGTH_HELP = (
    "N (a JSON number or string), or fixed:N, uniform:low=A,high=B, normal:mean=M,std=S, lognormal:mean=M,sigma=S"
)
# A request length: a whole number of tokens or a distribution spec; numbers become strings before the schema checks.
Length = Annotated[
    str,
    BeforeValidator(_length_text),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_INT}, {"type": "string", "maxLength": 200}],
            "description": LENGTH_HELP,
        }
    ),
    Field(max_length=200),
]


def count(default=..., **kwargs):
    """A positive whole number (required unless a default is given)."""
    return Field(default, ge=1, le=MAX_INT, **kwargs)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelChoice(_Body):
    """A built-in preset (``model``) or a pasted Hugging Face ``config.json`` (``config``): exactly one."""

    model: str | None = Field(None, max_length=200, description="Preset name (GET /api/models).")
    config: dict[str, Any] | None = Field(None, description="A Hugging Face config.json, as a JSON object.")


class ClusterChoice(_Body):
    gpu: str = Field(max_length=200, description="Device name (GET /api/gpus).")
    system: str | None = Field(None, max_length=200, description="System name (GET /api/systems); default: the GPU's.")


class TrainCommon(ModelChoice, ClusterChoice):
    seq_len: int = count(description="Tokens per sequence.")
    global_batch: int = count(description="Sequences per optimizer step.")
    precision: TrainPrecision = "bf16"
    optimizer: Optimizer = "adamw"
    attention: AttentionKernel = "flash2"
    moe_dispatcher: MoEDispatcher = "alltoall"
    overlap_moe_comm: bool = False
    tokens: float | None = Field(None, gt=0, le=1e18, description="Tokens to train: days, GPU-hours, energy, cost.")
    price_per_gpu_hour: float | None = Field(None, ge=0, le=1e6)


class TrainEstimateRequest(TrainCommon):
    """One plan, as ``fathom train`` takes it (``dp`` inferred from ``num_gpus`` when omitted)."""

    num_gpus: int = count()
    micro_batch: int = count(1)
    tp: int = count(1)
    pp: int = count(1)
    dp: int | None = count(None)
    cp: int = count(1)
    ep: int = count(1)
    vpp: int = count(1)
    zero: int = Field(1, ge=0, le=3)
    schedule: Schedule | None = Field(None, description="Default: interleaved when vpp > 1, else 1f1b.")
    recompute: Recompute = "selective"
    offload: Offload = "none"
    sequence_parallel: bool = True
    overlap_grad_reduce: bool = True

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "model": "llama-3.1-8b",
                "gpu": "h100-sxm",
                "num_gpus": 8,
                "seq_len": 4096,
                "global_batch": 64,
                "tp": 2,
            }
        },
    )


class TrainSearchRequest(TrainCommon):
    """A plan search, as ``fathom plan train`` takes it: a fixed ``num_gpus`` or every count up to ``max_gpus``."""

    num_gpus: int | None = count(None)
    max_gpus: int | None = count(None)
    objective: Objective = "throughput"
    max_days: float | None = Field(None, gt=0, le=1e6)
    top: int = Field(10, ge=1, le=100)
    memory_headroom: float = Field(0.0, ge=0.0, lt=1.0)
    pareto: bool = True
    tp: list[PositiveInt] | None = Field(None, max_length=32)
    pp: list[PositiveInt] | None = Field(None, max_length=32)
    zero: list[int] | None = Field(None, max_length=4)
    recompute: list[Recompute] | None = Field(None, max_length=3)
    max_micro_batch: int = Field(16, ge=1, le=1024)


class ServeSimulateRequest(ModelChoice, ClusterChoice):
    """A serving deployment and workload, as ``fathom serve`` takes them (no trace files or empirical lengths)."""

    tp: int = Field(1, ge=1, le=2**20)
    pp: int = Field(1, ge=1, le=2**20)
    ep: int = Field(1, ge=1, le=2**20)
    replicas: int = Field(1, ge=1, le=2**20)
    precision: WeightDtype = "bf16"
    kv_dtype: KVDtype | None = Field(None, description="Default: fp8 with fp8 weights, else bf16.")
    arrival: Literal["poisson", "gamma", "fixed-rate", "offline", "closed-loop"] = "poisson"
    rate: float | None = Field(None, gt=0, le=1e6, description="Requests per second (open loop).")
    cv: float = Field(1.0, gt=0, le=100)
    duration_s: float | None = Field(None, gt=0, le=1e7)
    num_requests: int | None = count(None)
    concurrency: int | None = count(None)
    input_len: Length = "1024"
    output_len: Length = "256"
    scheduler: Literal[
        "static", "continuous", "chunked-prefill", "decode-priority", "prompt-first", "prompt-first-padded"
    ] = "continuous"
    max_batch: int = Field(256, ge=1, le=2**20)
    max_batch_tokens: int = Field(8192, ge=1, le=2**24)
    preemption: Literal["recompute", "swap"] = "recompute"
    prefix_caching: bool = False
    router: Literal["round-robin", "least-loaded", "prefix-affinity"] = "round-robin"
    cuda_graphs: bool = True
    memory_utilization: float = Field(0.9, ge=0.05, le=1.0)
    slo_ttft_s: float | None = Field(None, gt=0, le=1e6)
    slo_tpot_s: float | None = Field(None, gt=0, le=1e6)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    price_per_gpu_hour: float | None = Field(None, ge=0, le=1e6)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"model": "llama-3.1-8b", "gpu": "h100-sxm", "rate": 4, "num_requests": 200}},
    )


class ServeSweepRequest(_Body):
    """Throughput and latency against offered load: the same deployment simulated at each of ``rates``."""

    scenario: ServeSimulateRequest
    rates: list[Annotated[float, Field(gt=0, le=1e6)]] = Field(
        min_length=1, max_length=64, description="Requests per second, one run each."
    )


class ServeSearchRequest(ModelChoice):
    """The cheapest deployments meeting latency SLOs under a Poisson load, as ``fathom plan serve`` takes them."""

    gpus: list[str] = Field(min_length=1, max_length=8, description="GPU types to consider (GET /api/gpus).")
    system: str | None = Field(None, max_length=200)
    slo_ttft_s: float = Field(gt=0, le=1e4)
    slo_tpot_s: float = Field(gt=0, le=1e3)
    rate: float = Field(gt=0, le=1e6, description="Poisson requests per second.")
    input_len: Length = "1024"
    output_len: Length = "256"
    duration_s: float | None = Field(None, gt=0, le=1e7, description="Default: four request lifetimes, >= 30 s.")
    num_requests: int | None = count(None)
    percentile: Literal[50, 90, 95, 99] = 90
    objective: Literal["cost", "gpus"] = "cost"
    top: int = Field(5, ge=1, le=20)
    max_simulations: int = Field(40, ge=1, le=10_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class Curve(BaseModel):
    x: list[float]
    y: list[float]


class Timeline(BaseModel):
    """Time-weighted mean per bin of each pool's KV-cache use (%), queued and running requests."""

    time_s: list[float]
    pools: dict[str, dict[str, list[float]]]


class ServeSimulateResponse(BaseModel):
    report: dict[str, Any]  # the ``fathom serve --json`` keys
    cdf: dict[str, Curve]  # ttft_s, tpot_s, e2e_s
    timeline: Timeline
    num_gpus: int


class SweepPoint(BaseModel):
    rate: float
    report: dict[str, Any]


class ServeSweepResponse(BaseModel):
    points: list[SweepPoint]


class CatalogItem(BaseModel):
    name: str
    details: dict[str, Any]


class JobKind(_Body):
    kind: Literal["train_search", "serve_sweep", "serve_search"]
    request: dict[str, Any] = Field(
        description="The body of POST /api/train/search, /api/serve/sweep or /api/serve/search."
    )


class JobCreated(BaseModel):
    id: str
    status_url: str


class JobStatus(BaseModel):
    """``progress`` is the share of the job's runs done (a sweep has one per rate; a search is one run)."""

    id: str
    kind: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float
    done_units: int
    total_units: int
    elapsed_s: float
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None


class ErrorBody(BaseModel):
    """Every error answer: what kind of problem, and one line saying what to change."""

    error: str = Field(
        description="invalid_input (422), over_limit (413), timeout (408), busy (429), not_found (404), "
        "method_not_allowed (405), internal (500)"
    )
    message: str = Field(description="One line saying what to change, naming the field where there is one.")
