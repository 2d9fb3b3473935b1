"""Facts about the server itself: `GET /api/health`, `GET /api/presets`, `GET /api/games`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

from backend.settings import Settings
from twm_core.config import PRESETS, make_config

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


@router.get("/presets")
def presets() -> dict[str, Any]:
    """Every config preset with a one-line description and its fully resolved config."""
    items = []
    for name, build in PRESETS.items():
        doc = (build.__doc__ or "").strip()
        items.append({
            "name": name,
            "description": doc.splitlines()[0] if doc else "",
            "config": make_config(name).to_dict(),
        })
    return {"presets": items}


@router.get("/games")
def games() -> dict[str, list[str]]:
    """Games the installed ALE can run, plus the 26 of the Atari 100k benchmark."""
    # Lazy: the envs package pulls in gymnasium/ALE, which health checks and presets should not pay for.
    from twm_core.envs.games import ATARI100K_GAMES, available_games

    return {"games": list(available_games()), "atari100k": list(ATARI100K_GAMES)}
