"""Dynamics model ψ: Transformer-XL over interleaved z, a, r tokens, with heads for ẑ_{t+1}, r̂_t and γ̂_t.

Tokens per step are z_t, a_t, r_t (method.md §4.2; z, a without reward input), so ℓ steps give 3ℓ − 1 tokens: the
last step has no reward yet. h_t is the transformer output at the action token a_t. No modality or absolute position
embeddings: z is Linear(C·K→D)+SiLU, a an embedding table, r Linear(1→D)+SiLU.

Two paths compute the same function:
- `forward`: a whole window in parallel (world-model training), causal and episode-boundary masks;
- `step`: one step at a time with memory (imagination), feeding (r_{t-1}, z_t, a_t) after an initial (z, a).

Masks (reference nets.py:537-586): a token never sees later tokens; z and a tokens see (memory_length + 1) steps
of tokens back, r tokens memory_length steps back from their step's z; and no token sees the tokens of a step k
when a done happened at any step in [k, its own step − 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from twm_core.config import DynamicsConfig
from twm_core.models.layers import MLP, RELU_GAIN, init_layer_
from twm_core.models.transformer_xl import KeyValue, KVCache, TransformerXL


@dataclass
class DynamicsOutput:
    """Predictions at the action tokens.

    Shapes: hidden (B, T, D); z_logits (B, T, C, K) raw head outputs; reward (B, T) mean of N(·, 1) over tanh
    rewards; discount_logit (B, T) Bernoulli logit; attention (B, L, H, Tq, S) over all query tokens of the call,
    or None. `step(heads=False)` leaves the three predictions None (only h is wanted).
    """

    hidden: torch.Tensor
    z_logits: torch.Tensor | None
    reward: torch.Tensor | None
    discount_logit: torch.Tensor | None
    attention: torch.Tensor | None = None

    def float(self) -> DynamicsOutput:
        """The predictions in fp32 (after an autocast forward); a no-op for fp32 outputs."""
        def f(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.float()

        return DynamicsOutput(self.hidden.float(), f(self.z_logits), f(self.reward), f(self.discount_logit),
                              f(self.attention))

    @property
    def discount(self) -> torch.Tensor:
        """Predicted discount γ̂ = sigmoid(logit), clipped to [0, 1] as the reference."""
        if self.discount_logit is None:
            raise ValueError("no predictions: the step ran with heads=False")
        return torch.sigmoid(self.discount_logit).clamp(0.0, 1.0)


@dataclass
class DynamicsMemory:
    """State of the incremental path: the cached keys and values of the last tokens of every layer (a `KVCache`;
    or, on the plain path, per layer its inputs as the reference keeps them), and the done flags of the steps whose
    reward token is in the window.

    Shapes: cache KVCache of N_mem tokens or L × (B, N_mem, D); dones (B, n) bool
    """

    cache: KVCache | list[torch.Tensor]
    dones: torch.Tensor

    @property
    def layers(self) -> list[KeyValue] | list[torch.Tensor]:
        """Per layer: its keys and values ((B, N_mem, H, E) each, views) or its remembered inputs (B, N_mem, D)."""
        if isinstance(self.cache, KVCache):
            return [self.cache.layer(i) for i in range(self.cache.storage.keys.shape[0])]
        return self.cache

    @property
    def num_tokens(self) -> int:
        return self.cache.num_tokens if isinstance(self.cache, KVCache) else self.cache[0].shape[1]

    def index(self, rows: torch.Tensor) -> DynamicsMemory:
        cache = self.cache.index(rows) if isinstance(self.cache, KVCache) else [m[rows] for m in self.cache]
        return DynamicsMemory(cache, self.dones[rows])


MODALITIES = ("z", "a", "r")


@dataclass(frozen=True)
class TokenLabel:
    """A token of the interleaved sequence: its modality, its step relative to a query's step (0 = the query's step,
    −1 the one before), its absolute step (−1 = the real context step of an imagination) and absolute index."""

    modality: str
    relative_step: int
    step: int
    index: int


def token_labels(num_tokens: int, tokens_per_step: int, last_step: int = 0, first_index: int = 0,
                 query_step: int | None = None) -> list[TokenLabel]:
    """Labels of `num_tokens` consecutive tokens laid out z, a, (r) per step and ending with step `last_step`'s
    z, a (the layout of every key sequence of `step` and `forward`: the last step has no reward token yet).

    `first_index` is the absolute index of the first token (tokens that left the memory come before it); relative
    steps count from `query_step` (default `last_step`).
    """
    m = tokens_per_step
    if m not in (2, 3):
        raise ValueError(f"tokens_per_step must be 2 (z, a) or 3 (z, a, r), got {m}")
    if num_tokens < 2 or (num_tokens - 2) % m != 0:
        raise ValueError(f"{num_tokens} tokens are not whole steps of {m} tokens plus the last z, a")
    query_step = last_step if query_step is None else query_step
    labels = []
    for j in range(num_tokens):
        p = j - (num_tokens - 2)  # position relative to the last step's z token
        step = last_step + p // m  # floor: the r token just before z_t belongs to step t-1
        labels.append(TokenLabel(MODALITIES[p % m], step - query_step, step, first_index + j))
    return labels


def attention_mask(num_queries: int, num_keys: int, tokens_per_step: int, memory_length: int,
                   dones: torch.Tensor) -> torch.Tensor:
    """Blocked (True) query/key pairs for the last `num_queries` of `num_keys` tokens laid out z, a, (r) per step,
    ending with the current step's z, a.

    Shapes: dones (B, n) with n = (S - 2) / M history steps -> (B, T, S) bool
    """
    m = tokens_per_step
    if (num_keys - 2) % m != 0 or dones.shape[1] != (num_keys - 2) // m:
        raise ValueError(f"{num_keys} tokens do not match {dones.shape[1]} history steps of {m} tokens + 2")
    device = dones.device
    key_pos = torch.arange(num_keys, device=device)
    query_pos = key_pos[num_keys - num_queries:]
    query_modality = query_pos % m
    lower = torch.where(query_modality < 2,  # z and a are the 'current' modalities
                        query_pos - (memory_length + 1) * m,
                        query_pos - query_modality - memory_length * m)
    blocked = (key_pos[None, :] > query_pos[:, None]) | (key_pos[None, :] < lower[:, None])  # (T, S)
    counts = torch.cat([dones.new_zeros(dones.shape[0], 1, dtype=torch.long), dones.long().cumsum(1)], dim=1)
    query_done = counts[:, query_pos // m]  # (B, T): dones before the query's step
    key_done = counts[:, key_pos // m]  # (B, S): dones before the key's step
    crosses_episode = query_done[:, :, None] > key_done[:, None, :]  # a done in [key step, query step - 1]
    return blocked[None] | crosses_episode  # (B, T, S)


class DynamicsModel(nn.Module):
    """Aggregation model f_ψ (Transformer-XL) and the latent, reward and discount predictors."""

    def __init__(self, cfg: DynamicsConfig, num_actions: int, z_categoricals: int, z_categories: int,
                 discount_factor: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_actions = num_actions
        self.z_shape = (z_categoricals, z_categories)
        z_dim = z_categoricals * z_categories
        dim = cfg.embed_dim
        self.tokens_per_step = cfg.tokens_per_step
        self.memory_tokens = cfg.memory_length * self.tokens_per_step + 2

        self.z_embed = nn.Sequential(nn.Linear(z_dim, dim), nn.SiLU())
        self.a_embed = nn.Embedding(num_actions, dim)  # PyTorch default N(0, 1), as the reference
        self.r_embed = nn.Sequential(nn.Linear(1, dim), nn.SiLU()) if cfg.input_rewards else None
        for embed in (self.z_embed, self.r_embed):
            if embed is not None:
                init_layer_(cast(nn.Linear, embed[0]), RELU_GAIN)  # an MLP with post-activation keeps the ReLU gain

        scale_dim = dim if cfg.attention_scale == "model_dim" else cfg.head_dim
        self.transformer = TransformerXL(dim, cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.feedforward_dim,
                                         cfg.dropout, scale=1.0 / math.sqrt(scale_dim))
        self.z_head = MLP(dim, cfg.z_dims, z_dim, dropout=cfg.dropout, pre_activation=True)
        self.reward_head = MLP(dim, cfg.reward_dims, 1, dropout=cfg.dropout, pre_activation=True, final_bias=0.0)
        # The discount head's final bias is γ = 0.99, used as a logit (reference world_model.py:311-313).
        self.discount_head = MLP(dim, cfg.discount_dims, 1, dropout=cfg.dropout, pre_activation=True,
                                 final_bias=discount_factor)

    def _heads(self, hidden: torch.Tensor, attention: torch.Tensor | None, heads: bool = True) -> DynamicsOutput:
        if not heads:
            return DynamicsOutput(hidden, None, None, None, attention)
        z_logits = self.z_head(hidden).unflatten(-1, self.z_shape)  # (B, T, C, K)
        return DynamicsOutput(hidden, z_logits, self.reward_head(hidden).squeeze(-1),
                              self.discount_head(hidden).squeeze(-1), attention)

    def _check(self, z: torch.Tensor, actions: torch.Tensor) -> None:
        z_dim = self.z_shape[0] * self.z_shape[1]
        if z.dim() != 3 or z.shape[-1] != z_dim or actions.shape != z.shape[:2]:
            raise ValueError(f"expected z (B, T, {z_dim}) and actions (B, T), got {tuple(z.shape)} and "
                             f"{tuple(actions.shape)}")

    def forward(self, z: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
                return_attention: bool = False) -> DynamicsOutput:
        """Training path: T steps in parallel; the rewards and dones of the last step are not inputs.

        Shapes: z (B, T, C·K), actions (B, T) int64, rewards (B, T-1), dones (B, T-1) bool -> DynamicsOutput (T)
        """
        self._check(z, actions)
        batch, time = actions.shape
        if rewards.shape != (batch, time - 1) or dones.shape != (batch, time - 1):
            raise ValueError(f"rewards and dones must be (B, T-1) = ({batch}, {time - 1}), got "
                             f"{tuple(rewards.shape)} and {tuple(dones.shape)}")
        ez, ea = self.z_embed(z), self.a_embed(actions)  # (B, T, D)
        history = [ez[:, :-1], ea[:, :-1]]
        if self.r_embed is not None:
            history.append(self.r_embed(rewards[..., None]))  # (B, T-1, D)
        tokens = torch.stack(history, dim=2).flatten(1, 2)  # (B, (T-1)·M, D)
        tokens = torch.cat([tokens, ez[:, -1:], ea[:, -1:]], dim=1)  # (B, (T-1)·M + 2, D)
        num_tokens = tokens.shape[1]
        mask = attention_mask(num_tokens, num_tokens, self.tokens_per_step, self.cfg.memory_length, dones)
        out, _, attention = self.transformer(tokens, mask, need_weights=return_attention)
        hidden = out[:, 1::self.tokens_per_step]  # (B, T, D) at the action tokens
        return self._heads(hidden, attention if return_attention else None)

    def step(self, memory: DynamicsMemory | None, z: torch.Tensor, actions: torch.Tensor,
             prev_rewards: torch.Tensor | None = None, prev_dones: torch.Tensor | None = None,
             return_attention: bool = False, kv_cache: bool = True, heads: bool = True,
             cache_capacity: int | None = None) -> tuple[DynamicsOutput, DynamicsMemory]:
        """Incremental path: one new step. The first call (memory None) feeds (z, a); later calls feed the previous
        step's reward and done with the new (z, a), i.e. tokens (r_{t-1}, z_t, a_t). `kv_cache` keeps keys and
        values (`KVCache`) instead of re-projecting the remembered layer inputs (the reference); both compute the
        same function. The last layer computes the output of the a_t token alone (the only one used; exact).
        `heads=False` skips the three prediction heads (only h is returned). `cache_capacity` sizes a new key/value
        buffer (default: the memory plus one step); a long chain of steps whose memories are all kept (a dream
        session) asks for more, so that one buffer serves many steps (the values are the same either way).

        Shapes: z (B, 1, C·K), actions (B, 1), prev_rewards (B, 1), prev_dones (B, 1) bool
        -> DynamicsOutput (T = 1), DynamicsMemory
        """
        self._check(z, actions)
        if z.shape[1] != 1:
            raise ValueError(f"step takes one time step, got {z.shape[1]}")
        ez, ea = self.z_embed(z), self.a_embed(actions)  # (B, 1, D)
        if memory is None:
            tokens = torch.cat([ez, ea], dim=1)  # (B, 2, D)
            dones = torch.zeros(z.shape[0], 0, dtype=torch.bool, device=z.device)
        else:
            if prev_rewards is None or prev_dones is None:
                raise ValueError("prev_rewards and prev_dones are required after the first step")
            parts = [ez, ea]
            if self.r_embed is not None:
                parts.insert(0, self.r_embed(prev_rewards[..., None]))  # (B, 1, D)
            tokens = torch.cat(parts, dim=1)  # (B, M, D)
            dones = torch.cat([memory.dones, prev_dones.bool()], dim=1)[:, -(self.cfg.memory_length + 1):]
        num_keys = tokens.shape[1] + (0 if memory is None else memory.num_tokens)
        mask = attention_mask(tokens.shape[1], num_keys, self.tokens_per_step, self.cfg.memory_length, dones)
        out, layer_memory, attention = self.transformer(
            tokens, mask, None if memory is None else memory.cache, self.memory_tokens, kv_cache=kv_cache,
            need_weights=return_attention, query_last=True,
            cache_capacity=cache_capacity or self.memory_tokens + self.tokens_per_step)
        output = self._heads(out[:, -1:], attention, heads)  # h at a_t
        return output, DynamicsMemory(layer_memory, dones)
