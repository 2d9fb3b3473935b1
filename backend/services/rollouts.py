"""`POST /api/runs/{run_id}/imagine` over a dream session: begin, take `horizon` steps, report them.

The start, the imagination and the real emulator alongside are `twm_core.dream` (see its modules for the
semantics: reset or replay starts, O(1) steps on the key/value cache, per-step generators seeded from the request
seed, restarts from random replay observations after an imagined done). This module only shapes the response.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.services import InvalidRequest, ResetStart, StartSpec
from backend.services.dream import begin, latent_indices, png_base64, step_many
from twm_core.agent import Agent
from twm_core.dream import DreamSession, StartCache


@dataclass
class RealRollout:
    """The imagined actions replayed in the emulator; lists stop at the first real done.

    frames[0] is the start frame; frame_diffs[t] = mean |imagined_t − real_t| in [0, 1] pixel units.
    """

    frames: list[str]
    rewards: list[float]
    rewards_transformed: list[float]
    dones: list[bool]
    frame_diffs: list[float]


@dataclass
class ImagineResult:
    """An imagined rollout: H+1 frames/latents (index 0 = the start's reconstruction), H actions/predictions."""

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
    real: RealRollout | None = None


def check_actions(actions: list[int], num_actions: int) -> None:
    bad = [a for a in actions if not 0 <= a < num_actions]
    if bad:
        raise InvalidRequest(f"actions must lie in [0, {num_actions}) for this game, got {bad[:5]}")


def real_rollout(session: DreamSession) -> RealRollout:
    reals = [(p, p.real) for p in session.points if p.real is not None]
    return RealRollout(frames=[png_base64(r.frame) for _, r in reals],
                       rewards=[_known(r.reward) for _, r in reals[1:]],
                       rewards_transformed=[_known(r.reward_transformed) for _, r in reals[1:]],
                       dones=[r.done for _, r in reals[1:]],
                       frame_diffs=[p.errors.pixel for p, _ in reals if p.errors is not None])


def imagine_rollout(agent: Agent, starts: StartCache, seed: int, spec: StartSpec, horizon: int,
                    actions: list[int] | None = None, compare_real: bool = False) -> ImagineResult:
    """Imagine `horizon` steps from `spec` (policy when `actions` is None), optionally against the real env."""
    if horizon < 1:
        raise InvalidRequest(f"horizon must be >= 1, got {horizon}")
    if actions is not None:
        if len(actions) != horizon:
            raise InvalidRequest(f"got {len(actions)} actions for a horizon of {horizon}")
        check_actions(actions, agent.num_actions)
    if compare_real and not isinstance(spec, ResetStart):
        raise InvalidRequest("compare_real needs a reset start (a replay row has no emulator state to replay from)")
    session = begin(agent, starts, spec, seed, real=compare_real)
    try:
        step_many(session, horizon, actions)
    finally:
        session.close()
    c, k = agent.world_model.dyn_model.z_shape
    meanings = agent.action_meanings()
    points, moves = session.points, session.points[1:]
    indices = [latent_indices(agent, p.z) for p in points]
    taken = [int(p.action) for p in moves if p.action is not None]
    return ImagineResult(
        run_id=agent.run_id, checkpoint_step=agent.step, game=agent.config.env.game, seed=seed, horizon=horizon,
        policy=actions is None, action_meanings=meanings, start_frame=png_base64(session.start.obs[-1, -1].numpy()),
        start_policy_actions=list(session.start.policy_actions), latent_shape=[c, k],
        frames=[png_base64(p.frame) for p in points],
        latents=[[[int(j == i) for j in range(k)] for i in row] for row in indices], latent_indices=indices,
        actions=taken, action_names=[meanings[a] for a in taken], rewards=[float(p.reward or 0.0) for p in moves],
        discounts=[float(p.discount or 0.0) for p in moves], weights=[float(p.weight or 0.0) for p in moves],
        dones=[p.done for p in moves], real=real_rollout(session) if compare_real else None)


def _known(reward: float | None) -> float:
    """A real step after the start: it always has its transition's reward."""
    assert reward is not None
    return reward
