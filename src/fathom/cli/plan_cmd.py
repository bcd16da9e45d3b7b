"""``fathom plan ...``: search plan spaces. ``plan train`` ranks every training plan of a model on a cluster;
``plan serve`` finds the cheapest serving deployment meeting latency SLOs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fathom.cli.options import AttentionChoice, MoEDispatcherChoice, OptimizerChoice, PrecisionChoice, system_overrides
from fathom.cli.render import print_json
from fathom.errors import FathomInputError
from fathom.search.objectives import OBJECTIVES
from fathom.search.training_report import RankedPlan, TrainingSearchResult, describe

plan_app = typer.Typer(
    help="Search plan spaces: the best training plans, the cheapest serving deployments.", no_args_is_help=True
)

ObjectiveChoice = StrEnum("ObjectiveChoice", {v: v for v in OBJECTIVES})  # type: ignore[misc]
Ints = Annotated[list[int] | None, typer.Option(help="Only these values (repeat the flag); default: all.")]
Strs = Annotated[list[str] | None, typer.Option(help="Only these values (repeat the flag); default: all.")]


@plan_app.command("train")
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="Preset name, HF config.json or ModelSpec YAML.")],
    gpu: Annotated[str, typer.Option(help="GPU name or device YAML (see `fathom gpus`).")],
    seq_len: Annotated[int, typer.Option(min=1, help="Tokens per sequence.")],
    global_batch: Annotated[int, typer.Option(min=1, help="Sequences per optimizer step.")],
    num_gpus: Annotated[int | None, typer.Option(min=1, help="Exactly this many GPUs.")] = None,
    max_gpus: Annotated[int | None, typer.Option(min=1, help="Also search the GPU count, up to this.")] = None,
    system: Annotated[str | None, typer.Option(help="System name (default: the GPU's usual system).")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(min=1)] = None,
    intra_node_bw: Annotated[float | None, typer.Option(min=0.001, help="Measured GB/s per GPU per direction.")] = None,
    inter_node_bw: Annotated[float | None, typer.Option(min=0.001, help="Measured GB/s per GPU per direction.")] = None,
    objective: Annotated[ObjectiveChoice, typer.Option(help="What to rank by.")] = ObjectiveChoice.throughput,
    tokens: Annotated[float | None, typer.Option(min=1, help="Tokens to train: time, cost, energy of the run.")] = None,
    max_days: Annotated[
        float | None, typer.Option(min=0.0, help="Drop plans slower than this (needs --tokens).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="How many plans to show.")] = 10,
    memory_headroom: Annotated[float, typer.Option(min=0.0, max=0.99, help="Share of GPU memory kept free.")] = 0.0,
    price_per_gpu_hour: Annotated[float | None, typer.Option(min=0, help="USD; default: catalog price.")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="Also show the throughput/cost/GPUs front.")] = False,
    precision: Annotated[PrecisionChoice, typer.Option()] = PrecisionChoice.bf16,
    optimizer: Annotated[OptimizerChoice, typer.Option()] = OptimizerChoice.adamw,
    attention: Annotated[AttentionChoice, typer.Option(help="Attention kernel class.")] = AttentionChoice.flash2,
    moe_dispatcher: Annotated[MoEDispatcherChoice, typer.Option()] = MoEDispatcherChoice.alltoall,
    overlap_moe_comm: Annotated[bool, typer.Option("--overlap-moe-comm/--no-overlap-moe-comm")] = False,
    tp: Ints = None,
    pp: Ints = None,
    cp: Ints = None,
    ep: Ints = None,
    vpp: Ints = None,
    zero: Ints = None,
    micro_batch: Ints = None,
    max_micro_batch: Annotated[int, typer.Option(min=1, help="Largest micro-batch tried.")] = 16,
    recompute: Strs = None,
    schedule: Strs = None,
    offload: Strs = None,
    report: Annotated[str | None, typer.Option(help="Self-contained HTML report: ranking, Pareto plot.")] = None,
    plot: Annotated[
        str | None, typer.Option(help="Throughput of the ranked plans and the Pareto front: .png or .html.")
    ] = None,
    export: Annotated[
        str | None, typer.Option(help="Print the best plan as an engine's config: megatron, deepspeed, torchtitan.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Rank every valid training plan by throughput, time, cost or energy; show the best and why they win."""
    from fathom.api.search import search_training_plans
    from fathom.reports.output import REPORT_SUFFIXES, check_output_path
    from fathom.search.training_space import SearchAxes

    if report is not None:
        check_output_path(report, "--report", REPORT_SUFFIXES)  # before searching: a typo must not cost a search
    if plot is not None:
        from fathom.reports.output import PLOT_SUFFIXES

        check_output_path(plot, "--plot", PLOT_SUFFIXES)
    if export is not None:
        from fathom.cli.plan_export import check_engine

        check_engine(export, "training")

    def pick(values):
        return tuple(values) if values else None

    axes = SearchAxes(
        tp=pick(tp),
        pp=pick(pp),
        cp=pick(cp),
        ep=pick(ep),
        vpp=pick(vpp),
        zero=pick(zero),
        micro_batch=pick(micro_batch),
        recompute=pick(recompute),
        schedule=pick(schedule),
        offload=pick(offload),
        max_micro_batch=max_micro_batch,
    )
    overrides = system_overrides(gpus_per_node, intra_node_bw, inter_node_bw)
    result = search_training_plans(
        model=model,
        gpu=gpu,
        seq_len=seq_len,
        global_batch=global_batch,
        num_gpus=num_gpus,
        max_gpus=max_gpus,
        system=system,
        system_overrides=overrides,
        objective=objective.value,
        tokens=tokens,
        max_days=max_days,
        top=top,
        memory_headroom=memory_headroom,
        price_per_gpu_hour=price_per_gpu_hour,
        pareto=pareto,
        axes=axes,
        precision=precision.value,
        optimizer=optimizer.value,
        attention=attention.value,
        moe_dispatcher=moe_dispatcher.value,
        overlap_moe_comm=overlap_moe_comm,
    )
    if report is not None:
        from fathom.reports.training_report import write_search_report

        write_search_report(report, result, {o.opts[0]: ctx.params[o.name] for o in ctx.command.params})
    if plot is not None:
        from fathom.reports.training_report import write_search_plot

        write_search_plot(plot, result, {o.opts[0]: ctx.params[o.name] for o in ctx.command.params})
    if export is not None:
        from fathom.catalog.hardware import resolve_cluster
        from fathom.cli.plan_export import export_best_training

        per_node = gpus_per_node or resolve_cluster(gpu, 1, system=system).system.gpus_per_node
        export_best_training(result.plans[0] if result.plans else None, model, export, per_node)
    elif json_out:
        print_json(result.model_dump(mode="json", exclude_none=False))
    else:
        render_search(result)


def _plan_table(title: str, plans: list[RankedPlan], r: TrainingSearchResult) -> Table:
    """One row per plan: its layout in one column (``describe``), then what it achieves."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    run = any(p.run for p in plans)
    columns = ["#", "plan", "step", "tokens/s", "MFU", "GiB", "bottleneck"]
    columns += ["days", "cost"] if run else []
    shown_already = run and r.objective in ("time", "cost")
    columns += [] if r.objective == "throughput" or shown_already else [r.objective_unit]
    for col in columns:
        table.add_column(col, justify="left" if col in ("plan", "bottleneck") else "right", no_wrap=col == "plan")
    for p in plans:
        row = [str(p.rank or "-"), describe(p), f"{p.step_time_s:.3g} s", f"{p.tokens_per_s:,.0f}", f"{p.mfu:.1%}"]
        row += [f"{p.memory.peak_gib:.1f}", p.bottleneck.replace("_", " ")]
        if run:
            cost = p.run.cost_usd if p.run else None
            row += [f"{p.run.days:.1f}" if p.run else "-", f"${cost:,.0f}" if cost else "-"]
        if r.objective != "throughput" and not shown_already:
            row.append(f"{p.objective_value:,.4g}")
        table.add_row(*row)
    return table


def render_search(r: TrainingSearchResult, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: no terminal to fit, so keep each plan on one line
            console = Console(width=160)
    counts = (
        f"{r.gpu_counts[0]} GPUs"
        if len(r.gpu_counts) == 1
        else f"{len(r.gpu_counts)} GPU counts up to {max(r.gpu_counts)}"
    )
    console.print(
        f"[bold]{r.model}[/] on {r.gpu} ({r.system}), {counts}: {r.space_size:,} plans searched, "
        f"{r.fits_memory:,} fit in memory, {r.feasible:,} feasible, in {r.seconds:.2f} s (objective: {r.objective})"
    )
    if r.feasible == 0:
        console.print(f"[red]no feasible plan[/]: {r.message}")
        if r.closest is not None:
            console.print(f"closest: {describe(r.closest)}")
            console.print(_plan_table("Closest plan", [r.closest], r))
        return
    console.print(_plan_table(f"Best {len(r.plans)} plans by {r.objective}", r.plans, r))
    for line in r.why:
        console.print(f"- {line}")
    if r.pareto:
        console.print(_plan_table("Pareto front: throughput vs cost vs GPU count", r.pareto, r))


def _prices(values: list[str] | None) -> dict[str, float]:
    out = {}
    for item in values or []:
        name, _, usd = item.partition("=")
        try:
            out[name.strip()] = float(usd)
        except ValueError:
            raise FathomInputError(f"--price: expected GPU=USD like l40s=1.2, got {item!r}") from None
        if not out[name.strip()] > 0:
            raise FathomInputError(f"--price: {item!r} must be a positive USD per GPU-hour")
    return out


@plan_app.command("serve")
def serve(
    model: Annotated[str, typer.Option(help="Preset name, HF config.json or ModelSpec YAML.")],
    gpus: Annotated[str, typer.Option(help="GPU types to consider, comma-separated (see `fathom gpus`).")],
    slo_ttft: Annotated[float, typer.Option(min=0.0, help="TTFT SLO, seconds (at --percentile).")],
    slo_tpot: Annotated[float, typer.Option(min=0.0, help="TPOT SLO, seconds (at --percentile).")],
    rate: Annotated[float | None, typer.Option(min=0.0, help="Poisson requests per second.")] = None,
    input_len: Annotated[int | None, typer.Option(min=1)] = None,
    input_dist: Annotated[str | None, typer.Option(help="e.g. lognormal:mean=300,sigma=0.8")] = None,
    output_len: Annotated[int | None, typer.Option(min=1)] = None,
    output_dist: Annotated[str | None, typer.Option()] = None,
    trace: Annotated[str | None, typer.Option(help="JSONL/CSV trace instead of --rate.")] = None,
    duration: Annotated[float | None, typer.Option(min=0.0, help="Seconds simulated per candidate.")] = None,
    num_requests: Annotated[int | None, typer.Option(min=1, help="Requests simulated per candidate.")] = None,
    percentile: Annotated[int, typer.Option(help="SLO percentile: 50, 90, 95 or 99.")] = 90,
    objective: Annotated[str, typer.Option(help="cost (USD/hour) or gpus.")] = "cost",
    max_gpus_per_replica: Annotated[int, typer.Option(min=1)] = 8,
    tp: Ints = None,
    pp: Ints = None,
    precision: Strs = None,
    scheduler: Strs = None,
    max_batch: Ints = None,
    max_batch_tokens: Ints = None,
    disaggregate: Annotated[bool, typer.Option("--disaggregate/--no-disaggregate", help="Also try P/D pools.")] = True,
    price: Annotated[list[str] | None, typer.Option(help="GPU=USD per GPU-hour (repeat); default: catalog.")] = None,
    buckets: Annotated[int, typer.Option(min=1, help="Prompt-length buckets of the heterogeneous fleet.")] = 3,
    system: Annotated[str | None, typer.Option(help="System for every GPU type (default: each one's own).")] = None,
    max_simulations: Annotated[int, typer.Option(min=1)] = 80,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    top: Annotated[int, typer.Option(min=1, help="How many deployments to show.")] = 5,
    plot: Annotated[str | None, typer.Option(help="Cost vs latency front: .png or .html.")] = None,
    export: Annotated[
        str | None, typer.Option(help="Print the best deployment as an engine's launch command: vllm, sglang.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The cheapest deployment meeting TTFT/TPOT SLOs: GPU type, TP/PP, precision, engine, replicas, P/D split."""
    from fathom.api.search import search_serving_deployments
    from fathom.reports.output import PLOT_SUFFIXES, check_output_path
    from fathom.search.serving_space import ServingAxes
    from fathom.search.serving_view import render_serving_search, write_pareto

    if plot is not None:
        check_output_path(plot, "--plot", PLOT_SUFFIXES)
    if export is not None:
        from fathom.cli.plan_export import check_engine

        check_engine(export, "serving")
    if input_len is not None and input_dist is not None:
        raise FathomInputError("give --input-len or --input-dist, not both")
    if output_len is not None and output_dist is not None:
        raise FathomInputError("give --output-len or --output-dist, not both")
    defaults = ServingAxes()

    def pick(values, default):
        return tuple(values) if values else default

    axes = ServingAxes(
        tp=pick(tp, defaults.tp),
        pp=pick(pp, defaults.pp),
        precision=pick(precision, defaults.precision),
        scheduler=pick(scheduler, defaults.scheduler),
        max_batch=pick(max_batch, defaults.max_batch),
        max_batch_tokens=pick(max_batch_tokens, defaults.max_batch_tokens),
        disaggregate=disaggregate,
        max_gpus_per_replica=max_gpus_per_replica,
    )
    result = search_serving_deployments(
        model=model, gpus=[g.strip() for g in gpus.split(",") if g.strip()], slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot,
        rate=rate, input_len=input_dist or str(input_len or 1024), output_len=output_dist or str(output_len or 256),
        trace=trace, duration_s=duration, num_requests=num_requests, percentile=percentile, objective=objective,
        top=top, axes=axes, prices=_prices(price), buckets=buckets, seed=seed, system=system,
        max_simulations=max_simulations,
    )  # fmt: skip
    if plot is not None:
        write_pareto(result, plot)
    if export is not None:
        from fathom.cli.plan_export import export_best_deployment

        export_best_deployment(result.deployments[0] if result.deployments else None, model, export)
    elif json_out:
        print_json(result.model_dump(mode="json"))
    else:
        render_serving_search(result)
