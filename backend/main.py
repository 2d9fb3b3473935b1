"""FastAPI application factory: `uvicorn backend.main:create_app --factory`.

No module-level app or settings: `create_app(settings)` builds everything and keeps it in `app.state`,
so tests run any number of isolated apps side by side.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backend.jobs import JobManager
from backend.registry import ModelRegistry
from backend.routers import discover_routers
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
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}: {exc}"})


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
        app.include_router(router, prefix="/api")
    return app
