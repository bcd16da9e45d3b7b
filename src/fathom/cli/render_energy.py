"""Rich tables for the energy/carbon figures of a run and the fault-tolerance report (``fathom train``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fathom.training.result import TrainingEstimate


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.2f} s"


def render_energy_and_reliability(r: TrainingEstimate, console: Console | None = None) -> None:
    console = console or Console()
    run = r.run
    if run is not None and run.avg_power_w_per_gpu is not None:
        t = Table(title="Energy and carbon", show_header=False)
        t.add_row("average board power per GPU", f"{run.avg_power_w_per_gpu:.0f} W")
        if run.power_cap_w is not None:
            t.add_row("power cap", f"{run.power_cap_w:.0f} W: step time x{run.power_cap_slowdown:.3f}")
        t.add_row("energy: GPUs at their limit (TDP x time x PUE)", f"{run.energy_mwh:,.1f} MWh")
        t.add_row("energy: GPUs, phase-aware", f"{run.energy_phase_mwh:,.1f} MWh (PUE {run.pue:g})")
        t.add_row("energy: whole servers, phase-aware", f"{run.energy_server_mwh:,.1f} MWh")
        if run.co2e_t is not None:
            t.add_row("operational CO2e", f"{run.co2e_t:,.1f} t ({run.region}: {run.grid_gco2e_per_kwh:g} g/kWh)")
        else:
            t.add_row("operational CO2e", "give --region")
        emb = "-" if run.embodied_co2e_t is None else f"{run.embodied_co2e_t:,.2f} t"
        t.add_row("embodied CO2e (share of device lifetime)", emb)
        console.print(t)
    rel = r.reliability
    if rel is None:
        return
    t = Table(title=f"Fault tolerance ({rel.checkpoint} checkpoints)", show_header=False)
    t.add_row("MTBF", f"{rel.mtbf_hours_per_gpu:,.0f} h per GPU -> {rel.cluster_mtbf_hours:,.2f} h for the cluster")
    t.add_row("checkpoint size", f"{rel.checkpoint_gib_total:,.1f} GiB ({rel.checkpoint_gib_per_gpu:.2f} GiB per GPU)")
    t.add_row("GPU -> host / to storage", f"{_minutes(rel.gpu_to_host_s)} / {_minutes(rel.storage_write_s)} "
              f"at {rel.storage_bw_GBps:g} GB/s")  # fmt: skip
    if rel.peer_copy_s is not None:
        fits = "fits" if rel.host_memory_fits else "[red]does not fit[/]"
        t.add_row("copy to a peer's host memory", f"{_minutes(rel.peer_copy_s)} (host memory: {fits})")
    t.add_row("training stalls per checkpoint", _minutes(rel.blocking_s))
    t.add_row("restart (detect, reschedule, load)", _minutes(rel.restart_s))
    which = "Daly optimum" if rel.interval_is_optimal else f"given; Daly optimum {_minutes(rel.daly_interval_s)}"
    t.add_row("checkpoint interval", f"{_minutes(rel.checkpoint_interval_s)} = {rel.checkpoint_interval_steps:,.1f} "
              f"steps ({which}; Young {_minutes(rel.young_interval_s)})")  # fmt: skip
    t.add_row("goodput", f"{rel.goodput:.2%}")
    if rel.run_days_with_failures is not None:
        t.add_row(
            "run with failures", f"{rel.run_days_with_failures:,.1f} days, ~{rel.expected_failures:,.0f} failures"
        )
    console.print(t)
