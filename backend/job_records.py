"""What a job is, as the API and the sweeps see it: its states, its record, and the live progress of its run."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from twm_core.metrics import is_number
from twm_core.run_dir import RunDir, read_run_status

JOB_STATES = ("queued", "running", "finished", "failed", "cancelled")
ENDED_STATES = frozenset({"finished", "failed", "cancelled"})


class JobNotFound(KeyError):
    """No job has this id."""


class JobConflict(RuntimeError):
    """The job's state does not allow the operation (cancel an ended job, resume a finished one)."""


@dataclass(frozen=True)
class Progress:
    """Where the run stands, from its status.json (`step` of `total_steps` env steps)."""

    step: int
    total_steps: int
    fraction: float
    phase: str | None
    run_state: str | None
    stage: str | None = None
    """The run's current stage (status.json `stage`: prefill, pretrain/obs, ..., train, eval, final_eval)."""
    stage_fraction: float | None = None
    """`stage_done / stage_total`, where both are known."""
    eta_s: float | None = None
    """Seconds left in the stage, as the trainer estimates it."""
    run_eta_s: float | None = None
    """Seconds left for the run, as the trainer estimates it."""


@dataclass(frozen=True)
class Job:
    """One job record plus the live progress of its run."""

    job_id: str
    run_id: str
    run_dir: str
    state: str
    attempt: int
    game: str
    preset: str
    seed: int
    device: str
    steps: int | None
    overrides: dict[str, Any]
    pid: int | None
    exit_code: int | None
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    cancel_requested_at: float | None
    executor: str | None
    sweep_id: str | None
    retries: int
    max_retries: int
    progress: Progress
    resumable: bool = False
    """Cancelled or failed with a checkpoint to resume from (what `resume` accepts)."""
    queue_position: int | None = None
    """1 for the next queued job to start, 2 for the one after it, ...; None unless queued."""
    waiting_for: str | None = None
    """Why a queued job has not started yet."""


def to_job(row: sqlite3.Row, queue_position: int | None = None, waiting_for: str | None = None) -> Job:
    status = safe_status(RunDir(row["run_dir"]))
    total = int(status.get("total_steps") or row["total_steps"])
    step = int(status.get("step") or 0)
    done, stage_total = _number(status.get("stage_done")), _number(status.get("stage_total"))
    stage = status.get("stage")
    progress = Progress(step=step, total_steps=total, fraction=min(1.0, step / total) if total else 0.0,
                        phase=status.get("phase"), run_state=status.get("state"),
                        stage=stage if isinstance(stage, str) else None,
                        stage_fraction=min(1.0, done / stage_total) if done is not None and stage_total else None,
                        eta_s=_number(status.get("eta_s")), run_eta_s=_number(status.get("run_eta_s")))
    columns = {f.name: row[f.name] for f in fields(Job) if f.name in row.keys()}  # noqa: SIM118 - sqlite3.Row
    columns["overrides"] = json.loads(row["overrides"])
    return Job(**columns, progress=progress, resumable=_resumable(row), queue_position=queue_position,
               waiting_for=waiting_for)


def _resumable(row: sqlite3.Row) -> bool:
    if row["state"] not in ("cancelled", "failed"):
        return False
    from twm_core.checkpoint import latest_checkpoint  # lazy: imports torch

    return latest_checkpoint(RunDir(row["run_dir"])) is not None


def _number(value: Any) -> float | None:
    """A finite number of status.json as a float (None for anything else: the file is not ours to trust)."""
    return float(value) if is_number(value) else None


def safe_status(run: RunDir) -> dict[str, Any]:
    """status.json's fields as written, type-checked (a bad field or file reads as absent): never raises, so one
    damaged run cannot break the job or sweep listings."""
    status = read_run_status(run)
    return status.fields if status is not None else {}
