"""The FastAPI application behind ``fathom ui``: the JSON API under ``/api`` and the page at ``/``.

Every error is ``{"error": kind, "message": one line}``: unknown names and impossible plans (``FathomInputError``),
schema violations, unparsable bodies and values the model code cannot compute with 422, work over the server's
limits 413, a run past its deadline 408, a full work queue 429, an unknown job or page 404, a wrong method 405, and
a fault of the server 500 (``fathom.web.errors`` decides which).
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
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from fathom import __version__
from fathom.web import services
from fathom.web.catalog import gpus, models, systems
from fathom.web.errors import INPUT_DERIVED, describe, log_unexpected, one_line, status_kind, validation_message
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
        (500, "A fault of the server (its log has the details)"),
    )
}
_JOB_WORK = {
    "train_search": (TrainSearchRequest, services.search),
    "serve_sweep": (ServeSweepRequest, services.sweep),
    "serve_search": (ServeSearchRequest, services.serve_search),
}


def _error(status: int, kind: str, message: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "message": one_line(message)}, status_code=status, headers=headers)


def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (no route, wrong method, a body that cannot be read) in the API's error body."""
    cause = exc.__cause__
    if exc.status_code == 400 and (cause is not None or exc.detail == "There was an error parsing the body"):
        # FastAPI could not parse the body (nested too deeply, not UTF-8, a huge integer): bad input, as bad JSON is
        if isinstance(cause, RecursionError):
            why = "nested too deeply"
        else:
            why = (one_line(cause)[:200] or type(cause).__name__) if cause is not None else one_line(exc.detail)
        return _error(422, "invalid_input", f"body: cannot be parsed as JSON ({why})")
    path = request.url.path
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"{path}: no such page or endpoint (the API is under /api, its documentation at /docs)"
    elif exc.status_code == 405 and exc.detail == "Method Not Allowed":
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        message = f"{request.method} {path}: method not allowed" + (f" (use {allowed})" if allowed else "")
    else:
        message = f"{path}: {exc.detail}"
    return _error(exc.status_code, status_kind(exc.status_code), message, headers=exc.headers)


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
        return _error(422, "invalid_input", validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return _http_error(request, exc)

    for exc_type in (OverLimitError, WorkTimeoutError, BusyError, *INPUT_DERIVED):  # ValueError: FathomInputError

        @app.exception_handler(exc_type)
        async def _handled(request: Request, exc: Exception) -> JSONResponse:
            status, kind, message = describe(exc)
            log_unexpected(exc, f"{request.method} {request.url.path}")
            return _error(status, kind, message)

    @app.exception_handler(Exception)  # last resort; Starlette re-raises it after answering, for the server to log
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        message = f"internal server error ({type(exc).__name__}); the server's log has the details"
        return _error(500, "internal", message)

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
        try:
            request = model.model_validate(body.request)
        except ValidationError as exc:  # named as the direct endpoints name them, under body.request
            errors = [{**e, "loc": ("body", "request", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors, body=body.request) from None
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
            status, kind, message = describe(job.error)  # logged by the pool when the job failed
            error = {"error": kind, "message": message, "status": str(status)}
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
