"""Running a sweep: the scenarios not already in the output, on local processes or on a Ray cluster, with a
progress bar; rows are checkpointed as they finish and the table is written in scenario order at the end, so the
same spec gives the same table whichever way it ran."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fathom.errors import FathomInputError
from fathom.sweep.scenario import run_scenario
from fathom.sweep.spec import Scenario
from fathom.sweep.store import Checkpoint, check_output, read_rows, write_table


@dataclass(frozen=True)
class SweepSummary:
    total: int
    skipped: int  # already in the output (a resumed sweep)
    ran: int
    errors: int  # rows whose scenario was bad input
    out: str


def _local(todo: list[Scenario], jobs: int) -> Iterator[dict[str, Any]]:
    if jobs == 1:
        for s in todo:
            yield run_scenario(s)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_scenario, s) for s in todo]
        for f in as_completed(futures):
            yield f.result()


def _ray(todo: list[Scenario], address: str) -> Iterator[dict[str, Any]]:
    """``address``: ``local`` starts a Ray instance on this machine, ``auto`` joins the running cluster, anything
    else is a cluster address (``ray://host:10001`` or ``host:6379``). Connections this call opened are closed."""
    try:
        import ray
    except ImportError:
        raise FathomInputError("--ray: Ray is not installed (pip install 'fathom[ray]')") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    try:
        remote = ray.remote(run_scenario)
        pending = [remote.remote(s) for s in todo]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def run_sweep(scenarios: list[Scenario], out: str | Path, *, jobs: int = 1, ray: str | None = None,
              progress: bool = True, on_row: Callable[[dict], None] | None = None) -> SweepSummary:  # fmt: skip
    """Run every scenario whose id is not yet in ``out`` (Parquet or CSV) and write the whole table."""
    path = check_output(out)
    if jobs < 1:
        raise FathomInputError("--jobs: must be a positive integer")
    have = {r["scenario_id"]: r for r in read_rows(path) if r.get("scenario_id")}
    todo = [s for s in scenarios if s.id not in have]
    rows = dict(have)
    errors = 0
    ckpt = Checkpoint(path)
    try:
        source = _ray(todo, ray) if ray else _local(todo, jobs)
        with _bar(progress, len(scenarios), len(scenarios) - len(todo)) as advance:
            for row in source:
                ckpt.append(row)
                rows[row["scenario_id"]] = row
                errors += row["status"] != "ok"
                advance()
                if on_row is not None:
                    on_row(row)
    finally:
        ckpt.close()
    ordered = [rows[s.id] for s in scenarios if s.id in rows]
    ordered += [r for i, r in rows.items() if i not in {s.id for s in scenarios}]  # rows of an earlier spec stay
    write_table(path, ordered)
    return SweepSummary(len(scenarios), len(scenarios) - len(todo), len(todo), errors, str(path))


class _bar:
    """A rich progress bar on stderr (or nothing), advanced once per finished row."""

    def __init__(self, show: bool, total: int, done: int) -> None:
        self.show, self.total, self.done = show, total, done

    def __enter__(self) -> Callable[[], None]:
        if not self.show:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)  # fmt: skip
        self.progress.start()
        task = self.progress.add_task("sweep", total=self.total, completed=self.done)
        return lambda: self.progress.advance(task)

    def __exit__(self, *exc) -> None:
        if self.show:
            self.progress.stop()
