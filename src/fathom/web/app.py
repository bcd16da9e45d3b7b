"""The FastAPI application behind ``fathom ui``: the JSON API under ``/api`` and the page at ``/``.

Every bad request gets a 4xx with ``{"error": kind, "message": one line}``: unknown names and impossible plans
(``FathomInputError``) and schema violations 422, work over the server's limits 413, a run past its deadline 408,
a full work queue 429, an unknown job 404.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from fathom import __version__
from fathom.web import services
from fathom.web.catalog import gpus, models, systems
from fathom.web.jobs import WorkPool
from fathom.web.limits import BusyError, Limits, OverLimitError, WorkTimeoutError
from fathom.web.schemas import (
    CatalogItem,
    ErrorBody,
    JobCreated,
    JobKind,
    JobStatus,
    ServeSearchRequest,
    ServeSimulateRequest,
    ServeSimulateResponse,
    ServeSweepRequest,
    ServeSweepResponse,
    TrainEstimateRequest,
    TrainSearchRequest,
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in (
        (404, "Unknown job"),
        (408, "Past the deadline"),
        (413, "Over the server's limits"),
        (422, "Invalid input"),
        (429, "Busy"),
    )
}
_JOB_WORK = {
    "train_search": (TrainSearchRequest, services.search),
    "serve_sweep": (ServeSweepRequest, services.sweep),
    "serve_search": (ServeSearchRequest, services.serve_search),
}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def error_status(exc: Exception) -> tuple[int, str]:
    """The HTTP status and error kind of an exception raised by the work (``ValueError`` covers
    ``FathomInputError`` and pydantic's validation errors: bad input, not a server fault)."""
    for kind, status, name in (
        (OverLimitError, 413, "over_limit"),
        (WorkTimeoutError, 408, "timeout"),
        (BusyError, 429, "busy"),
        (ValueError, 422, "invalid_input"),
    ):
        if isinstance(exc, kind):
            return status, name
    raise exc


def _error(status: int, kind: str, message: object) -> JSONResponse:
    return JSONResponse({"error": kind, "message": _one_line(message)}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    """The first schema violation in one line, naming its field (``body.num_gpus: ...``)."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def create_app(limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        yield
        old, app_.state.pool = app_.state.pool, WorkPool(limits)  # a restarted app (tests) starts with a fresh pool
        old.shutdown()

    app = FastAPI(
        title="fathom",
        version=__version__,
        description="LLM training and serving predictions over HTTP.",
        responses=_ERRORS,
        lifespan=lifespan,
    )
    app.state.limits = limits
    app.state.pool = WorkPool(limits)

    def pool() -> WorkPool:
        return app.state.pool

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_input", _validation_message(exc))

    for exc_type in (ValueError, OverLimitError, WorkTimeoutError, BusyError):

        @app.exception_handler(exc_type)
        async def _handled(request: Request, exc: Exception) -> JSONResponse:
            status, kind = error_status(exc)
            return _error(status, kind, exc)

    @app.get("/api/models", response_model=list[CatalogItem], tags=["catalog"])
    def list_models() -> list[dict]:
        """Built-in model presets."""
        return models()

    @app.get("/api/gpus", response_model=list[CatalogItem], tags=["catalog"])
    def list_gpus() -> list[dict]:
        """Built-in devices with datasheet figures."""
        return gpus()

    @app.get("/api/systems", response_model=list[CatalogItem], tags=["catalog"])
    def list_systems() -> list[dict]:
        """Built-in systems: GPUs per node and link bandwidths."""
        return systems()

    @app.post("/api/train/estimate", tags=["training"])
    def train_estimate(body: TrainEstimateRequest) -> dict[str, Any]:
        """One training plan: the ``fathom train --json`` keys."""
        return pool().run_now(partial(services.estimate, body, limits))

    @app.post("/api/train/search", tags=["training"])
    def train_search(body: TrainSearchRequest) -> dict[str, Any]:
        """Rank the plans of a model on a cluster: the ``fathom plan train --json`` keys."""
        return pool().run_now(partial(services.search, body, limits))

    @app.post("/api/serve/simulate", response_model=ServeSimulateResponse, tags=["serving"])
    def serve_simulate(body: ServeSimulateRequest) -> dict[str, Any]:
        """Simulate a deployment: the ``fathom serve --json`` keys, latency CDFs and the load timeline."""
        return pool().run_now(partial(services.simulate, body, limits))

    @app.post("/api/serve/sweep", response_model=ServeSweepResponse, tags=["serving"])
    def serve_sweep(body: ServeSweepRequest) -> dict[str, Any]:
        """The same deployment at several offered rates: throughput and latency against load."""
        return pool().run_now(partial(services.sweep, body, limits))

    @app.post("/api/serve/search", tags=["serving"])
    def serve_search(body: ServeSearchRequest) -> dict[str, Any]:
        """The cheapest deployments meeting latency SLOs: the ``fathom plan serve --json`` keys."""
        return pool().run_now(partial(services.serve_search, body, limits))

    @app.post("/api/jobs", status_code=202, response_model=JobCreated, tags=["jobs"])
    def create_job(body: JobKind) -> dict[str, str]:
        """Start a plan search or a sweep in the background; poll ``GET /api/jobs/{id}`` for progress."""
        model, work = _JOB_WORK[body.kind]
        request = model.model_validate(body.request)  # a ValidationError is a ValueError: 422
        job = pool().start_job(body.kind, partial(work, request, limits))
        return {"id": job.id, "status_url": f"/api/jobs/{job.id}"}

    @app.get("/api/jobs/{job_id}", response_model=JobStatus, tags=["jobs"])
    def get_job(job_id: str) -> Any:
        """A job's state, the share of its runs done, and its result (or error) once finished."""
        job = pool().job(job_id)
        if job is None:
            return _error(404, "not_found", f"job {job_id!r}: no such job (finished jobs are kept for a while)")
        error = None
        if job.error is not None:
            try:
                status, kind = error_status(job.error)
            except Exception:  # a fault of the server, not of the request: say so rather than hide it
                status, kind = 500, "internal"
            error = {"error": kind, "message": _one_line(job.error), "status": str(status)}
        elapsed = (job.finished or time.monotonic()) - (job.started or job.created)
        return JobStatus(
            id=job.id,
            kind=job.kind,
            state=job.state(),
            progress=job.done_units / job.total_units,
            done_units=job.done_units,
            total_units=job.total_units,
            elapsed_s=elapsed,
            result=job.result if job.error is None else None,
            error=error,
        )

    static = resources.files("fathom.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static.joinpath("index.html")), media_type="text/html")

    return app
