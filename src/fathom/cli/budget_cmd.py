"""``fathom budget``: a compute budget -> compute-optimal model size, tokens, batch, plan, time, cost, energy."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fathom.cli.render import print_json


def register(app: typer.Typer) -> None:
    @app.command("budget")
    def budget(
        gpu: Annotated[str, typer.Option(help="GPU name (see `fathom gpus`).")],
        num_gpus: Annotated[int, typer.Option(min=1, help="GPUs the run uses.")],
        flops: Annotated[float | None, typer.Option(help="Training compute budget, FLOPs.")] = None,
        gpu_days: Annotated[float | None, typer.Option(help="Budget in GPU-days (all GPUs together).")] = None,
        dollars: Annotated[float | None, typer.Option(help="Budget in USD at the GPU's price per hour.")] = None,
        unique_tokens: Annotated[float | None, typer.Option(help="Unique tokens available (repeats beyond).")] = None,
        seq_len: Annotated[int, typer.Option(min=1, help="Tokens per sequence.")] = 4096,
        price_per_gpu_hour: Annotated[float | None, typer.Option(min=0, help="USD; default: catalog.")] = None,
        region: Annotated[str | None, typer.Option(help="Grid for CO2e (region name or gCO2e/kWh).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Compute-optimal model size and tokens for a budget (Chinchilla), its batch, plan, time, cost, energy."""
        from fathom.budget.planner import plan_budget
        from fathom.cli.render_energy import render_energy_and_reliability

        r = plan_budget(gpu=gpu, num_gpus=num_gpus, flops=flops, gpu_days=gpu_days, dollars=dollars,
                        unique_tokens=unique_tokens, seq_len=seq_len, price_per_gpu_hour=price_per_gpu_hour,
                        region=region)  # fmt: skip
        if json_out:
            print_json(r.model_dump(mode="json"))
            return
        console = Console()
        t = Table(title="Compute-optimal run (Hoffmann et al. 2022)", show_header=False)
        t.add_row("budget", f"{r.flops:.3g} FLOPs" + (f" ({r.gpu_days:,.0f} GPU-days)" if r.gpu_days else ""))
        t.add_row("parameters (optimal)", f"{r.params_optimal / 1e9:,.1f} B")
        t.add_row("tokens", f"{r.tokens / 1e12:,.2f} T")
        if r.unique_tokens is not None:
            t.add_row("unique tokens / epochs", f"{r.unique_tokens / 1e12:,.2f} T / {r.epochs:.2f} "
                      f"(effective {r.effective_tokens / 1e12:,.2f} T, Muennighoff et al. 2023)")  # fmt: skip
        t.add_row("predicted loss", f"{r.predicted_loss:.3f} nats/token")
        t.add_row("batch", f"{r.global_batch} x {r.seq_len} tokens (DeepSeek optimum {r.batch_tokens_deepseek:.3g}, "
                  f"critical {r.critical_batch_tokens:.3g})")  # fmt: skip
        s = r.shape
        t.add_row("shape", f"{s['num_layers']} layers x {s['hidden_size']} hidden, {s['num_heads']} heads "
                  f"({s['num_kv_heads']} KV), FFN {s['ffn_size']}: {s['num_params'] / 1e9:,.1f} B params")  # fmt: skip
        e, p = r.estimate, r.estimate.plan
        t.add_row("plan", f"tp{p['tp']} pp{p['pp']} dp{p['dp']} cp{p['cp']} zero{p['zero']} {p['schedule']} "
                  f"recompute={p['recompute']} micro {p['micro_batch']} ({r.plan_source})")  # fmt: skip
        t.add_row("throughput", f"{e.tokens_per_s:,.0f} tokens/s, MFU {e.mfu:.1%}")
        run = e.run
        cost = "no price" if run.cost_usd is None else f"${run.cost_usd:,.0f}"
        t.add_row("run", f"{run.days:,.1f} days, {run.gpu_hours:,.0f} GPU-hours, {cost}")
        console.print(t)
        render_energy_and_reliability(e, console)
