"""Transformer-XL with relative sinusoidal positions, shared u/v biases, post-LN layers and memory.

As the reference (`jrobine/twm` nets.py:322-504, method.md §4.3):
- one sinusoidal table indexed by the relative distance between query and key, dropout on it, projected per layer;
- score = (q + u)·k + (q + v)·R_{i-j}, scaled by 1/sqrt(embed_dim) by default (quirk: not 1/sqrt(head_dim));
- post-LN layers: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(W2 Drop(SiLU(W1 x))));
- memory holds each layer's *inputs* for the last tokens; keys and values of the memory are recomputed from them.

The relative term is computed directly for every (query, key) pair from the distance table, instead of the
reference's `_rel_shift` trick: both give R_{i-j} for every unmasked pair, and masked pairs are -inf either way.

Dimension letters: B batch, T query tokens, S key tokens (memory + T), D model dim, H heads, E head dim, L layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KeyValue = tuple[torch.Tensor, torch.Tensor]
Memory = torch.Tensor | KeyValue
"""One layer's memory: its earlier inputs (B, N, D), or their keys and values ((B, N, H, E), (B, N, H, E))."""


def sinusoidal_table(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Sinusoidal encodings of positions 0..length-1: sin on even, cos on odd channels.

    Shapes: -> (length, D)
    """
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table


def relative_distances(num_queries: int, num_keys: int, device: torch.device | None = None) -> torch.Tensor:
    """Distance i - j between the last `num_queries` tokens (queries) and all `num_keys` tokens (keys).

    Future keys (negative distances) are clamped to 0; the causal mask removes them.
    Shapes: -> (T, S) int64
    """
    query_pos = torch.arange(num_keys - num_queries, num_keys, device=device)[:, None]
    key_pos = torch.arange(num_keys, device=device)[None, :]
    return (query_pos - key_pos).clamp(min=0)


class RelativeMultiheadSelfAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, dropout: float, scale: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.scale = num_heads, head_dim, scale
        self.qkv_proj = nn.Linear(dim, 3 * num_heads * head_dim, bias=False)
        self.pos_proj = nn.Linear(dim, num_heads * head_dim, bias=False)
        self.out_proj = nn.Linear(num_heads * head_dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, memory: Memory | None, pos: torch.Tensor, u_bias: torch.Tensor,
                v_bias: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, KeyValue]:
        """Attend from the tokens `x` to the memory + `x`.

        The memory is either the layer's earlier inputs (the reference: their keys and values are projected
        again) or their cached keys and values (fast path: exact, since a key or value depends only on its
        token's input, and the relative-position term only on the query and the distance).
        Shapes: x (B, T, D), memory (B, S-T, D) or ((B, S-T, H, E), (B, S-T, H, E)) or None, pos (S, D) encodings
        of distances 0..S-1, u_bias/v_bias (H, E), mask (B, T, S) bool, True = blocked
        -> out (B, T, D), attention (B, H, T, S), keys and values of all S tokens ((B, S, H, E) each)
        """
        batch, num_queries, _ = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        inner = heads * head_dim
        weight = self.qkv_proj.weight  # one fused projection, as the reference; q only for the new tokens
        q = F.linear(x, weight[:inner]).view(batch, num_queries, heads, head_dim)  # (B, T, H, E)
        if isinstance(memory, tuple):  # cached keys and values: project the new tokens only
            k_new, v_new = F.linear(x, weight[inner:]).view(batch, num_queries, 2, heads, head_dim).unbind(2)
            k, v = torch.cat([memory[0], k_new], dim=1), torch.cat([memory[1], v_new], dim=1)  # (B, S, H, E)
        else:
            source = x if memory is None or memory.shape[1] == 0 else torch.cat([memory, x], dim=1)  # (B, S, D)
            kv = F.linear(source, weight[inner:])  # (B, S, 2·H·E)
            k, v = (t.view(batch, source.shape[1], heads, head_dim) for t in kv.chunk(2, dim=-1))  # (B, S, H, E)
        num_keys = k.shape[1]
        r = self.pos_proj(pos).view(num_keys, heads, head_dim)  # (S, H, E), row p = distance p

        content = torch.einsum("bthe,bshe->bhts", q + u_bias, k)  # (B, H, T, S)
        by_distance = torch.einsum("bthe,phe->bhtp", q + v_bias, r)  # (B, H, T, S) indexed by distance
        dist = relative_distances(num_queries, num_keys, x.device)  # (T, S)
        position = by_distance.gather(-1, dist.expand(batch, self.num_heads, -1, -1))  # (B, H, T, S)

        scores = (content + position) * self.scale
        scores = scores.masked_fill(mask[:, None], float("-inf"))
        attention = scores.softmax(dim=-1)  # (B, H, T, S)
        context = torch.einsum("bhts,bshe->bthe", self.dropout(attention), v)  # (B, T, H, E)
        out = self.out_proj(context.reshape(batch, num_queries, inner))  # (B, T, D)
        return out, attention, (k, v)


class TransformerXLLayer(nn.Module):
    """Post-LN decoder layer: relative self-attention then a SiLU feed-forward block."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, feedforward_dim: int, dropout: float,
                 scale: float) -> None:
        super().__init__()
        self.self_attn = RelativeMultiheadSelfAttention(dim, num_heads, head_dim, dropout, scale)
        self.linear1 = nn.Linear(dim, feedforward_dim)
        self.linear2 = nn.Linear(feedforward_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, memory: Memory | None, pos: torch.Tensor, u_bias: torch.Tensor,
                v_bias: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, KeyValue]:
        attn_out, attention, kv = self.self_attn(x, memory, pos, u_bias, v_bias, mask)
        x = self.norm1(x + self.dropout(attn_out))
        ff = self.dropout(self.linear2(self.dropout(F.silu(self.linear1(x)))))
        return self.norm2(x + ff), attention, kv


class TransformerXL(nn.Module):
    """A stack of Transformer-XL layers sharing one positional table and one pair of u/v biases."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, head_dim: int, feedforward_dim: int,
                 dropout: float, scale: float) -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(
            TransformerXLLayer(dim, num_heads, head_dim, feedforward_dim, dropout, scale) for _ in range(num_layers))
        self.pos_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.u_bias = nn.Parameter(torch.empty(num_heads, head_dim))
        self.v_bias = nn.Parameter(torch.empty(num_heads, head_dim))
        nn.init.xavier_uniform_(self.u_bias)
        nn.init.xavier_uniform_(self.v_bias)
        self.register_buffer("pos_table", sinusoidal_table(64, dim), persistent=False)

    def _positions(self, length: int) -> torch.Tensor:
        if self.pos_table.shape[0] < length:  # grow the deterministic table on demand (no parameters)
            self.pos_table = sinusoidal_table(2 * length, self.dim, self.pos_table.device)
        return self.pos_table[:length]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, memory: list[Memory] | None = None,
                memory_tokens: int = 0, kv_cache: bool = True
                ) -> tuple[torch.Tensor, list[Memory], torch.Tensor]:
        """Run all layers over the new tokens `x`, attending to `memory` as well.

        Returns the outputs, the new memory over the last `memory_tokens` tokens (detached; per layer its cached
        keys and values with `kv_cache`, else its inputs as the reference keeps them) and the attention weights of
        every layer (softmax before dropout).
        Shapes: x (B, T, D), mask (B, T, S), memory L × memory entries of S-T tokens -> (B, T, D),
        L × entries of ≤ memory_tokens tokens, (B, L, H, T, S)
        """
        num_keys = mask.shape[-1]
        pos = self.pos_dropout(self._positions(num_keys))  # (S, D)
        new_memory: list[Memory] = []
        attentions = []
        out = x
        for i, layer in enumerate(self.layers):
            layer_memory = memory[i] if memory is not None else None
            if memory_tokens > 0 and not kv_cache:
                full = out if layer_memory is None else torch.cat([layer_memory, out], dim=1)  # type: ignore[list-item]
                new_memory.append(full[:, -memory_tokens:].detach())
            out, attention, (k, v) = layer(out, layer_memory, pos, self.u_bias, self.v_bias, mask)
            if memory_tokens > 0 and kv_cache:
                new_memory.append((k[:, -memory_tokens:].detach(), v[:, -memory_tokens:].detach()))
            attentions.append(attention)
        return out, new_memory, torch.stack(attentions, dim=1)  # (B, L, H, T, S)
