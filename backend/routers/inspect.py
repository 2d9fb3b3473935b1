"""One-shot looks inside a checkpoint: `POST /api/runs/{run_id}/imagine` and `POST /api/runs/{run_id}/attention`.

Both are thin wrappers over a dream session (`/api/sessions` keeps one alive to step, fork and query). Model work
runs on the inspect pool, never on the event loop or the request threads (`_model_work.serve`).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from backend.deps import PoolDep, RegistryDep
from backend.routers._model_work import serve_json
from backend.schemas.inspect import (
    AttentionRequest,
    AttentionResponse,
    ImagineRequest,
    ImagineResponse,
    start_spec,
)

router = APIRouter(prefix="/runs", tags=["inspect"])


@router.post("/{run_id}/imagine", response_model=ImagineResponse)
async def imagine(run_id: str, body: ImagineRequest, registry: RegistryDep, pool: PoolDep) -> Response:
    """Imagine `horizon` steps from a real start with the policy or the given actions (optionally vs. the real env)."""

    def work() -> object:
        from backend.services.rollouts import imagine_rollout  # lazy: torch and the models

        agent = registry.get(run_id, body.checkpoint)
        return imagine_rollout(agent, registry.starts(agent), body.seed, start_spec(body.start), body.horizon,
                               body.actions, body.compare_real)

    return await serve_json(pool, work, ImagineResponse)


@router.post("/{run_id}/attention", response_model=AttentionResponse)
async def attention(run_id: str, body: AttentionRequest, registry: RegistryDep, pool: PoolDep) -> Response:
    """Attention of the action token at imagined step `query_step`, per layer and head, with token labels."""

    def work() -> object:
        from backend.services.attention import attention_maps  # lazy: torch and the models

        agent = registry.get(run_id, body.checkpoint)
        return attention_maps(agent, registry.starts(agent), body.seed, start_spec(body.start), body.query_step,
                              body.layer, body.actions)

    return await serve_json(pool, work, AttentionResponse)
