"""Request dependencies: the objects `create_app` keeps in `app.state`, as `Annotated` types for route signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.jobs import JobManager
from backend.registry import ModelRegistry
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


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
