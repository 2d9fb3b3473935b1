"""Response models of the runs API (`GET /api/runs...`): summaries, details, metric pages, scores, checkpoints.

Times are unix seconds (floats), as in the run files themselves; steps are env steps.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ScoreKind = Literal["train", "eval", "final_eval"]


class CheckpointInfo(BaseModel):
    """One checkpoint file of a run."""

    step: int
    name: str = Field(description="file name inside the run's ckpt/ folder, e.g. step_000000100.pt")
    size_bytes: int
    mtime: float
    kind: Literal["full", "snapshot"] = Field("full", description="full: a resume point (weights, optimizers, "
                                              "replay state, RNG; step_*.pt); snapshot: weights only (snap_*.pt)")


class CheckpointList(BaseModel):
    run_id: str
    checkpoints: list[CheckpointInfo]


class RunSummary(BaseModel):
    """One row of the runs table: what the run is, how far it got, how well it plays."""

    run_id: str
    game: str | None = None
    preset: str | None = None
    seed: int | None = None
    state: str = Field(description="status.json state; `failed` (with stale=true) when a live state's process is "
                                   "gone; `unknown` before the first status.json")
    stale: bool = False
    phase: str | None = None
    step: int | None = None
    total_steps: int | None = None
    created: float = Field(description="config.json mtime: when the run was started")
    updated: float | None = Field(None, description="when status.json was last written")
    error: str | None = None
    latest_eval_score: float | None = Field(None, description="mean score of the latest eval or final_eval")
    latest_eval_step: int | None = None
    num_checkpoints: int = 0
    damaged: str | None = Field(None, description="why some of the run's files could not be read (each named "
                                                  "<run_id>/<file>: reason); None when all read cleanly")
    # Progress of the current stage, from status.json as the trainer writes it (None for a run older than these
    # fields, or a value of the wrong type).
    stage: str | None = Field(None, description="current stage: prefill, pretrain/obs, pretrain/dyn, pretrain/ac, "
                                                "train, eval or final_eval")
    stage_done: int | float | None = Field(None, description="work done in the stage, in `stage_unit`")
    stage_total: int | float | None = Field(None, description="work the stage needs, in `stage_unit`; None when "
                                                              "not known")
    stage_unit: str | None = Field(None, description="unit of stage_done/stage_total: env steps, frames or episodes")
    stage_started_at: float | None = Field(None, description="unix time the stage started")
    eta_s: float | None = Field(None, description="estimated seconds left in the stage; None before an estimate")
    run_eta_s: float | None = Field(None, description="estimated seconds left for the whole run; None before one")


STAGE_FIELDS: tuple[str, ...] = ("stage", "stage_done", "stage_total", "stage_unit", "stage_started_at", "eta_s",
                                 "run_eta_s")
"""The status.json fields of stage progress that `RunSummary` passes through."""


class GameBaselines(BaseModel):
    """Reference scores of one Atari 100k game (`GET /api/games/{game}/baselines`): the lines a run's score chart is
    drawn against. From twm_core/data/atari100k-scores.json (Table 1 of the TWM paper)."""

    game: str
    random: float = Field(description="mean raw score of a uniformly random policy")
    human: float = Field(description="mean raw score of a human player")
    twm: float = Field(description="the paper's TWM score: mean over 5 runs of 100 final evaluation episodes each")
    twm_runs: list[float] = Field(description="the paper's 5 per-run final scores")


class RunList(BaseModel):
    runs: list[RunSummary]


class ScoresSummary(BaseModel):
    """Evaluation results (means over each evaluation's episodes) and training-episode counts."""

    last_eval_mean: float | None = None
    last_eval_step: int | None = None
    best_eval_mean: float | None = None
    best_eval_step: int | None = None
    final_eval_mean: float | None = None
    final_eval_step: int | None = None
    final_eval_hns: float | None = Field(None, description="human-normalized final score (metric eval/final_hns)")
    eval_hns: float | None = Field(None, description="human-normalized score of the latest eval (metric eval/hns)")
    evaluations: int = 0
    train_episodes: int = 0
    last_train_score: float | None = None


class RunDetail(RunSummary):
    """Everything about one run except its full metric history."""

    config: dict[str, Any]
    status: dict[str, Any] | None
    latest_metrics: dict[str, Any] = Field(description="the last logged value of every metric key")
    last_metrics_step: int | None = None
    checkpoints: list[CheckpointInfo]
    scores: ScoresSummary


class MetricsPage(BaseModel):
    """Metric rows `{step, time?, <key>: value}` holding only the selected keys, downsampled."""

    run_id: str
    keys: list[str] = Field(description="the keys the rows were filtered to (all available ones when none asked)")
    available_keys: list[str] = Field(description="every metric key of the run (under `prefix` when given)")
    rows: list[dict[str, Any]]
    total_rows: int = Field(description="matching rows before downsampling")
    last_step: int | None = Field(None, description="step of the newest row in metrics.jsonl")
    next_offset: int = Field(description="byte offset to pass as `offset` to fetch only rows written after these")
    skipped_lines: int = Field(0, description="lines of metrics.jsonl that are not a metric row (skipped)")
    damaged: str | None = Field(None, description="why some of the run's files could not be read")


class ScoreRow(BaseModel):
    step: int
    time: float | None = None
    kind: str
    score: float | None
    length: int | None = None


class ScoresPage(BaseModel):
    run_id: str
    kind: ScoreKind | None
    rows: list[ScoreRow]
    summary: ScoresSummary
    damaged: str | None = Field(None, description="why some of the run's files could not be read")
