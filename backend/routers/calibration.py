"""`GET /api/runs/{run_id}/calibration`: predicted reward and discount against the real ones, on replay windows.

The model work (`twm_core.calibration.calibrate`) runs on the inspect pool (`_model_work.serve_json`); a run whose
checkpoint has no replay data answers 422 with the reason.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Response

from backend.deps import PoolDep, RegistryDep
from backend.routers._model_work import serve_json
from backend.schemas.calibration import MAX_WINDOWS, CalibrationResponse
from backend.schemas.inspect import Checkpoint
from backend.services import InvalidRequest

router = APIRouter(prefix="/runs", tags=["inspect"])


@router.get("/{run_id}/calibration", response_model=CalibrationResponse)
async def calibration(
    run_id: str,
    registry: RegistryDep,
    pool: PoolDep,
    checkpoint: Annotated[Checkpoint, Query(description="'latest' or a checkpoint step")] = "latest",
    windows: Annotated[int, Query(ge=1, le=MAX_WINDOWS, description="replay windows of ℓ steps to sample")] = 256,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="draws windows and latents")] = 0,
) -> Response:
    """Reward calibration table, discount reliability diagram and summary metrics of one checkpoint."""

    def work() -> object:
        import torch  # lazy: torch and the models load on the worker

        from twm_core.calibration import calibrate
        from twm_core.seeding import derive_seed

        agent = registry.get(run_id, checkpoint)
        try:
            replay = agent.replay()
        except (ValueError, FileNotFoundError) as exc:
            raise InvalidRequest(f"run {run_id!r} has no replay data for checkpoint {agent.step}: {exc}") from exc
        generator = torch.Generator().manual_seed(derive_seed(seed, "calibration"))
        try:
            result = calibrate(agent, replay, windows, generator)
        except ValueError as exc:  # a buffer shorter than one window
            raise InvalidRequest(str(exc)) from exc
        return {"run_id": run_id, "seed": seed, **asdict(result)}

    return await serve_json(pool, work, CalibrationResponse)
