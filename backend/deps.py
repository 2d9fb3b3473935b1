"""Request dependencies: the objects `create_app` keeps in `app.state`, as `Annotated` types for route signatures,
and `require_token`, the API-token check `create_app` puts on every router but the health check."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.errors import clip
from backend.jobs import JobManager
from backend.pool import InspectPool
from backend.registry import ModelRegistry
from backend.sessions import SessionStore
from backend.settings import Settings


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_jobs(request: Request) -> JobManager:
    """The app's job manager (created in the lifespan)."""
    jobs: JobManager = request.app.state.jobs
    return jobs


def get_registry(request: Request) -> ModelRegistry:
    """The app's model registry (created in the lifespan)."""
    registry: ModelRegistry = request.app.state.registry
    return registry


def get_pool(request: Request) -> InspectPool:
    """The app's inspect pool: model work runs there, apart from the request threads."""
    pool: InspectPool = request.app.state.pool
    return pool


def get_sessions(request: Request) -> SessionStore:
    """The app's live dream sessions."""
    sessions: SessionStore = request.app.state.sessions
    return sessions


# auto_error=False: a missing header is our 401 below (with the same message as a wrong token), not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="`TWM_API_TOKEN`, when the backend has one")


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries `Authorization: Bearer <settings.api_token>`; a no-op when no token is set."""
    expected: str | None = request.app.state.settings.api_token
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else ""
    # compare_digest: the time taken does not tell how many leading characters of a guess were right.
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid API token (Authorization: Bearer <TWM_API_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


_OBJECT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def not_found(kind: str, object_id: str) -> HTTPException:
    """The 404 of an unknown job or sweep id, quoting at most an excerpt of it."""
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind} {clip(object_id, 80)!r}")


def check_object_id(kind: str, object_id: str) -> str:
    """`object_id` if it could be a job or sweep id (`uuid4().hex[:12]`, with room to spare), else that 404.

    Checked before any lookup, so a megabyte of path or a NUL never reaches SQLite or a log line whole.
    """
    if _OBJECT_ID_RE.fullmatch(object_id) is None:
        raise not_found(kind, object_id)
    return object_id


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
PoolDep = Annotated[InspectPool, Depends(get_pool)]
SessionsDep = Annotated[SessionStore, Depends(get_sessions)]
