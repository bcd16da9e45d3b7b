"""Work off the event loop: requests answered at once under a deadline, and background jobs polled for progress.

Threads, not processes: the work is NumPy and the simulator, the results are plain dicts, and a thread starts in
microseconds. A Python thread cannot be killed, so a run past its deadline is answered with a timeout and left to
finish (its work is bounded by ``fathom.web.limits``); while it runs it holds its worker, and when every worker
and the short queue behind them are taken, new work is refused with "busy" rather than queued without end.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from fathom.web.errors import log_unexpected
from fathom.web.limits import BusyError, Limits, WorkTimeoutError

Work = Callable[[Callable[[int, int], None]], dict[str, Any]]  # called with a progress callback
QUEUE_PER_WORKER = 4


@dataclass
class Job:
    id: str
    kind: str
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    done_units: int = 0
    total_units: int = 1
    result: dict[str, Any] | None = None
    error: Exception | None = None

    def state(self) -> str:
        if self.error is not None:
            return "failed"
        if self.finished is not None:
            return "done"
        return "running" if self.started is not None else "queued"


class WorkPool:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="fathom-web")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def _submit(self, fn: Callable[[], Any]) -> Future:
        with self._lock:
            if self._in_flight >= self.limits.workers * (1 + QUEUE_PER_WORKER):
                raise BusyError("the server is busy with other simulations and searches; try again shortly")
            self._in_flight += 1
        future = self._pool.submit(fn)
        future.add_done_callback(self._release)
        return future

    def _release(self, _: Future) -> None:
        with self._lock:
            self._in_flight -= 1

    def run_now(self, work: Work) -> dict[str, Any]:
        """The result of ``work``, or ``WorkTimeoutError`` after ``limits.timeout_s`` seconds."""
        future = self._submit(lambda: work(lambda done, total: None))
        try:
            return future.result(timeout=self.limits.timeout_s)
        except FutureTimeout:
            raise WorkTimeoutError(
                f"the work took longer than this server's limit of {self.limits.timeout_s:g} s; ask for less "
                "(fewer requests or a narrower search) or run it as a job (POST /api/jobs)"
            ) from None

    def start_job(self, kind: str, work: Work) -> Job:
        job = Job(id=uuid.uuid4().hex, kind=kind)

        def progress(done: int, total: int) -> None:
            job.done_units, job.total_units = done, max(total, 1)

        def run() -> None:
            job.started = time.monotonic()
            try:
                job.result = work(progress)
            except Exception as exc:  # reported to the poller in the API's error body (fathom.web.errors)
                log_unexpected(exc, f"job {job.id} ({kind})")
                job.error = exc
            job.finished = time.monotonic()

        self._submit(run)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        return job

    def _forget_old(self) -> None:
        """Keep at most ``max_jobs``: drop the oldest finished jobs first."""
        for job_id in [j.id for j in self._jobs.values() if j.finished is not None]:
            if len(self._jobs) <= self.limits.max_jobs:
                break
            del self._jobs[job_id]

    def job(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is not None and job.finished is None and job.started is not None:
            if time.monotonic() - job.started > self.limits.job_timeout_s:
                job.error = WorkTimeoutError(
                    f"the job ran past this server's limit of {self.limits.job_timeout_s:g} s; ask for less"
                )
                job.finished = time.monotonic()
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
