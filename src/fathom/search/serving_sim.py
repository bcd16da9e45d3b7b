"""Simulating candidate deployments for the serving search, exactly as ``fathom serve`` would.

The replicas are built as ``fathom.api.serving.simulate_serving`` builds them and the report is summarised with the
same arguments, so a deployment the search prints can be re-run with its ``fathom serve`` command line and gives the
same numbers. One list of requests (one seed) is replayed on every candidate: common random numbers, so two
candidates differ by their deployment, not by their luck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fathom.catalog.hardware import resolve_cluster
from fathom.inference.step_model import InferenceStepModel
from fathom.search.serving_capacity import SLO
from fathom.search.serving_space import Engine, Hardware, serving_plan
from fathom.serving.metrics import ServingReport, summarize
from fathom.serving.request import Request
from fathom.serving.simulator import Disaggregation, ReplicaConfig, SimulationResult, simulate
from fathom.specs.hardware import GIB
from fathom.specs.model import ModelSpec

ROUTER = "least-loaded"


def percentile_of(stats, percentile: int) -> float | None:
    return getattr(stats, f"p{percentile}")


def meets_slo(report: ServingReport, total: int, slo: SLO) -> bool:
    """Every request finished, and the TTFT and TPOT percentiles are within their SLOs."""
    ttft, tpot = percentile_of(report.ttft_s, slo.percentile), percentile_of(report.tpot_s, slo.percentile)
    return (
        report.completed == total
        and report.rejected == 0
        and ttft is not None
        and ttft <= slo.ttft_s
        and (tpot is None or tpot <= slo.tpot_s)
    )


def slo_gap(report: ServingReport, slo: SLO) -> float:
    """How far a run is from its SLOs: the larger of percentile TTFT / SLO and percentile TPOT / SLO (<= 1 meets);
    infinite when nothing finished."""
    ttft, tpot = percentile_of(report.ttft_s, slo.percentile), percentile_of(report.tpot_s, slo.percentile)
    if ttft is None:
        return float("inf")
    return max(ttft / slo.ttft_s, (tpot or 0.0) / slo.tpot_s)


def attainment(report: ServingReport, total: int) -> float:
    """Share of all requests that finished within both SLOs: goodput x makespan is that count (rounded back to the
    integer it is, so all of them reads 1.0, not 0.9999999999999998), over the requests."""
    return round(report.goodput_requests_per_s * report.duration_s) / total if total else 0.0


@dataclass
class Simulator:
    """Builds and caches replica cost models, and simulates deployments of them on one request list."""

    model: ModelSpec
    requests: list[Request]
    slo: SLO
    seed: int = 0
    system: str | None = None
    count: int = 0  # simulations run
    _configs: dict = field(default_factory=dict, repr=False)

    def config(self, hw: Hardware, engine: Engine) -> ReplicaConfig:
        key = (hw, engine)
        if key not in self._configs:
            cluster = resolve_cluster(hw.gpu, hw.gpus, system=self.system)
            cost = InferenceStepModel(self.model, cluster, serving_plan(hw, engine))
            self._configs[key] = ReplicaConfig(
                cost=cost,
                scheduler=engine.scheduler,
                max_batch=engine.max_batch,
                max_batch_tokens=engine.max_batch_tokens,
                seed=self.seed,
            )
        return self._configs[key]

    def run(
        self,
        parts: list[tuple[Hardware, Engine, int]],
        requests: list[Request] | None = None,
        disaggregate: tuple[int, int] | None = None,
    ) -> SimulationResult:
        """Simulate replicas ``parts`` (hardware, engine, count) on ``requests`` (default: the whole load); with
        ``disaggregate=(P, D)``, one part's hardware as a P-prefill, D-decode split."""
        self.count += 1
        reqs = self.requests if requests is None else requests
        if disaggregate:
            hw, engine, _ = parts[0]
            cfg = self.config(hw, engine)
            link = resolve_cluster(hw.gpu, hw.gpus, system=self.system).system.inter_node_bw_GBps * 1e9
            split = Disaggregation(
                prefill=[cfg] * disaggregate[0], decode=[cfg] * disaggregate[1], kv_link_bytes_per_s=link
            )
            return simulate(reqs, [], router=ROUTER, seed=self.seed, disaggregation=split)
        configs = [self.config(hw, engine) for hw, engine, n in parts for _ in range(n)]
        return simulate(reqs, configs, router=ROUTER, seed=self.seed)

    def report(
        self, results: list[tuple[SimulationResult, Hardware, Engine, int]], price: dict[str, float]
    ) -> ServingReport:
        """One report over one or more runs of ``(result, hardware, engine, replicas)`` (each GPU type's share of a
        mixed fleet is its own run): the requests of all runs together, GPU-seconds and energy summed over every
        replica's GPUs, the fleet's price per GPU-hour. One run is summarised exactly as ``fathom serve`` does."""
        requests = [r for res, *_ in results for r in res.requests]
        gpus = sum(n * hw.gpus for _, hw, _, n in results)
        busy = sum(sum(s.busy_s for s in res.replicas) * hw.gpus for res, hw, _, _ in results)
        clusters = [(resolve_cluster(hw.gpu, hw.gpus, system=self.system), hw, n) for _, hw, _, n in results]
        watts = sum(c.device.tdp_w * hw.gpus * n for c, hw, n in clusters) / gpus
        dollars = sum(price[hw.gpu] * hw.gpus * n for _, hw, _, n in results) / gpus
        series = [
            (s.timeseries["time_s"], s.timeseries["running"])
            for res, *_ in results
            for s in res.replicas
            if s.timeseries
        ]
        kv = None
        if len(results) == 1:
            _, hw, engine, _ = results[0]
            kv = self.config(hw, engine).cost.memory.kv_cache_bytes * hw.gpus / GIB  # one replica, as fathom serve
        return summarize(
            requests,
            slo_ttft_s=self.slo.ttft_s,
            slo_tpot_s=self.slo.tpot_s,
            concurrency_series=series,
            busy_gpu_seconds=busy,
            num_gpus=gpus,
            device_power_w=watts,
            pue=clusters[0][0].system.pue,
            price_per_gpu_hour=dollars,
            kv_cache_gib=kv,
        )
