"""Running a sweep: the scenarios not already in the output, on local processes or on a Ray cluster, with a
progress bar; rows are checkpointed as they finish and the table is written in scenario order at the end, so the
same spec gives the same table whichever way it ran."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
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
    errors: int  # rows of this spec (run now or kept) whose scenario was bad input
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


RAY_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*):([0-9]{1,5})$")
PROBE_S = 3.0  # a GCS or Ray client port that takes longer than this to accept a connection is not there
CONNECT_S = 30.0  # ray.init against a port that answers but is not Ray retries for many minutes: stop sooner


def check_ray_address(address: str) -> tuple[str, int] | None:
    """``local``, ``auto`` (None) or ``[ray://]host:port`` (the host and port); anything else is a one-line error."""
    if address in ("local", "auto"):
        return None
    found = RAY_ADDRESS.match(address.strip())
    if found is None or not 1 <= int(found.group(3)) <= 65535:
        raise FathomInputError(f"--ray: {address!r} is not local, auto or a cluster address HOST:PORT "
                               "(e.g. 10.0.0.1:6379 or ray://10.0.0.1:10001)")  # fmt: skip
    return found.group(2).strip("[]"), int(found.group(3))


def _probe(address: str) -> None:
    """Fail in seconds when nothing listens at the address, instead of Ray's minutes of retries."""
    host_port = check_ray_address(address)
    if host_port is None:
        return
    try:
        socket.create_connection(host_port, timeout=PROBE_S).close()
    except OSError as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise FathomInputError(f"--ray: cannot reach a Ray cluster at {address!r} ({why}); start one with "
                               "`ray start --head`, or use --ray local") from None  # fmt: skip


def _ray_init(address: str) -> bool:
    """Connect (``auto``, an address) or start (``local``) Ray; True when this call did, so it must shut it down.
    A connection that does not come up within ``CONNECT_S`` is given up (its thread left behind, as ray.init
    cannot be interrupted)."""
    try:
        import ray
    except ImportError:
        raise FathomInputError("--ray: Ray is not installed (pip install 'fathom[ray]')") from None
    if ray.is_initialized():
        return False
    target = os.environ.get("RAY_ADDRESS", "").strip() if address == "auto" else address  # what Ray connects to
    if target and (target == address or RAY_ADDRESS.match(target)):
        _probe(target)
    if address == "local":
        ray.init(address=None, include_dashboard=False, log_to_driver=False)
        return True
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            outcome["error"] = None
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    quiet = _NotMainThreadWarning()
    logging.getLogger("ray._private.worker").addFilter(quiet)
    worker = threading.Thread(target=connect, name="fathom-ray-init", daemon=True)
    worker.start()
    worker.join(CONNECT_S)
    logging.getLogger("ray._private.worker").removeFilter(quiet)
    if "error" not in outcome:
        raise FathomInputError(f"--ray: no Ray cluster answered at {address!r} within {CONNECT_S:g} s")
    exc = outcome["error"]
    if exc is not None:
        why = " ".join(str(exc).split()).split(". ")[0] or type(exc).__name__
        raise FathomInputError(f"--ray: cannot connect to Ray at {address!r} ({why})") from None
    return True


class _NotMainThreadWarning(logging.Filter):
    """Ray warns that a ray.init outside the main thread sets no SIGTERM handler; fathom's CLI needs none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def _ray(todo: list[Scenario]) -> Iterator[dict[str, Any]]:
    import ray

    remote = ray.remote(run_scenario)
    pending = [remote.remote(s) for s in todo]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def run_sweep(scenarios: list[Scenario], out: str | Path, *, jobs: int = 1, ray: str | None = None,
              progress: bool = True, on_row: Callable[[dict], None] | None = None) -> SweepSummary:  # fmt: skip
    """Run every scenario whose id is not yet in ``out`` (Parquet or CSV) and write the whole table. ``ray``:
    ``local`` starts a Ray instance on this machine, ``auto`` joins the running cluster, ``[ray://]host:port``
    that cluster; connections this call opened are closed."""
    path = check_output(out)
    ray = ray.strip() if ray is not None else None
    if jobs < 1:
        raise FathomInputError("--jobs: must be a positive integer")
    have = {r["scenario_id"]: r for r in read_rows(path) if r.get("scenario_id")}
    todo = [s for s in scenarios if s.id not in have]
    rows = dict(have)
    if ray is not None:
        check_ray_address(ray)
    started = bool(ray and todo) and _ray_init(ray)  # before the checkpoint: a failed connection leaves no file
    ckpt = Checkpoint(path)
    try:
        source = _ray(todo) if ray and todo else _local(todo, jobs)
        with _bar(progress, len(scenarios), len(scenarios) - len(todo)) as advance:
            for row in source:
                ckpt.append(row)
                rows[row["scenario_id"]] = row
                advance()
                if on_row is not None:
                    on_row(row)
    finally:
        ckpt.close()
        if started:
            import ray as ray_module

            ray_module.shutdown()
    ordered = [rows[s.id] for s in scenarios if s.id in rows]
    ordered += [r for i, r in rows.items() if i not in {s.id for s in scenarios}]  # rows of an earlier spec stay
    write_table(path, ordered)
    errors = sum(rows[s.id]["status"] != "ok" for s in scenarios if s.id in rows)  # kept ones too: the table's
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
