"""Showing a serving search: rich tables for people, and the cost / latency-percentile front as a figure or page."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from fathom.search.serving_result import Deployment, ServingSearchResult, describe


def _pct(d: Deployment, r: ServingSearchResult, key: str) -> float | None:
    return getattr(getattr(d, key), f"p{r.slo.percentile}")


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else (f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.0f} ms")


def deployment_table(title: str, rows: list[Deployment], r: ServingSearchResult) -> Table:
    p = f"p{r.slo.percentile}"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("#", "deployment", "GPUs", "$/hour", f"TTFT {p}", f"TPOT {p}", "in SLO", "meets", "$/M tok"):
        table.add_column(col, justify="left" if col == "deployment" else "right", no_wrap=col == "deployment")
    for d in rows:
        per_m = d.cost_per_million_tokens
        table.add_row(
            str(d.rank or "-"),
            describe(d),
            str(d.num_gpus),
            f"{d.cost_per_hour:,.2f}",
            _fmt(_pct(d, r, "ttft_s")),
            _fmt(_pct(d, r, "tpot_s")),
            f"{d.slo_attainment:.0%}",
            "yes" if d.meets_slo else "[red]no[/]",
            "-" if per_m is None else f"{per_m:.3g}",
        )
    return table


def render_serving_search(r: ServingSearchResult, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    console.print(
        f"[bold]{r.model}[/] on {', '.join(r.gpus)} at {r.rate:.3g} requests/s: {r.space_size:,} deployments "
        f"considered, {r.fits_memory:,} fit in memory, {r.analytically_feasible:,} pass the analytic screen, "
        f"{r.simulations} simulations of {r.requests:,} requests, in {r.seconds:.1f} s (objective: {r.objective})"
    )
    for gpu, why in r.skipped_gpus.items():
        console.print(f"[yellow]skipped {gpu}[/]: {why}")
    if not r.feasible:
        console.print(f"[red]no feasible deployment[/]: {r.message}")
        if r.closest is not None:
            console.print(deployment_table("Closest deployment", [r.closest], r))
    else:
        console.print(deployment_table(f"Best {len(r.deployments)} deployments by {r.objective}", r.deployments, r))
        console.print(r.message)
    if r.fleet is not None:
        f = r.fleet
        table = Table(
            title=f"Heterogeneous fleet: ${f.cost_per_hour:,.2f}/h (best single type "
            f"${f.best_single_cost_per_hour:,.2f}/h, {f.saving:.1%} saved)",
            box=box.SIMPLE_HEAD,
        )
        for col in ("part", "GPUs", "$/hour", "share of requests", "prompt buckets (<= tokens)"):
            table.add_column(col, justify="left" if col == "part" else "right")
        for part in f.parts:
            edges = ", ".join(f"{f.bucket_edges[b]:,}" for b in part.buckets)
            table.add_row(
                describe(part), str(part.num_gpus), f"{part.cost_per_hour:,.2f}", f"{part.load_share:.0%}", edges
            )
        console.print(table)
        console.print(f"fleet: {f.note} ({f.solver})")
    if r.pareto:
        console.print(deployment_table("Pareto front: cost vs latency percentiles (every simulation)", r.pareto, r))


def pareto_figure_png(r: ServingSearchResult) -> bytes:
    """Cost per hour against TTFT and TPOT percentiles of every deployment on the front, SLOs dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    p = f"p{r.slo.percentile}"
    for ax, key, slo, label in zip(
        fig.subplots(1, 2),
        ("ttft_s", "tpot_s"),
        (r.slo.ttft_s, r.slo.tpot_s),
        (f"TTFT {p} (s)", f"TPOT {p} (s)"),
        strict=True,
    ):
        for meets, colour, name in ((True, "tab:green", "meets the SLOs"), (False, "tab:red", "misses them")):
            pts = [(d.cost_per_hour, _pct(d, r, key)) for d in r.pareto if d.meets_slo is meets]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.scatter(*zip(*pts, strict=True), color=colour, label=name, s=28)
        ax.axhline(slo, color="0.4", linestyle="--", linewidth=1, label="SLO")
        ax.set_xlabel("cost (USD per hour)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{r.model}: cost vs latency at {r.rate:.3g} requests/s")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.13, wspace=0.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_pareto(r: ServingSearchResult, path: str) -> None:
    """``.png``: the figure; ``.html``: the figure with the deployment tables in one self-contained page."""
    from fathom.reports.html import Image, Section, write_html
    from fathom.reports.html import Table as HtmlTable
    from fathom.reports.output import write_atomic

    png = pareto_figure_png(r)
    if str(path).lower().endswith(".png"):
        write_atomic(path, png)
        return
    p = f"p{r.slo.percentile}"
    columns = ["#", "deployment", "GPUs", "USD/hour", f"TTFT {p} (s)", f"TPOT {p} (s)", "in SLO", "meets"]

    def rows(ds):
        return [
            [
                d.rank,
                describe(d),
                d.num_gpus,
                d.cost_per_hour,
                _pct(d, r, "ttft_s"),
                _pct(d, r, "tpot_s"),
                d.slo_attainment,
                d.meets_slo,
            ]
            for d in ds
        ]

    sections = [
        Section(
            "Search",
            [r.message],
            [HtmlTable(columns, rows(r.deployments or [r.closest] * bool(r.closest)), "Deployments")],
        ),
        Section(
            "Pareto front",
            [],
            [HtmlTable(columns, rows(r.pareto), "Cost vs latency")],
            [Image(png, "Cost vs latency percentiles")],
        ),
    ]
    write_html(path, f"fathom plan serve: {r.model}", sections)
