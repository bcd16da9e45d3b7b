"""The analytical screen of the serving search: every candidate deployment's replica count from the capacity model.

Layouts that cannot hold the model are dropped first (memory alone), then each surviving layout's capacity is
worked out for all engine settings at once (``serving_capacity``). A candidate the model says can never meet the
SLOs is kept aside for the "closest miss" report, not simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.errors import FathomInputError
from fathom.inference.step_model import InferenceStepModel
from fathom.search.serving_capacity import SLO, Capacity, replica_capacity
from fathom.search.serving_space import (
    Candidate,
    Hardware,
    LoadStats,
    ServingAxes,
    engines,
    fits,
    hardware_options,
    serving_plan,
)
from fathom.specs.model import ModelSpec

# The capacity model ignores queueing, so it is an optimistic estimate; a replica count below
# ceil(rate / (BOUND_SLACK x capacity)) is taken to be hopeless and never simulated.
BOUND_SLACK = 1.25
CLOSEST_MAX_REPLICAS = 64  # a closest miss is simulated with at most this many replicas
OBJECTIVES = ("cost", "gpus")


@dataclass
class Screened:
    """A candidate with its analytical verdict. Counts are ``(replicas,)`` or ``(prefill, decode)``."""

    cand: Candidate
    unit: float  # objective per replica: USD per hour, or GPUs
    rates: tuple[float, ...]  # requests/s per replica (per pool when disaggregated); 0 = never meets the SLOs
    gap: float  # analytic latency over SLO at its best batch size (<= 1 meets)
    est: tuple[int, ...]
    lb: tuple[int, ...]

    @property
    def feasible(self) -> bool:
        return all(r > 0 for r in self.rates)

    def score(self, counts: tuple[int, ...]) -> float:
        return sum(counts) * self.unit


@dataclass
class Screen:
    rows: list[Screened]
    space_size: int = 0
    fits_memory: int = 0
    steps: dict[Hardware, InferenceStepModel] = field(default_factory=dict)
    kv: dict[Candidate, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)  # USD per GPU-hour of each type searched


def gpu_prices(gpus: list[str], prices: dict[str, float], system: str | None) -> tuple[dict[str, float], dict]:
    """USD per GPU-hour per type: ``prices`` first, then the catalog. Types with neither are skipped, with why."""
    out, skipped = {}, {}
    for gpu in gpus:
        device = resolve_cluster(gpu, 1, system=system).device
        price = prices.get(gpu, device.price_per_gpu_hour_usd)
        if price is None or price <= 0:
            skipped[gpu] = f"no catalog price; give --price {gpu}=USD"
        else:
            out[gpu] = float(price)
    unknown = set(prices) - set(gpus)
    if unknown:
        raise FathomInputError(f"price: {', '.join(sorted(unknown))} is not among --gpus ({', '.join(gpus)})")
    return out, skipped


def counts(rate: float, per_replica: float, slack: float = 1.0) -> int:
    return max(1, math.ceil(rate / (slack * per_replica) - 1e-9))


def screen(
    model: ModelSpec,
    gpus: list[str],
    load: LoadStats,
    slo: SLO,
    axes: ServingAxes,
    prices: dict[str, float],
    objective: str = "cost",
    system: str | None = None,
) -> Screen:
    """Every candidate of the space with its analytic replica counts, cheapest estimate first."""
    if objective not in OBJECTIVES:
        raise FathomInputError(f"objective: unknown value {objective!r} (valid: {', '.join(OBJECTIVES)})")
    axes.check()
    settings = engines(axes)
    if not settings:
        raise FathomInputError("max_batch_tokens: every budgeted setting is below its max_batch; widen the axes")
    priced, skipped = gpu_prices(gpus, prices, system)
    out = Screen(rows=[], skipped=skipped, prices=priced)
    modes = (False, True) if axes.disaggregate else (False,)
    whole = load.overall()
    for gpu in priced:
        layouts = hardware_options(model, gpu, axes, system)
        out.space_size += len(layouts) * len(settings) * len(modes)
        fitting = 0
        for hw in layouts:
            kv = np.array([fits(model, hw, e, system) for e in settings])
            if not kv.any():
                continue
            ok = [i for i in np.flatnonzero(kv)]
            fitting += len(ok) * len(modes)
            cluster = resolve_cluster(gpu, hw.gpus, system=system)
            step = InferenceStepModel(model, cluster, serving_plan(hw, settings[ok[0]]))
            out.steps[hw] = step
            chosen = [settings[i] for i in ok]
            cap = replica_capacity(step, chosen, kv[ok], whole, slo, cluster.system.inter_node_bw_GBps * 1e9)
            unit = hw.gpus * (priced[gpu] if objective == "cost" else 1.0)
            for i, engine in enumerate(chosen):
                for disaggregated in modes:
                    cand = Candidate(hw, engine, disaggregated)
                    out.kv[cand] = int(kv[ok[i]])
                    out.rows.append(_row(cand, unit, cap, i, load.rate))
        out.fits_memory += fitting
        if not layouts:  # no layout is valid at all: say the rules, not "does not fit"
            out.skipped[gpu] = (f"no layout of the space can run {model.name}: TP must divide its "
                                f"{model.num_heads} attention heads and stay inside a node, PP at most its "
                                f"{model.num_layers} layers, TP x PP at most {axes.max_gpus_per_replica} GPUs per "
                                "replica")  # fmt: skip
        elif not fitting:
            out.skipped[gpu] = f"{model.name} does not fit at any layout of the space (at most "
            out.skipped[gpu] += f"{axes.max_gpus_per_replica} GPUs per replica)"
    out.rows.sort(key=lambda r: (not r.feasible, r.score(r.est) if r.feasible else r.gap, r.gap))
    return out


def _row(cand: Candidate, unit: float, cap: Capacity, i: int, rate: float) -> Screened:
    if not cand.disaggregated:
        lam = float(cap.aggregated[i, 0])
        if lam > 0:
            return Screened(
                cand,
                unit,
                (lam,),
                float(cap.aggregated_gap[i, 0]),
                (counts(rate, lam),),
                (counts(rate, lam, BOUND_SLACK),),
            )
        near = float(cap.aggregated_closest[i, 0])
        n = min(counts(rate, near), CLOSEST_MAX_REPLICAS) if near > 0 else 1
        return Screened(cand, unit, (0.0,), float(cap.aggregated_gap[i, 0]), (n,), (n,))
    lp, ld = float(cap.prefill[i, 0]), float(cap.decode[i, 0])
    gap = float(cap.disaggregated_gap[i, 0])
    if lp > 0 and ld > 0:
        est = (counts(rate, lp), counts(rate, ld))
        return Screened(cand, unit, (lp, ld), gap, est, (counts(rate, lp, BOUND_SLACK), counts(rate, ld, BOUND_SLACK)))
    return Screened(cand, unit, (0.0, 0.0), gap, (1, 1), (1, 1))


def bucket_capacity(screen_: Screen, cand: Candidate, load: LoadStats, slo: SLO, system: str | None) -> np.ndarray:
    """Requests/s of one aggregated replica per length bucket (0 where it cannot meet the SLOs for that bucket)."""
    step = screen_.steps[cand.hw]
    link = resolve_cluster(cand.hw.gpu, cand.hw.gpus, system=system).system.inter_node_bw_GBps * 1e9
    cap = replica_capacity(step, [cand.engine], np.array([screen_.kv[cand]]), load, slo, link)
    return cap.aggregated[0]
