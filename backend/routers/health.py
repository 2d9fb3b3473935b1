"""Liveness: `GET /api/health`, the one endpoint that never needs the API token (probes and healthchecks carry none).

`create_app` mounts this router without `require_token`; every other router gets it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

from backend.settings import Settings

router = APIRouter(tags=["meta"])


@cache
def _package_version() -> str:
    try:
        return version("twm")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


@cache
def _cuda_available() -> bool:
    import torch  # lazy: keeps `import backend.main` cheap for tools that only need the app object

    return bool(torch.cuda.is_available())


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness plus the device models will be served on and the name of the runs directory.

    Only the directory's name: this endpoint needs no token, and the server's absolute paths are nobody's business.
    Async and cached: a probe must not wait for a thread of a pool that model work keeps busy.
    """
    settings: Settings = request.app.state.settings
    device = settings.device if settings.device != "auto" else ("cuda" if _cuda_available() else "cpu")
    return {
        "status": "ok",
        "version": _package_version(),
        "device": "cuda" if device.startswith("cuda") else "cpu",
        "cuda_available": _cuda_available(),
        "runs_dir": settings.runs_dir.name,
    }
