"""Request and response bodies of `/api/sweeps` and `/api/report`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.schemas.jobs import JobStatus

SweepState = Literal["queued", "running", "finished", "failed", "cancelled"]


class SweepRequest(BaseModel):
    """One training job per (game, seed), all with the same preset, steps, device and overrides."""

    model_config = ConfigDict(extra="forbid")

    games: list[str] | str = Field(examples=[["Pong", "Boxing"], "atari100k"])
    """Game names, a comma-separated string, or `atari100k` for the benchmark's 26 games."""
    seeds: list[int] | str = Field(default="0-4", examples=["0-4", [0, 1]])
    """Seeds: a list, or text like `0-4` or `0,2,5`."""
    preset: str = Field(default="atari100k", examples=["atari100k", "debug"])
    steps: int | None = Field(default=None, gt=0)
    """Environment steps of each run (`train.total_steps`); the preset's when omitted."""
    device: str | None = Field(default=None, examples=["auto", "cpu", "cuda"])
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Dotted config keys to values, applied to every run."""
    max_retries: int = Field(default=1, ge=0, le=10)
    """How often a failed run is retried (from its last checkpoint when it has one)."""
    name: str | None = Field(default=None, max_length=200)


class SweepCounts(BaseModel):
    """Jobs of the sweep per state."""

    queued: int
    running: int
    finished: int
    failed: int
    cancelled: int


class SweepStatus(BaseModel):
    """A sweep, its jobs (sorted by game, then seed), and where they stand together. Times are unix seconds."""

    model_config = ConfigDict(from_attributes=True)

    sweep_id: str
    name: str
    preset: str
    games: list[str]
    seeds: list[int]
    steps: int | None
    device: str
    executor: str
    max_retries: int
    created_at: float
    cancel_requested_at: float | None
    state: SweepState
    counts: SweepCounts
    progress: float
    """Mean over the jobs of their run's progress, 0..1."""
    jobs: list[JobStatus]


class SweepList(BaseModel):
    """Every sweep, newest first."""

    sweeps: list[SweepStatus]


class Interval(BaseModel):
    """A point estimate and its bootstrap confidence interval (None where there are no per-run scores)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None


class Aggregates(BaseModel):
    """Aggregates of human-normalized scores over games (Agarwal et al. 2021)."""

    mean: Interval
    median: Interval
    iqm: Interval
    optimality_gap: Interval


class Report(BaseModel):
    """Per-game final scores beside the paper's Table 1, aggregates with CIs, performance profiles
    (`twm_core.report.build_report`)."""

    games: list[dict[str, Any]]
    """Per game: `game`, `runs` (run_id, seed, score, hns, episodes), `mean_score`, `hns`, `paper`, `paper_hns`."""
    aggregates: dict[str, Aggregates]
    """Per method: `ours`, `TWM (paper)`, and Table 1's other methods (point estimates only)."""
    profile: dict[str, Any]
    """`taus` and, per method, `fraction` of runs with a human-normalized score above each tau (with CI bands)."""
    meta: dict[str, Any]
    """num_runs, num_games, games_missing, reps, confidence, seed, note; plus `skipped` runs and why."""
