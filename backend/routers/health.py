"""Liveness: `GET /api/health`, the one endpoint that never needs the API token (probes and healthchecks carry none).

`create_app` mounts this router without `require_token`; every other router gets it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

from backend.settings import Settings

router = APIRouter(tags=["meta"])


def _package_version() -> str:
    try:
        return version("twm")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Liveness plus the device models will be served on and where runs are read from."""
    import torch  # lazy: keeps `import backend.main` cheap for tools that only need the app object

    settings: Settings = request.app.state.settings
    device = settings.resolved_device()
    return {
        "status": "ok",
        "version": _package_version(),
        "device": "cuda" if device.startswith("cuda") else "cpu",
        "cuda_available": torch.cuda.is_available(),
        "runs_dir": str(settings.runs_dir),
    }
