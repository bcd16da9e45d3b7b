"""Rich rendering of results for people; ``print_json`` for scripts."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from fathom.training.result import TrainingEstimate


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def render_training(r: TrainingEstimate, console: Console | None = None) -> None:
    console = console or Console()
    p = r.plan
    console.print(
        f"[bold]{r.model}[/] on {r.num_gpus} x {r.gpu} ({r.system}) | tp={p['tp']} pp={p['pp']} dp={p['dp']} "
        f"cp={p['cp']} ep={p['ep']} vpp={p['vpp']} zero={p['zero']} {p['schedule']} recompute={p['recompute']} "
        f"{p['precision']} | seq {p['seq_len']} x global batch {p['global_batch']} "
        f"(micro {p['micro_batch']}, {r.grad_accum_steps} accumulation steps)"
    )
    summary = Table(title="Throughput", show_header=False)
    summary.add_row("step time", _fmt_s(r.step_time_s))
    summary.add_row("tokens/s", f"{r.tokens_per_s:,.0f} ({r.tokens_per_s_per_gpu:,.0f} per GPU)")
    summary.add_row("model TFLOP/s per GPU", f"{r.tflops_per_gpu:.1f}")
    summary.add_row("MFU / HFU", f"{r.mfu:.1%} / {r.hfu:.1%}")
    summary.add_row("bottleneck", r.bottleneck)
    console.print(summary)
    mem = Table(title="Memory per GPU (GiB)")
    mem.add_column("component")
    mem.add_column("GiB", justify="right")
    for k, v in r.memory.breakdown.items():
        mem.add_row(k.replace("_", " "), f"{v:.2f}")
    mem.add_row("[bold]peak[/]", f"[bold]{r.memory.peak_gib:.2f}[/] of {r.memory.capacity_gib:.0f}")
    console.print(mem)
    if r.fits:
        console.print(f"[green]fits[/]: {r.memory.headroom_gib:.1f} GiB free per GPU")
    else:
        console.print(f"[red]does not fit[/]: needs {-r.memory.headroom_gib:.1f} GiB more per GPU")
    tt = Table(title="Step time breakdown")
    tt.add_column("component")
    tt.add_column("time", justify="right")
    tt.add_column("share", justify="right")
    for k, v in r.time_breakdown.items():
        if v > 0:
            tt.add_row(k.replace("_", " "), _fmt_s(v), f"{v / r.step_time_s:.1%}")
    console.print(tt)
    if r.run:
        run = r.run
        cost = f"${run.cost_usd:,.0f} at ${run.price_per_gpu_hour_usd}/GPU-h" if run.cost_usd else "no price"
        console.print(
            f"Training {run.tokens:.3g} tokens: {run.steps:,.0f} steps, {run.days:.1f} days, "
            f"{run.gpu_hours:,.0f} GPU-hours, {run.energy_mwh:,.1f} MWh, {cost}"
        )
