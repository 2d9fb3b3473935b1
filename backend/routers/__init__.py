"""HTTP routers, all mounted under `/api` by `backend.main.create_app`.

Each module of this package that defines a module-level `router` (a FastAPI `APIRouter`) is mounted, in
module-name order, so a new endpoint group is one new file here and nothing else to register.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def discover_routers() -> list[APIRouter]:
    """The `router` of every module in this package, sorted by module name."""
    routers: list[APIRouter] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers
