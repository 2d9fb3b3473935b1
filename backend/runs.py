"""Run directories for the API: listings, summaries, metric queries, scores, checkpoints and live events.

Everything here reads files a training process may be writing at the same moment, and files a crash or a hand edit
may have damaged. What a run directory holds and how each file is read tolerantly is `twm_core.run_reader` (the
one place that knows it); this module only shapes the results for HTTP: a bad line is skipped and counted, a bad
file shows the run as `damaged` with a reason, and one damaged run never changes the answer for the others.

No FastAPI here: the router (`backend.routers.runs`) maps `RunNotFoundError` to 404 and wraps `follow_run` in SSE.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from backend.schemas.runs import (
    STAGE_FIELDS,
    CheckpointInfo,
    MetricsPage,
    RunDetail,
    RunSummary,
    ScoreKind,
    ScoreRow,
    ScoresPage,
    ScoresSummary,
)
from twm_core.metrics import downsample, is_number
from twm_core.run_dir import RUN_ID_MAX_LENGTH, RunDir, RunNotFoundError, RunStatus, is_inside, list_runs, valid_run_id
from twm_core.run_reader import RunReader

__all__ = ["RunNotFoundError", "resolve_run", "list_run_summaries", "run_summary", "run_detail", "checkpoint_infos",
           "query_metrics", "query_scores", "follow_run", "parse_keys"]

_RESERVED = ("step", "time")


# ------------------------------------------------------------------------------------------------ files
def resolve_run(runs_dir: Path, run_id: str) -> RunDir:
    """The run `run_id` directly under `runs_dir`; anything else (not a run id by `twm_core.run_dir.valid_run_id`,
    absent, no config.json, a symlink out of the runs directory) is not found. The message names the run (an excerpt
    of an id that is not one), never the server's paths."""
    if not valid_run_id(run_id):
        raise RunNotFoundError(f"no run {run_id[:80]!r}{'…' if len(run_id) > 80 else ''}: a run id is one directory "
                               f"name of up to {RUN_ID_MAX_LENGTH} characters [A-Za-z0-9._-], not starting with . - _")
    run = RunDir(runs_dir / run_id)
    if not (run.path.is_dir() and is_inside(run.path, runs_dir) and os.path.lexists(run.config_path)):
        raise RunNotFoundError(f"no run {run_id!r}")
    return run


def checkpoint_infos(run: RunDir) -> list[CheckpointInfo]:
    """The run's checkpoint files by increasing step (entries that are not regular files are left out)."""
    return _checkpoint_infos(RunReader(run))


def _checkpoint_infos(reader: RunReader) -> list[CheckpointInfo]:
    """One per step, as `twm_core.checkpoint.list_checkpoints` resolves them: the full checkpoint where a snapshot
    shares its step (the scan lists it first)."""
    by_step: dict[int, CheckpointInfo] = {}
    for c in reader.checkpoints():
        by_step.setdefault(c.step, CheckpointInfo(step=c.step, name=c.path.name, size_bytes=c.size_bytes,
                                                  mtime=c.mtime, kind=c.kind))
    return list(by_step.values())


# ------------------------------------------------------------------------------------------------ summaries
def list_run_summaries(runs_dir: Path) -> list[RunSummary]:
    """A summary of every run under `runs_dir` (any folder with config.json, CLI runs included), newest first."""
    summaries = []
    for run in list_runs(runs_dir):
        try:
            summaries.append(run_summary(run))
        except RunNotFoundError:  # deleted while we were listing
            continue
    return summaries


def run_summary(run: RunDir) -> RunSummary:
    """Identity (config), progress (status) and latest evaluation (scores, else metrics) of one run."""
    return _summary(RunReader(run))


def run_detail(run: RunDir) -> RunDetail:
    """The summary plus config, status, the latest value of every metric, checkpoints and a scores summary."""
    reader = RunReader(run)
    summary = _summary(reader)
    status = reader.status()
    metric_rows = reader.metrics()
    detail = RunDetail(
        **summary.model_dump(), config=reader.config(), status=status.as_dict() if status else None,
        latest_metrics=reader.latest_metrics(), last_metrics_step=int(metric_rows[-1]["step"]) if metric_rows else None,
        checkpoints=_checkpoint_infos(reader), scores=ScoresSummary(**asdict(reader.evaluation_summary())),
    )
    detail.damaged = reader.damaged  # everything has been read by now
    return detail


def _summary(reader: RunReader) -> RunSummary:
    created = reader.created()  # first: RunNotFoundError when the run was deleted since it was resolved
    identity, status = reader.identity(), reader.status()
    reader.metrics()  # read even when scores.jsonl has the evaluations: a damaged log must show in the listing
    evaluations = reader.evaluations()
    num_checkpoints = len({c.step for c in reader.checkpoints()})
    latest = evaluations[-1] if evaluations else None
    return RunSummary(
        run_id=reader.run.run_id, game=identity.game, preset=identity.preset, seed=identity.seed,
        state=str(status.state) if status else "unknown", stale=bool(status and status.stale),
        phase=_str(status.get("phase")) if status else None, step=status.get("step") if status else None,
        total_steps=(status.get("total_steps") if status else None) or identity.total_steps,
        created=created, updated=status.get("updated") if status else None,
        error=status.error if status else None, latest_eval_score=latest.mean if latest else None,
        latest_eval_step=latest.step if latest else None, num_checkpoints=num_checkpoints, damaged=reader.damaged,
        **_stage_fields(status),
    )


def _stage_fields(status: RunStatus | None) -> dict[str, Any]:
    """status.json's stage progress (`STAGE_FIELDS`) as `RunSummary` takes it: a value of the wrong type reads as
    None, so a hand-edited or future status.json never fails the listing."""
    if status is None:
        return {}
    fields: dict[str, Any] = {}
    for name in STAGE_FIELDS:
        value = status.get(name)
        fields[name] = _str(value) if name in ("stage", "stage_unit") else (value if is_number(value) else None)
    return fields


# ------------------------------------------------------------------------------------------------ queries
def parse_keys(keys: str | None) -> list[str]:
    """'a, b,,a' -> ['a', 'b']: comma-separated, stripped, empty parts and repeats dropped."""
    return list(dict.fromkeys(part.strip() for part in (keys or "").split(",") if part.strip()))


def query_metrics(run: RunDir, keys: list[str], after_step: int | None = None, max_points: int = 1000,
                  prefix: str | None = None, offset: int = 0) -> MetricsPage:
    """Rows `{step, time?, <key>: value}` of the selected keys (all keys under `prefix` when none are given).

    Rows with `step <= after_step`, rows before byte `offset`, and rows holding none of the keys are dropped; what
    is left is thinned to `max_points` rows by `downsample` (first and last kept).
    """
    reader = RunReader(run)
    reader.created()
    all_page = reader.rows(run.metrics_path)
    all_rows = all_page.rows
    available = sorted({key for row in all_rows for key in row} - set(_RESERVED))
    if prefix:
        available = [key for key in available if key.startswith(prefix)]
    wanted = keys or available
    # A second read only when asked to start mid-file; an offset past the end (a resume cut the file) restarts at 0.
    page = reader.rows(run.metrics_path, offset) if offset > 0 else all_page
    selected = []
    for row in page.rows:
        if after_step is not None and row["step"] <= after_step:
            continue
        values = {key: row[key] for key in wanted if key in row}
        if values:
            head = {"step": row["step"], **({"time": row["time"]} if "time" in row else {})}
            selected.append(head | values)
    return MetricsPage(
        run_id=run.run_id, keys=wanted, available_keys=available, rows=downsample(selected, max_points),
        total_rows=len(selected), last_step=int(all_rows[-1]["step"]) if all_rows else None,
        next_offset=page.next_offset, skipped_lines=all_page.skipped, damaged=reader.damaged,
    )


def query_scores(run: RunDir, kind: ScoreKind | None = None) -> ScoresPage:
    """Episode scores of one kind (all kinds when None), plus the summary over all of them."""
    reader = RunReader(run)
    reader.created()
    rows = [ScoreRow(**asdict(record)) for record in reader.scores(kind)]
    summary = ScoresSummary(**asdict(reader.evaluation_summary()))
    return ScoresPage(run_id=run.run_id, kind=kind, rows=rows, summary=summary, damaged=reader.damaged)


# ------------------------------------------------------------------------------------------------ live events
async def follow_run(run: RunDir, after_step: int | None = None,
                     poll_interval: float = 0.5) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield ("metrics", row) for each metric row and ("status", status) on each status change, until the run is
    final or deleted; then ("end", {...}) and stop.

    metrics.jsonl is tailed by byte offset, so each row is read once and a half-written last line waits for the next
    poll. `after_step` skips the rows already there with `step <= after_step`; rows appended later are all sent
    (an evaluation row may share the step of the last training row). Status is read *before* the metrics in each
    poll: the trainer logs its last rows before it writes a final state, so seeing that state means every row has
    been read by the end of the same poll. A run deleted while followed ends with state `deleted`.
    """
    offset, backlog, last_step = 0, True, None
    last_status: dict[str, Any] | None = None
    while True:
        reader = RunReader(run)
        if not await anyio.to_thread.run_sync(os.path.lexists, run.config_path):
            yield "end", {"state": "deleted", "stale": False, "last_step": last_step}
            return
        status: RunStatus | None = await anyio.to_thread.run_sync(reader.status)
        page = await anyio.to_thread.run_sync(reader.rows, run.metrics_path, offset)
        offset = page.next_offset
        for row in page.rows:
            if backlog and after_step is not None and row["step"] <= after_step:
                continue
            last_step = row["step"]
            yield "metrics", row
        backlog = False
        current = status.as_dict() if status else {"state": "unknown"}
        if current != last_status:
            yield "status", current
            last_status = current
        if status is not None and status.final:
            yield "end", {"state": str(status.state), "stale": status.stale, "last_step": last_step}
            return
        await anyio.sleep(poll_interval)


# ------------------------------------------------------------------------------------------------ helpers
def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
