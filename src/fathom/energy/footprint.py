"""Energy, carbon and the power-cap cost of one training estimate: the figures ``fathom train`` adds.

A power cap stretches the compute-bound components of the step (``fathom.energy.power``), so the step time,
throughput, MFU and the run's days, GPU-hours and cost are rescaled with it and ``time_breakdown`` still sums to
``step_time_s``. The run's energy is reported three ways: ``energy_mwh`` (the existing contract: the board
power limit, TDP or the cap, x time x PUE), ``energy_phase_mwh`` (phase-aware average board power) and
``energy_server_mwh`` (plus the host's share of each server); operational CO2e uses the server energy.
"""

from __future__ import annotations

from fathom.energy.carbon import embodied_co2e_t, grid_intensity, operational_co2e_t
from fathom.energy.power import power_profile, step_power
from fathom.specs.hardware import Cluster
from fathom.training.result import TrainingEstimate


def _mwh(num_gpus: int, watts: float, time_s: float, pue: float) -> float:
    return num_gpus * watts * time_s * pue / 3.6e9


def with_energy(
    est: TrainingEstimate, cluster: Cluster, *, region: str | None = None, power_cap_w: float | None = None
) -> TrainingEstimate:
    """``est`` with the power cap applied and the energy/carbon fields of ``run`` filled in."""
    profile = power_profile(cluster.device)
    sp = step_power(est.time_breakdown, profile, power_cap_w)
    slowdown = float(sp.slowdown)
    if power_cap_w is None:
        slowdown = 1.0  # no cap, no slowdown (not 1 + rounding)
    update: dict = {} if power_cap_w is None else {"power_cap_w": power_cap_w, "power_cap_slowdown": slowdown}
    if slowdown > 1.0:
        tb = {k: v * float(sp.component_scale[k]) for k, v in est.time_breakdown.items()}
        update.update(
            time_breakdown=tb,
            bottleneck=max(tb, key=tb.get),
            step_time_s=est.step_time_s * slowdown,
            tokens_per_s=est.tokens_per_s / slowdown,
            tokens_per_s_per_gpu=est.tokens_per_s_per_gpu / slowdown,
            tflops_per_gpu=est.tflops_per_gpu / slowdown,
            mfu=est.mfu / slowdown,
            hfu=est.hfu / slowdown,
        )
    if est.run is not None:
        run = est.run
        pue = cluster.system.pue
        time_s = run.time_s * slowdown
        gpu_hours = run.gpu_hours * slowdown
        avg = float(sp.avg_power_w)
        server = _mwh(cluster.num_gpus, avg + float(profile.host_w(avg)), time_s, pue)
        intensity = None if region is None else grid_intensity(region)
        limit = profile.tdp_w if power_cap_w is None else min(profile.tdp_w, power_cap_w)
        update["run"] = run.model_copy(
            update=dict(
                time_s=time_s,
                days=run.days * slowdown,
                gpu_hours=gpu_hours,
                cost_usd=None if run.cost_usd is None else run.cost_usd * slowdown,
                energy_mwh=_mwh(cluster.num_gpus, limit, time_s, pue),
                avg_power_w_per_gpu=avg,
                energy_phase_mwh=_mwh(cluster.num_gpus, avg, time_s, pue),
                energy_server_mwh=server,
                co2e_t=None if intensity is None else float(operational_co2e_t(server, intensity)),
                embodied_co2e_t=embodied_co2e_t(cluster.device, cluster.num_gpus, time_s),
                grid_gco2e_per_kwh=intensity,
                region=None if region is None else str(region),
                pue=pue,
                power_cap_w=power_cap_w,
                power_cap_slowdown=slowdown,
            )
        )
    return est.model_copy(update=update) if update else est
