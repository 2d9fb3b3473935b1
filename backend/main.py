"""FastAPI application factory: `uvicorn backend.main:create_app --factory`.

No module-level app or settings: `create_app(settings)` builds everything and keeps it in `app.state`,
so tests run any number of isolated apps side by side.

Authentication is one dependency, `require_token`, put on every router but the health check: with
`settings.api_token` set, each `/api/*` call but `GET /api/health` needs `Authorization: Bearer <token>`. The
OpenAPI schema and the `/docs` page stay open: they describe the API and hold no data (their "Authorize" button
takes the token).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from backend.deps import require_token
from backend.jobs import JobManager
from backend.registry import ModelRegistry
from backend.routers import discover_routers, health
from backend.settings import Settings
from twm_core.config import ConfigError

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the runs directory, job manager and model registry; on shutdown the job monitor stops, jobs live on."""
    settings: Settings = app.state.settings
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    app.state.jobs = JobManager(settings)
    app.state.registry = ModelRegistry(settings)
    app.state.jobs.start_monitor()
    try:
        yield
    finally:
        await app.state.jobs.stop_monitor()


async def _config_error(request: Request, exc: Exception) -> JSONResponse:
    # A bad preset or override is the caller's mistake: answer 422 with the message, never a traceback.
    return JSONResponse(status_code=422, content={"detail": str(exc)})


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server log only; the caller gets the exception's type and first line.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    detail = f"internal error: {type(exc).__name__}: {_first_line(exc)}"
    return JSONResponse(status_code=500, content={"detail": detail})


def _first_line(exc: Exception, limit: int = 300) -> str:
    """The message up to its first line break (and before any traceback text an exception may carry), capped."""
    text = str(exc).split("Traceback (most recent call last)", 1)[0].strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the backend app; settings default to the `TWM_*` environment."""
    settings = settings if settings is not None else Settings()
    app = FastAPI(
        title="TWM backend",
        summary="Train TWM world models and inspect their imagination and attention.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(ConfigError, _config_error)
    app.add_exception_handler(Exception, _unhandled_error)
    for router in discover_routers():
        # Health stays open for liveness probes (docker's healthcheck, `make run`); the rest needs the token if set.
        guard = [] if router is health.router else [Depends(require_token)]
        app.include_router(router, prefix="/api", dependencies=guard)
    return app
