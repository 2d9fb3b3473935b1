"""FastAPI application factory: `uvicorn backend.main:create_app --factory`.

No module-level app or settings: `create_app(settings)` builds everything and keeps it in `app.state`,
so tests run any number of isolated apps side by side.

Authentication is one dependency, `require_token`, put on every router but the health check: with
`settings.api_token` set, each `/api/*` call but `GET /api/health` needs `Authorization: Bearer <token>`. The
OpenAPI schema and the `/docs` and `/redoc` pages (local assets, no CDN) stay open: they describe the API and hold
no data (their "Authorize" button takes the token).

Request hygiene is middleware (`backend.middleware`): a `Host` check against DNS rebinding, a body size limit, and
strict JSON. Error answers are `backend.errors`: always `{"detail": ...}`, short, and without server paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import errors
from backend.deps import require_token
from backend.evaluations import EvaluationManager
from backend.jobs import JobManager
from backend.middleware import BodyLimitMiddleware, HostCheckMiddleware, LocalOnlyPagesMiddleware, StrictJSONMiddleware
from backend.pool import InspectPool
from backend.registry import ModelRegistry
from backend.routers import discover_routers, health
from backend.sessions import SessionStore
from backend.settings import Settings
from twm_core.config import ConfigError

DOCS_PAGES = ("/docs", "/redoc")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the runs directory, job manager, model registry, inspect pool, dream-session store and evaluation
    manager; on shutdown the job monitor stops (jobs and evaluations live on) and the sessions end."""
    settings: Settings = app.state.settings
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    app.state.jobs = JobManager(settings)
    app.state.registry = ModelRegistry(settings)
    app.state.pool = InspectPool(settings)
    app.state.sessions = SessionStore(settings)
    app.state.evaluations = EvaluationManager(settings)
    app.state.jobs.start_monitor()
    try:
        yield
    finally:
        await app.state.jobs.stop_monitor()
        app.state.sessions.clear()
        app.state.evaluations.close()
        app.state.pool.shutdown()
        app.state.registry.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the backend app; settings default to the `TWM_*` environment."""
    settings = settings if settings is not None else Settings()
    # FastAPIOffline: /docs (Swagger UI) and /redoc from the assets the fastapi-offline package ships, served under
    # /static-offline-docs; FastAPI's own pages load them from a CDN and are blank without the internet.
    app = FastAPIOffline(
        docs_url=DOCS_PAGES[0], redoc_url=DOCS_PAGES[1],
        title="TWM backend",
        summary="Train TWM world models and inspect their imagination and attention.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, errors.validation_error)
    app.add_exception_handler(StarletteHTTPException, errors.http_error)
    app.add_exception_handler(ConfigError, errors.config_error)
    app.add_exception_handler(Exception, errors.unhandled_error)
    # add_middleware wraps what is there, so the last added runs first: host check, body limit, strict JSON,
    # the docs pages' policy.
    app.add_middleware(LocalOnlyPagesMiddleware, paths=DOCS_PAGES)
    app.add_middleware(StrictJSONMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HostCheckMiddleware, allowed=settings.trusted_hosts)
    for router in discover_routers():
        # Health stays open for liveness probes (docker's healthcheck, `make run`); the rest needs the token if set.
        guard = [] if router is health.router else [Depends(require_token)]
        app.include_router(router, prefix="/api", dependencies=guard)
    errors.document_errors(app)
    return app
