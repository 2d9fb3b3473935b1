"""Runs on disk: `GET /api/runs`, `/api/runs/{run_id}` and its `/metrics`, `/scores`, `/checkpoints`, `/events`.

Every run directory under `settings.runs_dir` is listed, whoever started it (a dashboard job or the CLI): the files
are the only source of truth. Reading them is `backend.runs`; this module maps its results onto HTTP. A damaged file
never fails a request (the run reads as `damaged`); a run that is absent, or deleted while a request reads it, is a
404 whose message names the run, not the server's paths.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from backend import runs
from backend.deps import JobsDep, RegistryDep, SettingsDep
from backend.jobs import JobConflict
from backend.schemas.runs import (
    CheckpointList,
    MetricsPage,
    RunDetail,
    RunList,
    ScoreKind,
    ScoresPage,
)
from twm_core.run_dir import RunDir

router = APIRouter(prefix="/runs", tags=["runs"])

MAX_POINTS_LIMIT = 10_000
T = TypeVar("T")


@contextmanager
def _not_found_as_404() -> Iterator[None]:
    """RunNotFoundError -> 404: the run is absent, or was deleted between resolving it and reading it."""
    try:
        yield
    except runs.RunNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


def _read(fn: Callable[..., T], *args: Any) -> T:
    with _not_found_as_404():
        return fn(*args)


def _run(run_id: str, settings: SettingsDep) -> RunDir:
    with _not_found_as_404():
        return runs.resolve_run(settings.runs_dir, run_id)


RunDep = Annotated[RunDir, Depends(_run)]


@router.get("", response_model=RunList)
def list_runs(settings: SettingsDep) -> RunList:
    """Every run directory (a folder with config.json), newest first; a damaged one is listed with its reason."""
    return RunList(runs=runs.list_run_summaries(settings.runs_dir))


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"description": "Unknown run"}, 409: {"description": "A job or process trains it"}})
def delete_run(run: RunDep, jobs: JobsDep, registry: RegistryDep) -> Response:
    """Delete the run directory and everything in it (renamed away first, so it vanishes whole); 409 while a job
    that has not ended trains it, or its training process is alive (a CLI run). Its jobs stay, their run gone."""
    try:
        jobs.remove_run(run.run_id)
    except JobConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    registry.forget(run.run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run: RunDep) -> RunDetail:
    """Config, status, latest metric values, checkpoints and a scores summary of one run."""
    return _read(runs.run_detail, run)


@router.get("/{run_id}/metrics", response_model=MetricsPage)
def get_metrics(
    run: RunDep,
    keys: Annotated[str | None, Query(description="comma-separated metric keys; default: all (under `prefix`)")] = None,
    after_step: Annotated[int | None, Query(description="only rows with step > after_step")] = None,
    max_points: Annotated[int, Query(ge=1, le=MAX_POINTS_LIMIT, description="downsample to this many rows")] = 1000,
    prefix: Annotated[str | None, Query(description="filter keys by prefix, e.g. `wm/`")] = None,
    offset: Annotated[int, Query(ge=0, description="byte offset in metrics.jsonl (a previous `next_offset`)")] = 0,
) -> MetricsPage:
    """Metric rows `{step, time, <key>: value}` of the chosen keys, downsampled, plus every available key."""
    return _read(runs.query_metrics, run, runs.parse_keys(keys), after_step, max_points, prefix, offset)


@router.get("/{run_id}/scores", response_model=ScoresPage)
def get_scores(run: RunDep, kind: ScoreKind | None = None) -> ScoresPage:
    """Raw episode scores (`train`, `eval` or `final_eval`; all when omitted) and the evaluation summary."""
    return _read(runs.query_scores, run, kind)


@router.get("/{run_id}/checkpoints", response_model=CheckpointList)
def get_checkpoints(run: RunDep) -> CheckpointList:
    """The run's checkpoints: step, file name, size and modification time."""
    return CheckpointList(run_id=run.run_id, checkpoints=runs.checkpoint_infos(run))


@router.get("/{run_id}/events", response_class=EventSourceResponse)
async def run_events(
    run: RunDep,
    settings: SettingsDep,
    after_step: Annotated[int | None, Query(description="skip the rows already logged with step <= after_step")] = None,
) -> EventSourceResponse:
    """Server-sent events: `metrics` (one row each), `status` (on change), then `end` once the run is final (or
    deleted: `end` with state `deleted`).

    A finished run sends its rows, its status and `end` at once. A client that goes away cancels the stream
    (sse-starlette watches for the disconnect), which stops the polling loop at its next await.
    """
    interval = settings.events_poll_interval

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for event, data in runs.follow_run(run, after_step, interval):
            yield ServerSentEvent(event=event, data=_json(data))

    # send_timeout: a client that stops reading without closing must not pin the stream forever.
    return EventSourceResponse(events(), ping=15, send_timeout=30)


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)
