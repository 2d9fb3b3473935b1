"""Request and response bodies of `/api/jobs`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal["queued", "running", "finished", "failed", "cancelled"]


class TrainRequest(BaseModel):
    """A training job: a preset for a game, with dotted config overrides (validated by building the config)."""

    model_config = ConfigDict(extra="forbid")

    game: str = Field(examples=["Pong", "Catch"])
    """Game name, case-insensitive (`GET /api/games`)."""
    preset: str = Field(default="atari100k", examples=["atari100k", "debug", "catch"])
    """Config preset (`GET /api/presets`)."""
    seed: int | None = Field(default=None, ge=0)
    """Run seed; chosen at random (and saved) when omitted."""
    steps: int | None = Field(default=None, gt=0)
    """Environment steps (`train.total_steps`); the preset's when omitted."""
    device: str | None = Field(default=None, examples=["auto", "cpu", "cuda", "cuda:1"])
    """`auto`, `cpu`, `cuda` or `cuda:N`; the backend's `device` setting when omitted."""
    overrides: dict[str, Any] = Field(default_factory=dict, examples=[{"dyn.num_layers": 2}])
    """Dotted config keys to values, e.g. `{"train.checkpoint_every": 1000}`."""


class JobProgress(BaseModel):
    """Progress of the job's run, read from its status.json."""

    model_config = ConfigDict(from_attributes=True)

    step: int
    total_steps: int
    fraction: float
    phase: str | None
    """Trainer phase: prefill, pretrain, train, final_eval, finished."""
    run_state: str | None
    """The run's own state in status.json (starting, prefill, pretrain, training, evaluating, finished, ...)."""
    stage: str | None = None
    """The run's current stage: prefill, pretrain/obs, pretrain/dyn, pretrain/ac, train, eval, final_eval."""
    stage_fraction: float | None = None
    """Share of the stage done, where its size is known."""
    eta_s: float | None = None
    """Seconds left in the stage (the trainer's estimate at this attempt's rate); None before one."""
    run_eta_s: float | None = None
    """Seconds left for the run (the trainer's estimate); None where it cannot say."""


class JobStatus(BaseModel):
    """One job: its record, its current attempt and its run's progress. Times are unix seconds."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str
    run_id: str
    run_dir: str
    state: JobState
    attempt: int
    """1 for the first run, +1 for each resume."""
    game: str
    preset: str
    seed: int
    device: str
    steps: int | None
    overrides: dict[str, Any]
    pid: int | None
    exit_code: int | None
    """Exit code of the last attempt; None while running, or when it ended unobserved (a backend restart)."""
    error: str | None
    """Why it failed (with the tail of train.log), or how a cancel ended."""
    created_at: float
    started_at: float | None
    ended_at: float | None
    cancel_requested_at: float | None
    executor: str | None
    """`local` or `ray`: what runs the job (None for jobs recorded before executors existed: local)."""
    sweep_id: str | None
    """The sweep the job belongs to, if any."""
    retries: int
    """Automatic retries after failures so far (sweep jobs are retried up to `max_retries`)."""
    max_retries: int
    progress: JobProgress
    resumable: bool = False
    """Cancelled or failed, with a checkpoint to resume from: what `POST .../resume` accepts."""
    queue_position: int | None = None
    """Queued jobs: 1 for the next to start, 2 for the one after, ...; None otherwise."""
    waiting_for: str | None = None
    """Queued jobs: why it has not started (busy slots, or an executor this backend does not run)."""


class JobList(BaseModel):
    """Every job, newest first."""

    jobs: list[JobStatus]
