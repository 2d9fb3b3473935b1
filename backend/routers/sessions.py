"""Dream sessions: `/api/sessions` — create, read, step, fork, futures, attention, delete.

A session lives in the backend (`backend.sessions.SessionStore`: bounded, with a time-to-live) and advances in O(1)
per step (`twm_core.dream`). Responses carry the session's points from `since` on, so a client that has points
0..k-1 asks for the rest only. Model work runs on the inspect pool, each session under its own lock.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from backend.deps import PoolDep, RegistryDep, SessionsDep
from backend.routers._model_work import serve_json
from backend.schemas.inspect import start_spec
from backend.schemas.sessions import (
    AttentionQuery,
    ForkRequest,
    FuturesBody,
    FuturesRequest,
    LatentBody,
    OverviewBody,
    QueryAttentionBody,
    SessionBody,
    SessionCreate,
    SessionSummary,
    StepRequest,
    Token,
)
from backend.sessions import SessionEntry, SessionStore

router = APIRouter(prefix="/sessions", tags=["sessions"])

_ID_CHARS = set("0123456789abcdef")


def _check_id(session_id: str) -> str:
    if not 1 <= len(session_id) <= 64 or not set(session_id) <= _ID_CHARS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dream session {session_id[:64]!r}")
    return session_id


def _body(entry: SessionEntry, since: int = 0) -> dict[str, Any]:
    from backend.services.dream import point_dict

    s = entry.session
    agent, dyn = s.agent, s.agent.world_model.dyn_model
    since = max(0, min(since, len(s.points)))
    return {
        "id": entry.id, "run_id": entry.run_id, "checkpoint_step": entry.checkpoint_step,
        "game": agent.config.env.game, "seed": s.seed, "start": s.start.description,
        "start_policy_actions": list(s.start.policy_actions),
        "parent": entry.parent[0] if entry.parent else None, "parent_step": entry.parent[1] if entry.parent else None,
        "action_meanings": agent.action_meanings(), "latent_shape": list(dyn.z_shape),
        "num_layers": dyn.cfg.num_layers, "num_heads": dyn.cfg.num_heads, "tokens_per_step": dyn.tokens_per_step,
        "num_steps": s.num_steps, "since": since, "points": [point_dict(agent, p) for p in s.points[since:]],
    }


async def _with_session(pool: PoolDep, sessions: SessionStore, session_id: str, work: Any, schema: Any,
                        status_code: int = 200) -> Response:
    _check_id(session_id)

    def job() -> Any:
        with sessions.use(session_id) as entry:
            return work(entry)

    return await serve_json(pool, job, schema, status_code)


@router.post("", response_model=SessionBody, status_code=status.HTTP_201_CREATED)
async def create_session(body: SessionCreate, registry: RegistryDep, sessions: SessionsDep,
                         pool: PoolDep) -> Response:
    """Start a dream from a real env reset (after `policy_steps` policy steps) or a replay row; take `steps`."""

    def work() -> dict[str, Any]:
        from backend.services.dream import begin, step_many

        agent = registry.get(body.run_id, body.checkpoint)
        spec = start_spec(body.start)
        real = body.real and body.start.kind == "reset"
        session = begin(agent, registry.starts(agent), spec, body.seed, real)
        try:
            count = len(body.actions) if body.actions is not None else body.steps
            step_many(session, count, body.actions)
        except BaseException:
            session.close()
            raise
        entry = sessions.add(session, body.run_id, agent.step)
        return _body(entry)

    return await serve_json(pool, work, SessionBody, status.HTTP_201_CREATED)


@router.get("", response_model=list[SessionSummary])
def list_sessions(sessions: SessionsDep) -> list[dict[str, Any]]:
    """Live sessions, least recently used first."""
    now = time.monotonic()
    return [{"id": e.id, "run_id": e.run_id, "checkpoint_step": e.checkpoint_step, "seed": e.session.seed,
             "num_steps": e.session.num_steps, "parent": e.parent[0] if e.parent else None,
             "idle_seconds": round(now - e.last_used, 3)} for e in sessions.entries()]


@router.get("/{session_id}", response_model=SessionBody)
async def get_session(session_id: str, sessions: SessionsDep, pool: PoolDep,
                      since: int = Query(0, ge=0)) -> Response:
    """The session with its points from `since` on."""
    return await _with_session(pool, sessions, session_id, lambda entry: _body(entry, since), SessionBody)


@router.post("/{session_id}/step", response_model=SessionBody)
async def step_session(session_id: str, body: StepRequest, sessions: SessionsDep, pool: PoolDep) -> Response:
    """Take `count` steps (policy) or one per given action; the response holds the new points."""

    def work(entry: SessionEntry) -> dict[str, Any]:
        from backend.services.dream import step_many

        before = len(entry.session.points)
        count = len(body.actions) if body.actions is not None else body.count
        step_many(entry.session, count, body.actions)
        return _body(entry, before)

    return await _with_session(pool, sessions, session_id, work, SessionBody)


@router.post("/{session_id}/fork", response_model=SessionBody, status_code=status.HTTP_201_CREATED)
async def fork_session(session_id: str, body: ForkRequest, sessions: SessionsDep, pool: PoolDep) -> Response:
    """A new session sharing points 0..`step`, then with the latent edits and the action; the parent is unchanged."""

    def work(entry: SessionEntry) -> dict[str, Any]:
        from backend.services.dream import step_many

        edits = {e.categorical: e.category for e in body.latent}
        child = entry.session.fork(body.step, body.action, edits or None, body.seed)
        step_many(child, body.steps, None)
        return _body(sessions.add(child, entry.run_id, entry.checkpoint_step, (entry.id, body.step)), body.since)

    return await _with_session(pool, sessions, session_id, work, SessionBody, status.HTTP_201_CREATED)


@router.post("/{session_id}/futures", response_model=FuturesBody)
async def session_futures(session_id: str, body: FuturesRequest, sessions: SessionsDep,
                          pool: PoolDep) -> Response:
    """`n` futures of `horizon` steps from one point, in one batched forward per step, with mean and std frames."""

    def work(entry: SessionEntry) -> dict[str, Any]:
        from backend.services.dream import futures_dict
        from twm_core.dream import imagine_futures

        return futures_dict(imagine_futures(entry.session, body.n, body.horizon, body.step, body.seed, body.actions))

    return await _with_session(pool, sessions, session_id, work, FuturesBody)


@router.get("/{session_id}/points/{step}/latent", response_model=LatentBody)
async def point_latent(session_id: str, step: int, sessions: SessionsDep, pool: PoolDep) -> Response:
    """Full probabilities at one point: the prior its latent was drawn from and the real frame's posterior."""

    def work(entry: SessionEntry) -> dict[str, Any]:
        from backend.services import InvalidRequest
        from backend.services.dream import latent_dict

        s = entry.session
        if not 0 <= step <= s.num_steps:
            raise InvalidRequest(f"step must lie in [0, {s.num_steps}], got {step}")
        return latent_dict(s.points[step], s.agent.world_model.dyn_model.z_shape)

    return await _with_session(pool, sessions, session_id, work, LatentBody)


@router.post("/{session_id}/attention", response_model=QueryAttentionBody)
async def session_attention(session_id: str, body: AttentionQuery, sessions: SessionsDep,
                            pool: PoolDep) -> Response:
    """Attention of any query token (z, a or r at any fed step), per layer and head; rollout on request."""

    def work(entry: SessionEntry) -> dict[str, Any]:
        from backend.services.dream import query_dict
        from twm_core.dream import query_attention

        return query_dict(query_attention(entry.session, body.step, body.token, body.rollout))

    return await _with_session(pool, sessions, session_id, work, QueryAttentionBody)


@router.get("/{session_id}/attention/overview", response_model=OverviewBody)
async def session_attention_overview(session_id: str, sessions: SessionsDep, pool: PoolDep,
                                     layer: int = Query(0, ge=0), token: Token = "a",
                                     head: int | None = Query(None, ge=0)) -> Response:
    """One layer over the whole dream: the query (s, token) of every step s against all tokens."""

    def work(entry: SessionEntry) -> dict[str, Any]:
        from backend.services.dream import overview_dict
        from twm_core.dream import attention_overview

        return overview_dict(attention_overview(entry.session, layer, token, head))

    return await _with_session(pool, sessions, session_id, work, OverviewBody)


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_session(session_id: str, sessions: SessionsDep) -> Response:
    from backend.sessions import SessionNotFoundError

    try:
        sessions.delete(_check_id(session_id))
    except SessionNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
