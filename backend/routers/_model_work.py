"""Running model work for a route: on the inspect pool, with its failures mapped to JSON errors.

404 for an unknown run, checkpoint or session; 422 for a request the model cannot serve (with the reason); 409 for
a checkpoint file that cannot be used; 503 with `Retry-After` when the inspect pool is full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, Response
from pydantic import BaseModel

from backend.pool import InspectPool, PoolFull
from backend.registry import RunNotFoundError
from backend.services import InvalidRequest
from backend.sessions import SessionNotFoundError

T = TypeVar("T")
JSON = "application/json"


async def serve(pool: InspectPool, work: Callable[[], T]) -> T:
    """`work()` on the pool; its errors as HTTP errors (torch is imported lazily, by the work itself)."""
    from twm_core.checkpoint import CheckpointError, CheckpointNotFoundError
    from twm_core.dream import DreamError

    try:
        return await pool.run(work)
    except PoolFull as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
    except (RunNotFoundError, CheckpointNotFoundError, SessionNotFoundError) as exc:
        raise HTTPException(404, str(exc)) from exc
    except (InvalidRequest, DreamError) as exc:
        raise HTTPException(422, str(exc)) from exc
    except CheckpointError as exc:
        raise HTTPException(409, f"checkpoint cannot be loaded: {exc}") from exc


async def serve_json(pool: InspectPool, work: Callable[[], object], schema: type[BaseModel],
                     status_code: int = 200) -> Response:
    """`serve`, with the result validated against `schema` and rendered to JSON on the worker as well.

    An async route's return value is validated and serialised on the event loop; for frames, latent grids and
    attention maps that is tens of milliseconds in which no other request (a health probe) is answered.
    """
    def job() -> bytes:
        return schema.model_validate(work()).model_dump_json().encode()

    return Response(await serve(pool, job), status_code=status_code, media_type=JSON)
