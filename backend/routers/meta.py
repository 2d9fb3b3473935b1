"""What the server can train: `GET /api/presets`, `GET /api/games`, `GET /api/config/schema`, and what a game's
scores compare with: `GET /api/games/{game}/baselines` (the health check is `health.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from backend.schemas.runs import GameBaselines
from twm_core.config_parsing import config_schema
from twm_core.presets import PRESETS, make_config
from twm_core.report import load_reference

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


@router.get("/games/{game}/baselines", response_model=GameBaselines,
            responses={404: {"description": "No reference scores for this game (e.g. Catch)"}})
def baselines(game: str) -> GameBaselines:
    """Random, human and the paper's TWM score of an Atari 100k game (Table 1 of the paper); 404 for a game without
    reference scores, such as Catch."""
    reference = load_reference().get(game)
    if reference is None:
        raise HTTPException(status_code=404, detail=f"no reference scores for game {game[:80]!r} (only the 26 "
                                                    "Atari 100k games have them)")
    return GameBaselines(game=game, random=reference["random"], human=reference["human"], twm=reference["TWM"],
                         twm_runs=reference.get("TWM_runs", []))


@router.get("/config/schema")
def schema() -> dict[str, Any]:
    """JSON schema of a run's config: every section and field with its type, its default (the paper's value) and
    its description; a job's `overrides` name fields of it as dotted keys (`dyn.num_layers`)."""
    return config_schema()
