"""Attention of the dynamics model inside a dream: any query token (z, a or r) at any step, per layer and head.

Calls: the session feeds the transformer once per step. Call −1 feeds the real context (z_{-1}, a_{-1}); call t ≥ 0
feeds (r_{t-1}, z_t, a_t) (without reward input: z_t, a_t), so after call c the sequence holds 2 + M·(c + 1)
tokens (M tokens per step). The query z_s or a_s is fed by call s, r_s by call s + 1. A call's maps are computed
again from the point's stored memory (a private copy, the same function as the step: `step(return_attention=True)`)
and cached.

The labels (modality, relative step) come from the dynamics model's own layout (`token_labels`). Attention rollout
(Abnar & Zuidema 2020, cited by the paper for its attention figures) multiplies the head-averaged maps of the
layers with the residual connection added, Ã_l = ½·A_l + ½·I (rows renormalised), over every token fed so far:
layer l's row of the query says how much of its representation flows from each earlier token, including tokens
that already left the memory window (Transformer-XL's recurrence reaches L windows back).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twm_core.dream.session import DreamSession
from twm_core.dream.start import DreamError
from twm_core.models.dynamics import MODALITIES, TokenLabel, token_labels


@dataclass
class QueryAttention:
    """Attention of one query token. Shapes: weights (L, H, S) over the call's keys (labels S);
    rollout (L, N) over all N tokens fed so far (rollout_labels N), or None"""

    step: int
    modality: str
    weights: torch.Tensor
    labels: list[TokenLabel]
    rollout: torch.Tensor | None = None
    rollout_labels: list[TokenLabel] | None = None


@dataclass
class AttentionOverview:
    """One layer over a whole dream: row i is the query (steps[i], modality)'s attention over all N tokens.

    Shapes: matrix (R, N), head-averaged or one head's; labels N
    """

    layer: int
    head: int | None
    modality: str
    steps: list[int]
    matrix: torch.Tensor
    labels: list[TokenLabel]


def _tokens_after(call: int, m: int) -> int:
    return 2 + m * (call + 1)


def _call_and_position(session: DreamSession, step: int, modality: str) -> tuple[int, int]:
    """(call, query position among the call's new tokens) of the token (step, modality)."""
    m = session.agent.world_model.dyn_model.tokens_per_step
    if modality not in MODALITIES[:m]:
        raise DreamError(f"query modality must be one of {list(MODALITIES[:m])}, got {modality!r}")
    call = step + 1 if modality == "r" else step
    if not -1 <= call < session.num_steps:
        last = session.num_steps - (2 if modality == "r" else 1)
        raise DreamError(f"the token {modality}_{step} has not been fed yet: {modality} queries need "
                         f"-1 <= step <= {last} (a step feeds its z and a once its action is taken)")
    num_new = 2 if call == -1 else m
    position = {"r": 0, "z": num_new - 2, "a": num_new - 1}[modality]
    return call, position


@torch.inference_mode()
def call_attention(session: DreamSession, call: int) -> torch.Tensor:
    """The maps of call `call`, cached on the session. Shapes: -> (L, H, Tq, S) fp32 on the CPU"""
    cached = session._attention.get(call)
    if cached is not None:
        return cached
    agent = session.agent
    dyn = agent.world_model.dyn_model
    if call == -1:
        out, _ = dyn.step(None, session.context.z, session.context.action, return_attention=True, heads=False)
    else:
        p, nxt = session.points[call], session.points[call + 1]
        rows = torch.arange(1, device=agent.device)
        action = torch.tensor([[nxt.action]], device=agent.device)
        out, _ = dyn.step(p.memory.index(rows), p.z, action, p.prev_reward, p.prev_done, return_attention=True,
                          heads=False)
    assert out.attention is not None  # return_attention=True
    maps = out.attention[0].float().cpu()  # (L, H, Tq, S)
    session._attention[call] = maps
    return maps


def query_attention(session: DreamSession, step: int, modality: str = "a", rollout: bool = False) -> QueryAttention:
    """Weights per layer and head of the query (step, modality) over its keys; with `rollout`, also the attention
    rollout of every layer over all tokens fed so far."""
    m = session.agent.world_model.dyn_model.tokens_per_step
    call, position = _call_and_position(session, step, modality)
    maps = call_attention(session, call)  # (L, H, Tq, S)
    num_keys = maps.shape[-1]
    total = _tokens_after(call, m)
    labels = token_labels(num_keys, m, last_step=call, first_index=total - num_keys, query_step=step)
    result = QueryAttention(step, modality, maps[:, :, position], labels)
    if rollout:
        result.rollout = _rollout(session, call)[:, total - maps.shape[2] + position]  # (L, N)
        result.rollout_labels = token_labels(total, m, last_step=call, query_step=step)
    return result


def _full_maps(session: DreamSession, last_call: int) -> torch.Tensor:
    """Head-averaged maps of calls −1..last_call as token × token matrices. Shapes: -> (L, N, N)"""
    m = session.agent.world_model.dyn_model.tokens_per_step
    n = _tokens_after(last_call, m)
    full = None
    for call in range(-1, last_call + 1):
        maps = call_attention(session, call).mean(1)  # (L, Tq, S)
        if full is None:
            full = maps.new_zeros(maps.shape[0], n, n)
        end = _tokens_after(call, m)
        full[:, end - maps.shape[1]:end, end - maps.shape[2]:end] = maps
    assert full is not None
    return full


def _rollout(session: DreamSession, last_call: int) -> torch.Tensor:
    """Attention rollout after each layer. Shapes: -> (L, N, N), row i = token i's flow over all tokens"""
    full = _full_maps(session, last_call)  # (L, N, N)
    eye = torch.eye(full.shape[-1])
    out, flow = [], eye
    for a in full:
        mixed = 0.5 * a + 0.5 * eye
        mixed = mixed / mixed.sum(-1, keepdim=True)
        flow = mixed @ flow
        out.append(flow)
    return torch.stack(out)


def attention_overview(session: DreamSession, layer: int, modality: str = "a",
                       head: int | None = None) -> AttentionOverview:
    """Layer `layer`'s attention of the query (s, modality) for every step s of the dream, over all tokens."""
    dyn = session.agent.world_model.dyn_model
    m, num_layers, num_heads = dyn.tokens_per_step, dyn.cfg.num_layers, dyn.cfg.num_heads
    if not 0 <= layer < num_layers or (head is not None and not 0 <= head < num_heads):
        raise DreamError(f"layer must lie in [0, {num_layers}) and head in [0, {num_heads}), got {layer}, {head}")
    if session.num_steps < 1:
        raise DreamError("the dream has no steps yet: take a step first")
    steps = list(range(-1, session.num_steps - (1 if modality == "r" else 0)))  # every query fed so far
    last_call = session.num_steps - 1
    n = _tokens_after(last_call, m)
    matrix = torch.zeros(len(steps), n)
    for i, s in enumerate(steps):
        call, position = _call_and_position(session, s, modality)
        maps = call_attention(session, call)[layer]  # (H, Tq, S)
        row = maps[:, position].mean(0) if head is None else maps[head, position]  # (S,)
        end = _tokens_after(call, m)
        matrix[i, end - row.shape[0]:end] = row
    return AttentionOverview(layer, head, modality, steps, matrix, token_labels(n, m, last_step=last_call))
