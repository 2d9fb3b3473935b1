"""`POST /api/runs/{run_id}/attention` over a dream session: the action token's attention at one imagined step.

As the authors' viewer (`play.py` `DreamEnv.step`, method.md §6.1): at imagined step t, the attention row of the
action token a_t per layer, raw softmax weights, head-averaged beside the per-head rows; on request one layer's
full matrix for all of the step's new query tokens (r_{t-1}, z_t, a_t). Labels come from the dynamics model
(`twm_core.models.dynamics.token_labels`); any other query, rollout and whole-dream views are the sessions API.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.services import InvalidRequest, StartSpec
from backend.services.dream import begin, png_base64, step_many
from backend.services.rollouts import check_actions
from twm_core.agent import Agent
from twm_core.dream import StartCache, query_attention
from twm_core.dream.attention import call_attention
from twm_core.models.dynamics import TokenLabel


@dataclass
class AttentionResult:
    """Attention of the action token a_t at imagined step `query_step`.

    weights [L][H][S] (each row sums to 1); head_mean [L][S]; labels S; layer_matrix [H][T][S] over the T new
    query tokens of the step (labelled by query_labels) when a layer was asked for.
    """

    run_id: str
    checkpoint_step: int
    seed: int
    query_step: int
    num_layers: int
    num_heads: int
    tokens_per_step: int
    labels: list[TokenLabel]
    weights: list[list[list[float]]]
    head_mean: list[list[float]]
    actions: list[int]
    action_names: list[str]
    frame: str
    reward: float
    discount: float
    layer: int | None = None
    layer_matrix: list[list[list[float]]] | None = None
    query_labels: list[TokenLabel] | None = None


def attention_maps(agent: Agent, starts: StartCache, seed: int, spec: StartSpec, query_step: int,
                   layer: int | None = None, actions: list[int] | None = None) -> AttentionResult:
    """Imagine query_step + 1 steps (policy, or the first query_step + 1 of `actions`) and read the attention of
    the last step's action token. Same seed and start as `imagine_rollout` → the same imagined steps."""
    num_layers = agent.config.dyn.num_layers
    if query_step < 0:
        raise InvalidRequest(f"query_step must be >= 0, got {query_step}")
    if layer is not None and not 0 <= layer < num_layers:
        raise InvalidRequest(f"layer must lie in [0, {num_layers}), got {layer}")
    if actions is not None:
        if len(actions) <= query_step:
            raise InvalidRequest(f"query_step {query_step} needs at least {query_step + 1} actions, got {len(actions)}")
        actions = actions[: query_step + 1]
        check_actions(actions, agent.num_actions)
    session = begin(agent, starts, spec, seed, real=False)
    try:
        step_many(session, query_step + 1, actions)
    finally:
        session.close()
    q = query_attention(session, query_step, "a")
    maps = call_attention(session, query_step)  # (L, H, T, S)
    m = agent.config.dyn.tokens_per_step
    p = session.points[query_step + 1]
    taken = [int(pt.action) for pt in session.points[1:] if pt.action is not None]
    meanings = agent.action_meanings()
    query_labels = None if layer is None else q.labels[-maps.shape[2]:]  # the step's new tokens end the keys
    return AttentionResult(
        run_id=agent.run_id, checkpoint_step=agent.step, seed=seed, query_step=query_step, num_layers=num_layers,
        num_heads=int(maps.shape[1]), tokens_per_step=m, labels=q.labels, weights=q.weights.tolist(),
        head_mean=q.weights.mean(1).tolist(), actions=taken, action_names=[meanings[a] for a in taken],
        frame=png_base64(session.points[query_step].frame), reward=float(p.reward or 0.0),
        discount=float(p.discount or 0.0), layer=layer,
        layer_matrix=None if layer is None else maps[layer].tolist(), query_labels=query_labels)
