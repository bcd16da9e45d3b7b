"""Rich rendering of results for people; ``print_json`` for scripts."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fathom.serving.metrics import ServingReport
from fathom.training.result import TrainingEstimate


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def _fmt_count(n: int) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _params_line(r: TrainingEstimate) -> str | None:
    """Parameter counts, so that an imported config can be checked against the publisher's figure."""
    if r.params is None:
        return None
    line = f"{_fmt_count(r.params)} parameters ({r.params:,})"
    if r.active_params is not None and r.active_params != r.params:
        line += f", {_fmt_count(r.active_params)} active per token ({r.active_params:,})"
    return line


def render_training(r: TrainingEstimate, console: Console | None = None) -> None:
    console = console or Console()
    p = r.plan
    console.print(
        f"[bold]{r.model}[/] on {r.num_gpus} x {r.gpu} ({r.system}) | tp={p['tp']} pp={p['pp']} dp={p['dp']} "
        f"cp={p['cp']} ep={p['ep']} vpp={p['vpp']} zero={p['zero']} {p['schedule']} recompute={p['recompute']} "
        f"{p['precision']} | seq {p['seq_len']} x global batch {p['global_batch']} "
        f"(micro {p['micro_batch']}, {r.grad_accum_steps} accumulation steps)"
    )
    if params := _params_line(r):
        console.print(f"model: {params}")
    summary = Table(title="Throughput", show_header=False)
    summary.add_row("step time", _fmt_s(r.step_time_s))
    summary.add_row("tokens/s", f"{r.tokens_per_s:,.0f} ({r.tokens_per_s_per_gpu:,.0f} per GPU)")
    summary.add_row("model TFLOP/s per GPU", f"{r.tflops_per_gpu:.1f}")
    summary.add_row("MFU / HFU", f"{r.mfu:.1%} / {r.hfu:.1%}")
    summary.add_row("bottleneck", r.bottleneck)
    if r.power_cap_w is not None:
        summary.add_row("power cap", f"{r.power_cap_w:.0f} W: step time x{r.power_cap_slowdown:.3f}")
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
        cost = "no price" if run.cost_usd is None else f"${run.cost_usd:,.0f} at ${run.price_per_gpu_hour_usd}/GPU-h"
        console.print(
            f"Training {run.tokens:.3g} tokens: {run.steps:,.0f} steps, {run.days:.1f} days, "
            f"{run.gpu_hours:,.0f} GPU-hours, {run.energy_mwh:,.1f} MWh, {cost}"
        )


def render_serving(r: ServingReport, console: Console | None = None) -> None:
    console = console or Console()
    lat = Table(title="Latency (seconds)")
    for col in ("metric", "p50", "p90", "p95", "p99", "mean"):
        lat.add_column(col, justify="left" if col == "metric" else "right")
    for name, stats in (("TTFT", r.ttft_s), ("TPOT (after first token)", r.tpot_s), ("ITL", r.itl_s),
                        ("end-to-end", r.e2e_s)):  # fmt: skip
        values = [getattr(stats, k) for k in ("p50", "p90", "p95", "p99", "mean")]
        lat.add_row(name, *("-" if v is None else f"{v:.4f}" for v in values))
    console.print(lat)
    t = r.throughput
    summary = Table(title="Throughput and cost", show_header=False)
    summary.add_row("completed / rejected", f"{r.completed} / {r.rejected}")
    summary.add_row("requests/s", f"{t.requests_per_s:.2f}")
    summary.add_row("output tokens/s", f"{t.output_tokens_per_s:,.0f}")
    summary.add_row("total tokens/s", f"{t.total_tokens_per_s:,.0f}")
    summary.add_row("goodput (requests/s within SLOs)", f"{r.goodput_requests_per_s:.2f}")
    summary.add_row("max concurrency", str(r.max_concurrency))
    summary.add_row("KV cache per replica (GiB)", f"{r.kv_cache_gib:.1f}" if r.kv_cache_gib is not None else "-")
    summary.add_row("preemptions", str(r.preemptions))
    if r.cost_per_million_tokens is not None:
        summary.add_row("cost per million output tokens", f"${r.cost_per_million_tokens:.3f}")
    if r.energy_per_token_j is not None:
        summary.add_row("energy per output token", f"{r.energy_per_token_j:.3f} J")
    console.print(summary)
    if r.rejected:
        _render_rejections(r, console)


def _render_rejections(r: ServingReport, console: Console) -> None:
    """Why requests were rejected (the limit each hit), so a non-zero count is never left unexplained."""
    reasons = Table(title="Rejected requests")
    reasons.add_column("reason")
    reasons.add_column("requests", justify="right")
    for reason, count in r.rejected_reasons.items():
        reasons.add_row(escape(reason), str(count))
    unexplained = r.rejected - sum(r.rejected_reasons.values())
    if unexplained > 0:
        reasons.add_row("reason not recorded", str(unexplained))
    console.print(reasons)
