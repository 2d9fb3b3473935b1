"""Request and response bodies of the inspect endpoints: `POST /api/runs/{run_id}/imagine` and `.../attention`.

Frames are base64 PNGs (64×64 grayscale, the newest frame of the stack). Per-step arrays of an imagined rollout
of horizon H: `frames`, `latents` and `latent_indices` have H+1 entries (index 0 is the start's reconstruction),
`actions`, `rewards`, `discounts`, `weights`, `dones` have H (entry t is the transition from step t).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.services import ReplayStart, ResetStart, StartSpec

Checkpoint = Literal["latest"] | Annotated[int, Field(ge=0)]
MAX_HORIZON = 200
MAX_POLICY_STEPS = 2000


class ResetStartBody(BaseModel):
    """Start from a real env reset (evaluation env seeded with `seed`) after `policy_steps` policy steps."""

    kind: Literal["reset"]  # required, as in the discriminated union (the schema used to call it optional)
    policy_steps: int = Field(0, ge=0, le=MAX_POLICY_STEPS)


class ReplayStartBody(BaseModel):
    """Start from row `index` of the run's replay buffer (as of the checkpoint)."""

    kind: Literal["replay"]
    index: int = Field(ge=0)


StartBody = Annotated[ResetStartBody | ReplayStartBody, Field(discriminator="kind")]


def start_spec(body: ResetStartBody | ReplayStartBody) -> StartSpec:
    """The service-level start of a request body."""
    if isinstance(body, ReplayStartBody):
        return ReplayStart(body.index)
    return ResetStart(body.policy_steps)


class _InspectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: Checkpoint = "latest"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    start: StartBody = Field(default_factory=lambda: ResetStartBody(kind="reset"))


class ImagineRequest(_InspectRequest):
    horizon: int = Field(16, ge=1, le=MAX_HORIZON)
    actions: list[int] | None = None
    """One action index per step (length = horizon), or null for the policy."""
    compare_real: bool = False
    """Replay the actions in the real emulator from the same state (reset starts only)."""


class AttentionRequest(_InspectRequest):
    query_step: int = Field(0, ge=0, lt=MAX_HORIZON)
    """Imagined step whose action token is the query."""
    layer: int | None = Field(None, ge=0)
    """Also return this layer's full per-head matrix over the step's new query tokens."""
    actions: list[int] | None = None
    """Actions to imagine with (at least query_step + 1; extra ones are ignored), or null for the policy."""


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RealRolloutBody(_Response):
    frames: list[str]
    rewards: list[float]
    """Raw game rewards."""
    rewards_transformed: list[float]
    """As the learner sees them (tanh), comparable with the predicted rewards."""
    dones: list[bool]
    frame_diffs: list[float]
    """Mean |imagined − real| per frame, in [0, 1] pixel units."""


class ImagineResponse(_Response):
    run_id: str
    checkpoint_step: int
    game: str
    seed: int
    horizon: int
    policy: bool
    action_meanings: list[str]
    start_frame: str
    start_policy_actions: list[int]
    latent_shape: list[int]
    frames: list[str]
    latents: list[list[list[int]]]
    latent_indices: list[list[int]]
    actions: list[int]
    action_names: list[str]
    rewards: list[float]
    discounts: list[float]
    weights: list[float]
    dones: list[bool]
    real: RealRolloutBody | None = None


class TokenLabelBody(_Response):
    modality: Literal["z", "a", "r"]
    relative_step: int
    step: int
    index: int


class AttentionResponse(_Response):
    run_id: str
    checkpoint_step: int
    seed: int
    query_step: int
    num_layers: int
    num_heads: int
    tokens_per_step: int
    labels: list[TokenLabelBody]
    weights: list[list[list[float]]]
    """[layer][head][key]: the action token's attention row."""
    head_mean: list[list[float]]
    """[layer][key]: the head average, as the reference viewer shows it."""
    actions: list[int]
    action_names: list[str]
    frame: str
    reward: float
    discount: float
    layer: int | None = None
    layer_matrix: list[list[list[float]]] | None = None
    """[head][query][key] over the step's new tokens (r_{t-1}, z_t, a_t)."""
    query_labels: list[TokenLabelBody] | None = None
