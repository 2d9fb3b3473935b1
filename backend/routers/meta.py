"""What the server can train: `GET /api/presets`, `GET /api/games`, `GET /api/config/schema` (the health check is
`health.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from twm_core.config_parsing import config_schema
from twm_core.presets import PRESETS, make_config

router = APIRouter(tags=["meta"])


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


@router.get("/config/schema")
def schema() -> dict[str, Any]:
    """JSON schema of a run's config: every section and field with its type, its default (the paper's value) and
    its description; a job's `overrides` name fields of it as dotted keys (`dyn.num_layers`)."""
    return config_schema()
