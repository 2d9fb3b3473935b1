"""Bodies of the dream-session endpoints (`/api/sessions`).

A session's points: entry t is point t (0 = the start): its decoded frame (base64 PNG, 64×64 grayscale), the class
of each latent categorical, the prior's confidence per categorical, and the transition t−1 → t (action, r̂, γ̂,
done; null at t = 0). With a real start, `real` holds the emulator's frame after the same actions and `errors` the
per-step errors (latent cross-entropy of the prior against the real posterior, |r̂ − r|, |γ̂ − γ·(1 − terminal)|,
mean absolute pixel error), until the real episode ends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.schemas.inspect import Checkpoint, ResetStartBody, StartBody, TokenLabelBody

MAX_STEPS_PER_CALL = 256
Token = Literal["z", "a", "r"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionCreate(_Request):
    run_id: str = Field(min_length=1, max_length=255)
    checkpoint: Checkpoint = "latest"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    start: StartBody = Field(default_factory=lambda: ResetStartBody(kind="reset"))
    real: bool = True
    """Step the real emulator alongside (reset starts only; ignored for replay starts)."""
    steps: int = Field(0, ge=0, le=MAX_STEPS_PER_CALL)
    """Steps to take at once (policy, or `actions`)."""
    actions: list[Annotated[int, Field(ge=0)]] | None = Field(None, max_length=MAX_STEPS_PER_CALL)


class StepRequest(_Request):
    count: int = Field(1, ge=1, le=MAX_STEPS_PER_CALL)
    actions: list[Annotated[int, Field(ge=0)]] | None = Field(None, max_length=MAX_STEPS_PER_CALL)
    """One action per step (then `count` defaults to their number), or null for the policy."""


class LatentEdit(_Request):
    categorical: int = Field(ge=0)
    category: int = Field(ge=0)


class ForkRequest(_Request):
    step: int = Field(ge=0)
    """Point to branch from (0 … the session's number of steps)."""
    action: int | None = Field(None, ge=0)
    """Action to take at `step` in the fork (null: none yet)."""
    latent: list[LatentEdit] = Field(default_factory=list, max_length=1024)
    """Set categorical i of z_step to a class, before the action."""
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    """Another seed resamples the fork's future; by default it shares the parent's random numbers."""
    steps: int = Field(0, ge=0, le=MAX_STEPS_PER_CALL)
    """Policy steps to take after the action."""
    since: int = Field(0, ge=0)
    """Return the fork's points from this index on (`step + 1`: only the new ones; the rest are the parent's)."""


class FuturesRequest(_Request):
    n: int = Field(8, ge=1, le=32)
    horizon: int = Field(16, ge=1, le=64)
    step: int | None = Field(None, ge=0)
    """Point to sample from (default: the last)."""
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    actions: list[Annotated[int, Field(ge=0)]] | None = Field(None, max_length=64)
    """The same actions for every future (length `horizon`), or null for the policy."""


class AttentionQuery(_Request):
    step: int = Field(ge=-1)
    """The query token's step (−1 = the real context step)."""
    token: Token = "a"
    rollout: bool = False
    """Also the attention rollout (Abnar & Zuidema 2020) of every layer over all tokens so far."""


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RealBody(_Response):
    frame: str
    latent: list[int]
    """Class of each categorical of the real frame's posterior (argmax)."""
    reward: float | None
    reward_transformed: float | None
    done: bool


class ErrorsBody(_Response):
    latent_ce: float | None
    reward: float | None
    discount: float | None
    pixel: float


class PointBody(_Response):
    step: int
    frame: str
    latent: list[int]
    confidence: list[float] | None
    """Prior probability of the sampled class, per categorical (null where z was not drawn from the prior)."""
    action: int | None
    action_name: str | None
    reward: float | None
    discount: float | None
    weight: float | None
    done: bool
    restarted: bool
    """An imagined done restarted the dream from a fresh start latent here."""
    edited: bool
    real: RealBody | None
    errors: ErrorsBody | None


class SessionBody(_Response):
    id: str
    run_id: str
    checkpoint_step: int
    game: str
    seed: int
    start: str
    start_policy_actions: list[int]
    parent: str | None
    parent_step: int | None
    action_meanings: list[str]
    latent_shape: list[int]
    num_layers: int
    num_heads: int
    tokens_per_step: int
    num_steps: int
    since: int
    """Index of the first point in `points` (the request's `since`)."""
    points: list[PointBody]


class SessionSummary(_Response):
    id: str
    run_id: str
    checkpoint_step: int
    seed: int
    num_steps: int
    parent: str | None
    idle_seconds: float


class LatentBody(_Response):
    step: int
    latent_shape: list[int]
    sample: list[int]
    prior: list[list[float]] | None
    posterior: list[list[float]] | None


class FuturesBody(_Response):
    step: int
    seed: int
    n: int
    horizon: int
    frames: list[list[str]]
    """[future][t]: the frame after t + 1 steps."""
    mean: list[str]
    std: list[str]
    """Per step: the per-pixel standard deviation over the futures as a PNG scaled by `std_max` of that step."""
    std_max: list[float]
    std_mean: list[float]
    actions: list[list[int]]
    rewards: list[list[float]]
    discounts: list[list[float]]
    dones: list[list[bool]]
    latents: list[list[list[int]]]


class QueryAttentionBody(_Response):
    step: int
    token: Token
    weights: list[list[list[float]]]
    """[layer][head][key] over the query's keys (`labels`)."""
    head_mean: list[list[float]]
    labels: list[TokenLabelBody]
    rollout: list[list[float]] | None
    """[layer][token] over every token so far (`rollout_labels`)."""
    rollout_labels: list[TokenLabelBody] | None


class OverviewBody(_Response):
    layer: int
    head: int | None
    token: Token
    steps: list[int]
    matrix: list[list[float]]
    """[row][token]: row i is the attention of the query (steps[i], token) over all tokens (`labels`)."""
    labels: list[TokenLabelBody]
