"""Attention of the dynamics model's action token during imagination, as the authors visualised it (method.md §6.1).

The reference viewer (`play.py` `DreamEnv.step`) takes, at each imagined step, the attention row of the current
action token a_t (the query whose output is h_t), per layer, averaged over heads: raw softmax weights, no rollout
or flow. We return that head average, the per-head rows it comes from, and on request one layer's full matrix for
all the step's new query tokens.

Token layout of the incremental path (`DynamicsModel.step`): the memory holds the last `memory_length·M + 2` tokens,
z, a, (r) per step, ending with z, a of the previous step; a step adds (r_{t-1}, z_t, a_t), or (z_t, a_t) without
reward input. So the S keys of step t always end with z_t, a_t, and start with a z token. Absolute token indices
count from z_{-1}, the real context step (index 0), so step t's a_t is token 2 + M·(t+1) − 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.registry import LoadedModel
from backend.services import InvalidRequest, StartSpec
from backend.services.rollouts import check_actions, png_base64, prepare_start, run_imagination, to_uint8

MODALITIES = ("z", "a", "r")


@dataclass(frozen=True)
class TokenLabel:
    """A key token: its modality, its step relative to the query's (0 = the query's step, −1 the one before),
    that step's absolute index (−1 = the real context step), and its absolute token index."""

    modality: str
    relative_step: int
    step: int
    index: int


def token_labels(num_keys: int, tokens_per_step: int, query_step: int = 0, first_index: int = 0) -> list[TokenLabel]:
    """Labels of `num_keys` tokens laid out z, a, (r) per step and ending with the query step's z, a.

    `first_index` is the absolute index of the first key (tokens dropped from the memory come before it).
    """
    m = tokens_per_step
    if m not in (2, 3):
        raise ValueError(f"tokens_per_step must be 2 (z, a) or 3 (z, a, r), got {m}")
    if num_keys < 2 or (num_keys - 2) % m != 0:
        raise ValueError(f"{num_keys} keys are not whole steps of {m} tokens plus the current z, a")
    labels = []
    for j in range(num_keys):
        p = j - (num_keys - 2)  # position relative to the query step's z token
        relative = p // m  # floor: the r token just before z_t belongs to step t-1
        labels.append(TokenLabel(MODALITIES[p % m], relative, query_step + relative, first_index + j))
    return labels


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


def attention_maps(model: LoadedModel, seed: int, spec: StartSpec, query_step: int, layer: int | None = None,
                   actions: list[int] | None = None) -> AttentionResult:
    """Imagine query_step + 1 steps (policy, or the first query_step + 1 of `actions`) and read the attention of
    the last step's action token. Same seed and start as `imagine_rollout` → the same imagined steps."""
    num_layers = model.config.dyn.num_layers
    if query_step < 0:
        raise InvalidRequest(f"query_step must be >= 0, got {query_step}")
    if layer is not None and not 0 <= layer < num_layers:
        raise InvalidRequest(f"layer must lie in [0, {num_layers}), got {layer}")
    if actions is not None:
        if len(actions) <= query_step:
            raise InvalidRequest(f"query_step {query_step} needs at least {query_step + 1} actions, got {len(actions)}")
        actions = actions[: query_step + 1]
        check_actions(actions, model.num_actions)
    with torch.inference_mode():
        start = prepare_start(model, spec, seed)
        start.close()  # the emulator is not needed here
        traj = run_imagination(model, start, seed, query_step + 1, actions, return_attention=True)
        frame = to_uint8(model.world_model.obs_model.decode(traj.z[:, query_step:query_step + 1])[0, 0, -1])
    attention = traj.attention[query_step][0].float().cpu()  # (L, H, T, S)
    _, num_heads, num_queries, num_keys = attention.shape
    m = model.config.dyn.tokens_per_step
    total = 2 + m * (query_step + 1)  # tokens fed so far: (z_{-1}, a_{-1}), then M per imagined step
    labels = token_labels(num_keys, m, query_step, first_index=total - num_keys)
    rows = attention[:, :, -1]  # (L, H, S): the action token a_t is the step's last query
    taken = traj.actions[0].tolist()
    meanings = model.action_meanings()
    return AttentionResult(
        run_id=model.run_id, checkpoint_step=model.step, seed=seed, query_step=query_step, num_layers=num_layers,
        num_heads=num_heads, tokens_per_step=m, labels=labels, weights=rows.tolist(),
        head_mean=rows.mean(dim=1).tolist(), actions=taken, action_names=[meanings[a] for a in taken],
        frame=png_base64(frame), reward=float(traj.rewards[0, query_step]),
        discount=float(traj.discounts[0, query_step]), layer=layer,
        layer_matrix=None if layer is None else attention[layer].tolist(),
        query_labels=None if layer is None else labels[-num_queries:])
