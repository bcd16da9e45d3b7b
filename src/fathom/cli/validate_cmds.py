"""``fathom validate ...``: predicted vs published, per row, with errors and means per source."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fathom.cli.render import print_json

validate_app = typer.Typer(help="Compare predictions with published measurements.", no_args_is_help=True)


@validate_app.command("training")
def training(
    dataset: Annotated[str, typer.Option(help="published | vtrain")] = "published",
    json_out: Annotated[bool, typer.Option("--json")] = False,
    show_skipped: Annotated[bool, typer.Option("--show-skipped/--hide-skipped")] = True,
) -> None:
    """Every published training run: measured, predicted, error; mean absolute % error per source."""
    from dataclasses import asdict

    from fathom.errors import FathomInputError
    from fathom.validation.runs import TRAINING_FILES
    from fathom.validation.training import summarize, validate_training

    if dataset not in TRAINING_FILES:
        raise FathomInputError(f"--dataset: unknown {dataset!r} (valid: {', '.join(TRAINING_FILES)})")
    results = validate_training(dataset)
    summary = summarize(results)
    if json_out:
        print_json({"rows": [asdict(r) for r in results], "summary": summary})
        return
    console = Console()
    table = Table(title=f"Training validation ({dataset})")
    for col in ("id", "model", "GPUs", "metric", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if col in ("id", "model", "metric") else "right")
    for r in results:
        if r.error_pct is None:
            if show_skipped:
                table.add_row(
                    r.row_id,
                    r.model,
                    str(r.num_gpus),
                    r.metric,
                    f"{r.measured:g}",
                    "-",
                    f"[dim]skipped: {r.skipped}[/]",
                )
            continue
        color = "green" if abs(r.error_pct) <= 10 else "yellow" if abs(r.error_pct) <= 25 else "red"
        table.add_row(
            r.row_id,
            r.model,
            str(r.num_gpus),
            r.metric,
            f"{r.measured:.4g}",
            f"{r.predicted:.4g}",
            f"[{color}]{r.error_pct:+.1f}%[/]",
        )
    console.print(table)
    _print_summary(console, summary)


def _print_summary(console: Console, summary: dict) -> None:
    st = Table(title="Mean absolute % error")
    for col in ("group | source", "rows", "mean |err|", "max |err|", "> 25%"):
        st.add_column(col)
    for k, v in summary.items():
        st.add_row(k, str(v["rows"]), f"{v['mean_abs_error_pct']:.1f}%", f"{v['max_abs_error_pct']:.1f}%",
                   str(v["rows_over_25pct"]))  # fmt: skip
    console.print(st)


@validate_app.command("fit-constants")
def fit_constants(
    dataset: Annotated[str, typer.Option(help="published | vtrain")] = "vtrain",
) -> None:
    """Refit the two in-training constants (host time per op, sustained GEMM share) on measured step times."""
    from fathom.specs.hardware import GEMM_SUSTAINED_DEFAULT, HOST_OP_US_DEFAULT
    from fathom.validation.calibrate import fit_stack_constants

    fit = fit_stack_constants(dataset)
    Console().print(
        f"host_op_us = {fit.host_op_us:g} (built-in {HOST_OP_US_DEFAULT:g}), gemm_sustained = "
        f"{fit.gemm_sustained:g} (built-in {GEMM_SUSTAINED_DEFAULT:g}); mean |error| "
        f"{fit.mean_abs_error_pct:.1f}% over {fit.rows} rows of {dataset}"
    )


@validate_app.command("serving")
def serving(
    json_out: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N scenarios.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Processes to simulate scenarios on.")] = os.cpu_count() or 1,
    show_skipped: Annotated[bool, typer.Option("--show-skipped/--hide-skipped")] = False,
) -> None:
    """Every published serving measurement: measured, simulated, error; mean absolute % error per source."""
    from dataclasses import asdict

    from rich.progress import Progress

    from fathom.validation.serving import scenario_count, summarize_serving, validate_serving

    with Progress(transient=True, disable=json_out) as bar:
        task = bar.add_task("simulating scenarios", total=scenario_count(limit))
        checks = validate_serving(limit=limit, jobs=jobs, progress=lambda: bar.advance(task))
    summary = summarize_serving(checks)
    if json_out:
        print_json({"rows": [asdict(c) for c in checks], "summary": summary})
        return
    console = Console()
    table = Table(title="Serving validation")
    for col in ("id", "metric", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if col in ("id", "metric") else "right")
    for c in checks:
        if c.error_pct is None:
            if show_skipped:
                table.add_row(c.row_id, c.metric, f"{c.measured:g}", "-", f"[dim]skipped: {c.skipped}[/]")
            continue
        color = "green" if abs(c.error_pct) <= 15 else "yellow" if abs(c.error_pct) <= 25 else "red"
        table.add_row(c.row_id, c.metric, f"{c.measured:.4g}", f"{c.predicted:.4g}", f"[{color}]{c.error_pct:+.1f}%[/]")
    console.print(table)
    _print_summary(console, summary)


@validate_app.command("energy")
def energy(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Published training footprints: energy and CO2e predicted from GPU-hours, GPU, PUE and grid intensity."""
    from dataclasses import asdict

    from fathom.validation.energy import summarize_energy, validate_energy

    checks = validate_energy()
    summary = summarize_energy(checks)
    if json_out:
        print_json({"rows": [asdict(c) for c in checks], "summary": summary})
        return
    console = Console()
    table = Table(title="Energy validation (published training footprints)")
    columns = ("id", "GPU", "GPU-hours", "plan", "W/GPU", "MWh published", "MWh predicted", "error", "CO2e t", "error")
    for col in columns:
        table.add_column(col, justify="left" if col in ("id", "GPU", "plan") else "right")
    for c in checks:
        if c.error_pct is None:
            skipped = f"[dim]skipped: {c.skipped}[/]"
            table.add_row(c.row_id, c.gpu, "-", "-", "-", f"{c.published_mwh:,.0f}", "-", skipped,
                          f"{c.published_co2e_t:,.1f}", "-")  # fmt: skip
            continue
        color = "green" if abs(c.error_pct) <= 10 else "yellow" if abs(c.error_pct) <= 20 else "red"
        table.add_row(c.row_id, c.gpu, f"{c.gpu_hours:,.0f}", c.plan, f"{c.avg_power_w:.0f}", f"{c.published_mwh:,.1f}",
                      f"{c.predicted_mwh:,.1f}", f"[{color}]{c.error_pct:+.1f}%[/]", f"{c.published_co2e_t:,.1f}",
                      f"{c.co2e_error_pct:+.1f}%")  # fmt: skip
    console.print(table)
    _print_summary(console, summary)


@validate_app.command("claims")
def claims(
    json_out: Annotated[bool, typer.Option("--json")] = False,
    claim: Annotated[
        list[str] | None, typer.Option("--claim", help="Only this claim: its id or its number (repeatable).")
    ] = None,
) -> None:
    """The field's headline claims: each claim's scenario pair, predicted vs claimed figure, pass/fail."""
    from fathom.validation.claims import as_dict, summarize_claims, validate_claims
    from fathom.validation.claims_table import claims_table, summary_line

    results = validate_claims(claim)
    summary = summarize_claims(results)
    if json_out:
        print_json({"claims": [as_dict(r) for r in results], "summary": summary})
        return
    console = Console()
    console.print(claims_table(results))
    console.print(summary_line(summary))
