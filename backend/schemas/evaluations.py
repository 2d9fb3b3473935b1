"""Request and response models of checkpoint evaluations (`/api/runs/{run_id}/evaluations`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from twm_core.checkpoint_evaluation import MAX_EPISODES


class EvaluationRequest(BaseModel):
    episodes: int = Field(10, ge=1, le=MAX_EPISODES, description="episodes to play (the paper's final evaluation: 100)")
    seed: int = Field(12345, ge=0, le=2**31 - 1, description="seeds the environments and the policy's sampling")


class Evaluation(BaseModel):
    """One evaluation of one checkpoint: its progress while it runs, its scores once finished."""

    step: int
    episodes: int
    seed: int
    state: Literal["running", "finished", "failed", "damaged"]
    done: int = Field(0, description="episodes finished so far")
    started_at: float | None = None
    ended_at: float | None = None
    scores: list[float] = Field(default_factory=list, description="raw score of each finished episode")
    summary: dict[str, float] = Field(default_factory=dict,
                                      description="score_mean, score_std, score_median, min, max, hns (Atari)")
    error: str | None = None


class EvaluationList(BaseModel):
    run_id: str
    evaluations: list[Evaluation]
