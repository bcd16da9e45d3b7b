"""The serving search space: which replica layouts and engine settings to try, and the load they must carry.

A candidate deployment is a replica's hardware (GPU type, TP, PP, weight precision), its engine settings (scheduler,
max batch, token budget) and a mode (one pool of replicas, or prefill and decode pools, Splitwise/DistServe). How
many replicas it needs is what the search finds. The load is summarised from the very requests the simulator
replays, so the analytical screen and the confirming simulations see the same lengths.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.errors import FathomInputError
from fathom.inference.memory import replica_memory
from fathom.serving.request import Request
from fathom.serving.schedulers import list_schedulers
from fathom.specs.model import ModelSpec
from fathom.specs.serving import WEIGHT_DTYPES, ServingPlan

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class ServingAxes:
    """Candidate values per searched axis (every combination is tried)."""

    tp: tuple[int, ...] = (1, 2, 4, 8)
    pp: tuple[int, ...] = (1, 2)
    precision: tuple[str, ...] = ("bf16", "fp8")
    scheduler: tuple[str, ...] = ("chunked-prefill",)
    max_batch: tuple[int, ...] = (64, 256)
    max_batch_tokens: tuple[int, ...] = (2048, 8192)
    disaggregate: bool = True
    max_gpus_per_replica: int = 8

    def check(self) -> None:
        for name in ("tp", "pp", "max_batch", "max_batch_tokens"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values):
                raise FathomInputError(f"{name}: candidates must be positive integers (got {list(values)})")
        for p in self.precision:
            if p not in WEIGHT_DTYPES:
                raise FathomInputError(f"precision: unknown value {p!r} (valid: {', '.join(WEIGHT_DTYPES)})")
        for s in self.scheduler:
            if s not in list_schedulers():
                raise FathomInputError(f"scheduler: unknown value {s!r} (valid: {', '.join(list_schedulers())})")
        if self.max_gpus_per_replica < 1:
            raise FathomInputError("max_gpus_per_replica: must be a positive integer")


@dataclass(frozen=True)
class Hardware:
    """What one replica runs on: everything its step model depends on."""

    gpu: str
    tp: int
    pp: int
    precision: str

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def kv_dtype(self) -> str:
        return "fp8" if self.precision == "fp8" else "bf16"  # as ``fathom serve`` defaults


@dataclass(frozen=True)
class Engine:
    scheduler: str
    max_batch: int
    max_batch_tokens: int


@dataclass(frozen=True)
class Candidate:
    hw: Hardware
    engine: Engine
    disaggregated: bool

    def plan(self) -> ServingPlan:
        return serving_plan(self.hw, self.engine)


def serving_plan(hw: Hardware, engine: Engine) -> ServingPlan:
    return ServingPlan(
        tp=hw.tp,
        pp=hw.pp,
        weight_dtype=hw.precision,
        kv_dtype=hw.kv_dtype,
        max_batch=engine.max_batch,
        max_batch_tokens=engine.max_batch_tokens,
    )


def engines(axes: ServingAxes) -> list[Engine]:
    """Engine settings; budgeted schedulers need a token budget of at least the batch (one token per decode)."""
    out = []
    for s, b, t in itertools.product(axes.scheduler, axes.max_batch, axes.max_batch_tokens):
        if s in ("chunked-prefill", "decode-priority") and t < b:
            continue
        out.append(Engine(s, int(b), int(t)))
    return out


def fits(model: ModelSpec, hw: Hardware, engine: Engine, system: str | None = None) -> int:
    """KV-cache tokens of one replica, 0 when the weights and activations leave no room."""
    device = resolve_cluster(hw.gpu, hw.gpus, system=system).device
    try:
        return replica_memory(model, device, serving_plan(hw, engine)).kv_capacity_tokens
    except FathomInputError:
        return 0


def hardware_options(model: ModelSpec, gpu: str, axes: ServingAxes, system: str | None = None) -> list[Hardware]:
    """Layouts that can run the model on ``gpu``: TP divides the attention heads and stays inside a node, PP at
    most the layers, at most ``max_gpus_per_replica`` GPUs."""
    per_node = resolve_cluster(gpu, 1, system=system).system.gpus_per_node
    out = []
    for tp, pp, prec in itertools.product(sorted(set(axes.tp)), sorted(set(axes.pp)), axes.precision):
        if model.num_heads % tp or tp > per_node or pp > model.num_layers or tp * pp > axes.max_gpus_per_replica:
            continue
        out.append(Hardware(gpu, int(tp), int(pp), prec))
    return out


@dataclass(frozen=True)
class LoadStats:
    """What the analytical screen needs of a load: its rate and, per length bucket, the mean prompt and output
    and the ``percentile``-th prompt (the prompt whose prefill sets the TTFT percentile)."""

    rate: float  # requests per second
    share: np.ndarray  # per bucket: fraction of requests
    mean_input: np.ndarray
    mean_output: np.ndarray
    tail_input: np.ndarray  # per bucket: the percentile-th prompt length
    edges: np.ndarray  # prompt-length bucket upper edges (inclusive); the last is the longest prompt
    bucket: np.ndarray  # per request: its bucket
    tail_all: float  # the percentile-th prompt of the whole load

    @property
    def buckets(self) -> int:
        return len(self.share)

    def overall(self) -> LoadStats:
        """The whole load as one bucket."""
        w = self.share
        return LoadStats(
            self.rate,
            np.ones(1),
            np.array([w @ self.mean_input]),
            np.array([w @ self.mean_output]),
            np.array([self.tail_all]),
            self.edges[-1:],
            np.zeros_like(self.bucket),
            self.tail_all,
        )


def load_stats(requests: list[Request], rate: float | None, percentile: int, buckets: int = 1) -> LoadStats:
    """Summarise ``requests``; ``rate`` defaults to requests over their arrival span (a trace). Buckets split the
    prompts at length quantiles, as Melange (Griggs et al. 2024) buckets requests by size."""
    if not requests:
        raise FathomInputError("workload: no requests to plan for")
    if percentile not in PERCENTILES:
        raise FathomInputError(f"percentile: {percentile} is not one of {', '.join(map(str, PERCENTILES))}")
    if buckets < 1:
        raise FathomInputError("buckets: must be a positive integer")
    inputs = np.array([r.input_tokens for r in requests], dtype=float)
    outputs = np.array([r.output_tokens for r in requests], dtype=float)
    if rate is None:
        arrivals = np.array([r.arrival_s for r in requests], dtype=float)
        span = float(arrivals.max() - arrivals.min())
        if span <= 0:
            raise FathomInputError("trace: all requests arrive at once; a serving plan needs a request rate")
        rate = (len(requests) - 1) / span
    edges = np.unique(np.quantile(inputs, np.linspace(0, 1, buckets + 1)[1:], method="higher"))
    which = np.searchsorted(edges, inputs, side="left")
    idx = [np.flatnonzero(which == b) for b in range(len(edges))]
    keep = [i for i in range(len(edges)) if idx[i].size]
    idx, edges = [idx[i] for i in keep], edges[keep]
    which = np.searchsorted(edges, inputs, side="left")
    return LoadStats(
        rate=float(rate),
        share=np.array([i.size / inputs.size for i in idx]),
        mean_input=np.array([inputs[i].mean() for i in idx]),
        mean_output=np.array([outputs[i].mean() for i in idx]),
        tail_input=np.array([np.percentile(inputs[i], percentile) for i in idx]),
        edges=edges,
        bucket=which,
        tail_all=float(np.percentile(inputs, percentile)),
    )
