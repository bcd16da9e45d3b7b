"""``fathom sweep``: run a YAML sweep of training and serving scenarios into one Parquet or CSV table."""

from __future__ import annotations

from typing import Annotated

import typer

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(
        spec: Annotated[str, typer.Argument(help="Sweep spec YAML (see examples/sweep.yaml).")],
        out: Annotated[str, Opt(help="Result table: .parquet or .csv (rerun to resume).")],
        jobs: Annotated[int, Opt(min=1, help="Local worker processes.")] = 1,
        ray: Annotated[str | None, Opt(help="Run on Ray: 'local', 'auto', or a cluster's HOST:PORT.")] = None,
        progress: Annotated[bool, Opt("--progress/--no-progress", help="Progress bar on stderr.")] = True,
    ) -> None:
        """Run every scenario of SPEC (one row each, inputs and outputs flattened); finished rows are kept."""
        from fathom.sweep.run import run_sweep
        from fathom.sweep.spec import load_sweep
        from fathom.sweep.store import check_output

        check_output(out)
        summary = run_sweep(load_sweep(spec), out, jobs=jobs, ray=ray, progress=progress)
        typer.echo(
            f"{summary.total} scenarios: {summary.ran} run, {summary.skipped} already done, "
            f"{summary.errors} with errors -> {summary.out}"
        )
