"""The JSON-ready result of one training estimate (keys are a contract: scripts depend on them)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from pydantic import BaseModel

from fathom.reliability.report import ReliabilityReport
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan

SECONDS_PER_DAY = 86400.0


class MemoryReport(BaseModel):
    peak_gib: float
    capacity_gib: float
    headroom_gib: float  # negative: does not fit, by this much
    breakdown: dict[str, float]  # GiB per component


class RunReport(BaseModel):
    """Cost of training ``tokens`` tokens with this plan (energy = power x time x PUE)."""

    tokens: float
    steps: float
    time_s: float
    days: float
    gpu_hours: float
    energy_mwh: float
    cost_usd: float | None
    price_per_gpu_hour_usd: float | None
    # Phase-aware energy and carbon (fathom.energy); filled by the API, absent from older callers' results.
    avg_power_w_per_gpu: float | None = None  # board power averaged over the step's phases
    energy_phase_mwh: float | None = None  # GPUs x average board power x time x PUE
    energy_server_mwh: float | None = None  # the same with the host's share of each server
    co2e_t: float | None = None  # operational: server energy x grid intensity (with --region)
    embodied_co2e_t: float | None = None  # the run's share of the devices' manufacturing carbon
    grid_gco2e_per_kwh: float | None = None
    region: str | None = None
    pue: float | None = None
    power_cap_w: float | None = None
    power_cap_slowdown: float | None = None  # step time under the cap / uncapped step time


class TrainingEstimate(BaseModel):
    model: str
    # The model's parameter count and the part each token touches (MoE: top_k experts): shown with every estimate
    # so that an imported config.json can be checked against the publisher's figure.
    params: int | None = None
    active_params: int | None = None
    gpu: str
    system: str
    num_gpus: int
    plan: dict
    grad_accum_steps: int
    step_time_s: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    tflops_per_gpu: float
    mfu: float
    hfu: float
    fits: bool
    memory: MemoryReport
    time_breakdown: dict[str, float]  # seconds per step by component
    bottleneck: str
    run: RunReport | None = None
    reliability: ReliabilityReport | None = None  # checkpoints, failures, goodput (fathom.reliability)
    # With --power-cap: the cap and the step's slowdown under it, whether or not a run (--tokens) is priced.
    power_cap_w: float | None = None
    power_cap_slowdown: float | None = None


def _first(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def build_result(
    model: ModelSpec,
    cluster: Cluster,
    plan: TrainingPlan,
    row: dict,
    *,
    tokens: float | None,
    price_per_gpu_hour: float | None,
) -> TrainingEstimate:
    mem, times = row["memory"], row["time"]
    breakdown = {f.name: _first(getattr(mem, f.name)) / GIB for f in fields(mem)}
    tb = {f.name: _first(getattr(times, f.name)) for f in fields(times)}
    step = _first(row["step_time_s"])
    peak = _first(row["peak_memory_bytes"]) / GIB
    capacity = cluster.device.memory_gib
    tokens_per_s = _first(row["tokens_per_s"])
    run = None
    if tokens:
        price = price_per_gpu_hour if price_per_gpu_hour is not None else cluster.device.price_per_gpu_hour_usd
        time_s = tokens / tokens_per_s
        gpu_hours = time_s * cluster.num_gpus / 3600.0
        energy = cluster.num_gpus * cluster.device.tdp_w * time_s * cluster.system.pue / 3.6e9
        run = RunReport(
            tokens=tokens,
            steps=tokens / (plan.global_batch * plan.seq_len),
            time_s=time_s,
            days=time_s / SECONDS_PER_DAY,
            gpu_hours=gpu_hours,
            energy_mwh=energy,
            cost_usd=None if price is None else gpu_hours * price,
            price_per_gpu_hour_usd=price,
        )
    return TrainingEstimate(
        model=model.name,
        params=model.num_params,
        active_params=model.num_active_params,
        gpu=cluster.device.name,
        system=cluster.system.name,
        num_gpus=cluster.num_gpus,
        plan=plan.model_dump(),
        grad_accum_steps=plan.grad_accum_steps,
        step_time_s=step,
        tokens_per_s=tokens_per_s,
        tokens_per_s_per_gpu=tokens_per_s / cluster.num_gpus,
        tflops_per_gpu=_first(row["tflops_per_gpu"]),
        mfu=_first(row["mfu"]),
        hfu=_first(row["hfu"]),
        fits=bool(np.asarray(row["fits"]).reshape(-1)[0]),
        memory=MemoryReport(peak_gib=peak, capacity_gib=capacity, headroom_gib=capacity - peak, breakdown=breakdown),
        time_breakdown=tb,
        bottleneck=max(tb, key=tb.get),
        run=run,
    )
