"""Response body of `GET /api/runs/{run_id}/calibration`: reward and discount calibration on replay windows.

Mirrors `twm_core.calibration.Calibration`. Rewards are the stored (transformed, e.g. tanh) rewards; the discount
bins are over p = γ̂/γ, the predicted probability that the episode goes on; `terminal` means terminated (an episode
end the discount head must predict), never truncated.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

MAX_WINDOWS = 2048


class CalibrationPointsBody(BaseModel):
    """A subsample of the predicted steps (at most 5000), for scatter plots."""

    predicted_reward: list[float]
    real_reward: list[float]
    predicted_discount: list[float]
    terminal: list[bool]


class RewardBinBody(BaseModel):
    """Steps whose predicted reward lies in [lower, upper); null means with an empty bin."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    mean_real: float | None


class RewardValueBody(BaseModel):
    """The predicted reward on the steps with one real reward value (the most frequent values only)."""

    value: float
    count: int
    mean_predicted: float
    std_predicted: float


class DiscountBinBody(BaseModel):
    """Reliability bin of p = γ̂/γ in [lower, upper): calibrated when observed_continue ≈ mean_predicted."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_continue: float | None


class CalibrationSummaryBody(BaseModel):
    reward_mae: float
    reward_correlation: float | None
    """Null when the real or the predicted rewards are constant over the sampled steps."""
    discount_brier: float
    """Mean squared error of γ̂ against its training target γ·(1 − terminal)."""
    terminal_auroc: float | None
    """AUROC of 1 − γ̂ as a terminal detector; null when the sampled steps hold no terminal (or only terminals)."""
    num_windows: int
    num_steps: int
    num_terminals: int


class CalibrationResponse(BaseModel):
    run_id: str
    step: int
    """The checkpoint's step."""
    seed: int
    sequence_length: int
    discount_factor: float
    latent: Literal["sample", "argmax"]
    summary: CalibrationSummaryBody
    reward_bins: list[RewardBinBody]
    reward_values: list[RewardValueBody]
    discount_bins: list[DiscountBinBody]
    points: CalibrationPointsBody
