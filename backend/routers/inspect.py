"""Look inside a checkpoint: `POST /api/runs/{run_id}/imagine` and `POST /api/runs/{run_id}/attention`.

Model work (imported lazily, so the app starts without torch) runs in the threadpool, never on the event loop,
under the registry's inference lock. Errors are JSON: 404 for an unknown run or checkpoint, 422 for a request the
model cannot serve (with the reason), 409 for a checkpoint file that cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from backend.deps import RegistryDep
from backend.registry import LoadedModel, ModelRegistry, RunNotFoundError
from backend.schemas.inspect import (
    AttentionRequest,
    AttentionResponse,
    ImagineRequest,
    ImagineResponse,
    start_spec,
)
from backend.services import InvalidRequest

router = APIRouter(prefix="/runs", tags=["inspect"])

T = TypeVar("T")


async def _serve(registry: ModelRegistry, run_id: str, checkpoint: int | str, work: Callable[[LoadedModel], T]) -> T:
    """Load the checkpoint and run `work` on it off the event loop, mapping failures to JSON errors."""

    from twm_core.checkpoint import CheckpointError, CheckpointNotFoundError  # lazy: torch

    def job() -> T:
        model = registry.get(run_id, checkpoint)
        with registry.inference_lock:
            return work(model)

    try:
        return await run_in_threadpool(job)
    except (RunNotFoundError, CheckpointNotFoundError) as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except InvalidRequest as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    except CheckpointError as exc:
        raise HTTPException(status_code=409, detail=f"checkpoint cannot be loaded: {exc}") from exc


@router.post("/{run_id}/imagine", response_model=ImagineResponse)
async def imagine(run_id: str, body: ImagineRequest, registry: RegistryDep) -> ImagineResponse:
    """Imagine `horizon` steps from a real start with the policy or the given actions (optionally vs. the real env)."""
    from backend.services.rollouts import imagine_rollout  # lazy: torch and the models

    result = await _serve(registry, run_id, body.checkpoint, lambda model: imagine_rollout(
        model, body.seed, start_spec(body.start), body.horizon, body.actions, body.compare_real))
    return ImagineResponse.model_validate(result)


@router.post("/{run_id}/attention", response_model=AttentionResponse)
async def attention(run_id: str, body: AttentionRequest, registry: RegistryDep) -> AttentionResponse:
    """Attention of the action token at imagined step `query_step`, per layer and head, with token labels."""
    from backend.services.attention import attention_maps  # lazy: torch and the models

    result = await _serve(registry, run_id, body.checkpoint, lambda model: attention_maps(
        model, body.seed, start_spec(body.start), body.query_step, body.layer, body.actions))
    return AttentionResponse.model_validate(result)
