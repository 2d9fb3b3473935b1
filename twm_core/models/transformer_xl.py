"""Transformer-XL with relative sinusoidal positions, shared u/v biases, post-LN layers and memory.

As the reference (`jrobine/twm` nets.py:322-504, method.md §4.3):
- one sinusoidal table indexed by the relative distance between query and key, dropout on it, projected per layer;
- score = (q + u)·k + (q + v)·R_{i-j}, scaled by 1/sqrt(embed_dim) by default (quirk: not 1/sqrt(head_dim));
- post-LN layers: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(W2 Drop(SiLU(W1 x))));
- memory holds each layer's *inputs* for the last tokens; keys and values of the memory are recomputed from them.

The relative term is computed directly for every (query, key) pair from the distance table, instead of the
reference's `_rel_shift` trick: both give R_{i-j} for every unmasked pair, and masked pairs are -inf either way.

Fast paths (all compute the same function as the plain path, up to float rounding; tests/core/test_fastpaths.py):
- `KVCache`: the incremental path keeps each layer's keys and values, in preallocated (B, H, capacity, E) buffers
  that new tokens are written into, instead of re-projecting the remembered layer inputs (a key or value depends only
  on its token's input, the relative term only on the query and the distance);
- `query_last`: only the last token's output is wanted (the dynamics model's h at a_t), so the last layer computes
  queries, attention and feed-forward for that token alone (keys and values still cover every token);
- `fused_attention` (module flag, off by default: slower on CPU, see README "Performance"): the softmax and the
  value product run in `F.scaled_dot_product_attention`, with the position term and the mask passed as an additive
  float `attn_mask` and `scale=` given explicitly (the model-dim scale quirk).

Dimension letters: B batch, T query tokens, S key tokens (memory + T), D model dim, H heads, E head dim, L layers,
C cache capacity (tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KeyValue = tuple[torch.Tensor, torch.Tensor]


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


class _KVStorage:
    """Preallocated keys and values of every layer; `end` is where the newest `KVCache` on it stops."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, end: int) -> None:
        self.keys, self.values, self.end = keys, values, end  # (L, B, H, C, E) each

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]


class KVCache:
    """The memory of the fast incremental path: keys and values of tokens [start, end) of every layer.

    The buffers are shared along a chain of steps: a step writes its new tokens after `end` in place, so feeding
    the memory returned by the previous step costs no copy. Feeding an older memory again (a branch) or running
    out of capacity moves the kept tokens to a new buffer first, so every `KVCache` stays valid.
    Values stored are detached (the memory never carries gradients, as the plain path's).
    Shapes: buffers (L, B, H, C, E)
    """

    def __init__(self, storage: _KVStorage, start: int, end: int) -> None:
        self.storage, self.start, self.end = storage, start, end

    @classmethod
    def empty(cls, num_layers: int, batch: int, num_heads: int, head_dim: int, capacity: int,
              like: torch.Tensor) -> KVCache:
        shape = (num_layers, batch, num_heads, capacity, head_dim)
        storage = _KVStorage(like.new_empty(shape), like.new_empty(shape), 0)
        return cls(storage, 0, 0)

    @property
    def num_tokens(self) -> int:
        return self.end - self.start

    @property
    def batch_size(self) -> int:
        return self.storage.keys.shape[1]

    def layer(self, i: int) -> KeyValue:
        """Keys and values of layer i in the plain path's layout (views). Shapes: ((B, N, H, E), (B, N, H, E))"""
        s = self.storage
        return (s.keys[i, :, :, self.start:self.end].transpose(1, 2),
                s.values[i, :, :, self.start:self.end].transpose(1, 2))

    def index(self, rows: torch.Tensor) -> KVCache:
        """The memory of a subset of rows (a copy)."""
        s = self.storage
        keys = s.keys[:, rows, :, self.start:self.end].clone()
        values = s.values[:, rows, :, self.start:self.end].clone()
        return KVCache(_KVStorage(keys, values, self.num_tokens), 0, self.num_tokens)

    def _writable(self, num_new: int, capacity: int) -> KVCache:
        """This memory, or a copy of it on a fresh buffer when writing `num_new` tokens after `end` would
        overwrite a newer memory's tokens or overflow the buffer."""
        s = self.storage
        if s.end == self.end and self.end + num_new <= s.capacity:
            return self
        n = self.num_tokens
        capacity = max(capacity, n + num_new)
        keys = s.keys.new_empty((*s.keys.shape[:3], capacity, s.keys.shape[4]))
        values = torch.empty_like(keys)
        keys[:, :, :, :n] = s.keys[:, :, :, self.start:self.end]
        values[:, :, :, :n] = s.values[:, :, :, self.start:self.end]
        return KVCache(_KVStorage(keys, values, n), 0, n)


class RelativeMultiheadSelfAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, dropout: float, scale: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.scale = num_heads, head_dim, scale
        self.qkv_proj = nn.Linear(dim, 3 * num_heads * head_dim, bias=False)
        self.pos_proj = nn.Linear(dim, num_heads * head_dim, bias=False)
        self.out_proj = nn.Linear(num_heads * head_dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fused_attention = False
        """Use F.scaled_dot_product_attention when the attention weights are not requested (module flag)."""

    def _project(self, x: torch.Tensor, memory: torch.Tensor | None, cache: tuple[KVCache, int] | None,
                 num_queries: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries of the last `num_queries` tokens, keys and values of the memory + all tokens, heads first.

        Shapes: x (B, T, D) -> q (B, H, Tq, E), k, v (B, H, S, E)
        """
        batch, num_new, _ = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        inner = heads * head_dim
        weight = self.qkv_proj.weight  # one fused projection, as the reference; q only for the queries
        if memory is None:
            # the new tokens' keys and values: one matmul for q, k, v when every new token is a query
            if num_queries == num_new:
                q, k_new, v_new = F.linear(x, weight).view(batch, num_new, 3, heads, head_dim).unbind(2)
            else:
                q = F.linear(x[:, -num_queries:], weight[:inner]).view(batch, num_queries, heads, head_dim)
                k_new, v_new = F.linear(x, weight[inner:]).view(batch, num_new, 2, heads, head_dim).unbind(2)
            q, k_new, v_new = q.transpose(1, 2), k_new.transpose(1, 2), v_new.transpose(1, 2)  # (B, H, ·, E)
            if cache is not None:
                kv_cache, layer = cache
                s, end = kv_cache.storage, kv_cache.end
                s.keys[layer, :, :, end:end + num_new] = k_new.detach()  # in place: the next steps read them
                s.values[layer, :, :, end:end + num_new] = v_new.detach()
                k = s.keys[layer, :, :, kv_cache.start:end + num_new]  # (B, H, S, E) views, no copy
                v = s.values[layer, :, :, kv_cache.start:end + num_new]
                if torch.is_grad_enabled() and (k_new.requires_grad or v_new.requires_grad):
                    # gradients reach the new tokens (as the plain path); the memory part is detached
                    k = torch.cat([k[:, :, :-num_new], k_new], dim=2)
                    v = torch.cat([v[:, :, :-num_new], v_new], dim=2)
            else:
                k, v = k_new, v_new
            return q, k, v
        # the reference: memory holds layer inputs, keys and values are projected again
        source = x if memory.shape[1] == 0 else torch.cat([memory, x], dim=1)  # (B, S, D)
        q = F.linear(x[:, -num_queries:], weight[:inner]).view(batch, num_queries, heads, head_dim)
        kv = F.linear(source, weight[inner:]).view(batch, source.shape[1], 2, heads, head_dim)
        k, v = kv.unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, pos: torch.Tensor, u_bias: torch.Tensor,
                v_bias: torch.Tensor, mask: torch.Tensor, cache: tuple[KVCache, int] | None = None,
                num_queries: int | None = None, need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from the last `num_queries` (default all) of the tokens `x` to the memory + `x`.

        The memory is either the layer's earlier inputs (the reference: their keys and values are projected
        again) or, on the fast path, `cache` = (KVCache, layer index): the new keys and values are written into its
        buffers and the attention reads them from there.
        Shapes: x (B, T, D), memory (B, S-T, D) or None, pos (S, D) encodings of distances 0..S-1, u_bias/v_bias
        (H, E), mask (B, Tq, S) bool, True = blocked -> out (B, Tq, D), attention (B, H, Tq, S) or None
        """
        batch = x.shape[0]
        num_queries = num_queries or x.shape[1]
        heads, head_dim = self.num_heads, self.head_dim
        q, k, v = self._project(x, memory, cache, num_queries)  # (B, H, Tq, E), (B, H, S, E)
        num_keys = k.shape[2]
        r = self.pos_proj(pos).view(num_keys, heads, head_dim)  # (S, H, E), row p = distance p

        # position term (q + v)·R over all distances, then each pair picks its distance i - j
        by_distance = torch.einsum("bhte,phe->bhtp", q + v_bias[:, None], r)  # (B, H, Tq, S) by distance
        dist = relative_distances(num_queries, num_keys, x.device)  # (Tq, S)
        position = by_distance.gather(-1, dist.expand(batch, heads, -1, -1))  # (B, H, Tq, S)
        blocked = mask[:, None]  # (B, 1, Tq, S)

        if self.fused_attention and not need_weights:
            # Fused: softmax(((q+u)·k + position)·scale + mask)·v with the position term folded into an additive
            # float mask. Same function as below up to rounding ((a + b)·s vs a·s + b·s). In training with
            # dropout, SDPA draws its own dropout mask: same distribution, not the same random stream as
            # nn.Dropout on the attention weights.
            bias = (position * self.scale).masked_fill(blocked, float("-inf"))
            p = self.dropout.p if self.training and isinstance(self.dropout, nn.Dropout) else 0.0
            context = F.scaled_dot_product_attention(q + u_bias[:, None], k, v, attn_mask=bias, dropout_p=p,
                                                     scale=self.scale)  # (B, H, Tq, E)
            attention = None
        else:
            content = (q + u_bias[:, None]) @ k.transpose(-1, -2)  # (B, H, Tq, S)
            scores = (content + position) * self.scale
            scores = scores.masked_fill(blocked, float("-inf"))
            attention = scores.softmax(dim=-1)  # (B, H, Tq, S)
            context = self.dropout(attention) @ v  # (B, H, Tq, E)
        out = self.out_proj(context.transpose(1, 2).reshape(batch, num_queries, heads * head_dim))  # (B, Tq, D)
        return out, attention if need_weights else None


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

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, pos: torch.Tensor, u_bias: torch.Tensor,
                v_bias: torch.Tensor, mask: torch.Tensor, cache: tuple[KVCache, int] | None = None,
                num_queries: int | None = None, need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Shapes: x (B, T, D) -> (B, Tq, D) for the last Tq = `num_queries` (default T) tokens."""
        num_queries = num_queries or x.shape[1]
        attn_out, attention = self.self_attn(x, memory, pos, u_bias, v_bias, mask, cache, num_queries,
                                                 need_weights)
        x = self.norm1(x[:, -num_queries:] + self.dropout(attn_out))
        ff = self.dropout(self.linear2(self.dropout(F.silu(self.linear1(x)))))
        return self.norm2(x + ff), attention


class TransformerXL(nn.Module):
    """A stack of Transformer-XL layers sharing one positional table and one pair of u/v biases."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, head_dim: int, feedforward_dim: int,
                 dropout: float, scale: float) -> None:
        super().__init__()
        self.dim, self.num_heads, self.head_dim = dim, num_heads, head_dim
        self.layers = nn.ModuleList(
            TransformerXLLayer(dim, num_heads, head_dim, feedforward_dim, dropout, scale) for _ in range(num_layers))
        self.pos_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.u_bias = nn.Parameter(torch.empty(num_heads, head_dim))
        self.v_bias = nn.Parameter(torch.empty(num_heads, head_dim))
        nn.init.xavier_uniform_(self.u_bias)
        nn.init.xavier_uniform_(self.v_bias)
        self.pos_table: torch.Tensor
        self.register_buffer("pos_table", sinusoidal_table(64, dim), persistent=False)

    def _positions(self, length: int) -> torch.Tensor:
        if self.pos_table.shape[0] < length:  # grow the deterministic table on demand (no parameters)
            self.pos_table = sinusoidal_table(2 * length, self.dim, self.pos_table.device)
        return self.pos_table[:length]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, memory: list[torch.Tensor] | KVCache | None = None,
                memory_tokens: int = 0, kv_cache: bool = True, need_weights: bool = True,
                query_last: bool = False, cache_capacity: int | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor] | KVCache, torch.Tensor | None]:
        """Run all layers over the new tokens `x`, attending to `memory` as well.

        Returns the outputs, the new memory over the last `memory_tokens` tokens (detached; a `KVCache` of keys and
        values with `kv_cache`, else per layer its inputs as the reference keeps them) and, with `need_weights`,
        the attention weights of every layer (softmax before dropout). `query_last` returns only the last token's
        output: the last layer attends from that token alone (with `need_weights` it runs once more for the maps of
        every query, so the output is bitwise the same with or without maps; in training mode that extra run draws
        its own dropout masks). `cache_capacity` sizes a new KV cache's buffers
        (default: `memory_tokens` + T).
        Shapes: x (B, T, D), mask (B, T, S), memory L × (B, S-T, D) layer inputs, or a KVCache of S-T tokens
        -> (B, T, D) (or (B, 1, D) with `query_last`), memory of ≤ memory_tokens tokens, (B, L, H, T, S) or None
        """
        batch, num_new, _ = x.shape
        num_keys = mask.shape[-1]
        pos = self.pos_dropout(self._positions(num_keys))  # (S, D)
        cache: KVCache | None = None
        if kv_cache and memory_tokens > 0:
            if memory is None or isinstance(memory, list) and memory[0].shape[1] == 0:
                cache = KVCache.empty(len(self.layers), batch, self.num_heads, self.head_dim,
                                      cache_capacity or memory_tokens + num_new, x)
            elif isinstance(memory, KVCache):
                cache = memory._writable(num_new, cache_capacity or memory_tokens + num_new)
            else:
                raise ValueError("kv_cache=True continues a KVCache memory, not the plain path's layer inputs")
            if cache is not None and num_keys != cache.num_tokens + num_new:
                raise ValueError(f"mask has {num_keys} keys, memory {cache.num_tokens} + {num_new} new tokens")
        if isinstance(memory, KVCache) and cache is None:
            raise ValueError("a KVCache memory needs kv_cache=True and memory_tokens > 0")
        new_memory: list[torch.Tensor] = []
        attentions = []
        out = x
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            layer_memory = memory[i] if isinstance(memory, list) and cache is None else None
            if memory_tokens > 0 and not kv_cache:
                full = out if layer_memory is None else torch.cat([layer_memory, out], dim=1)
                new_memory.append(full[:, -memory_tokens:].detach())
            layer_cache = None if cache is None else (cache, i)
            if last and query_last:
                if need_weights:  # the maps of every query, then the output exactly as without maps
                    _, attention = layer(out, layer_memory, pos, self.u_bias, self.v_bias, mask, layer_cache)
                out, _ = layer(out, layer_memory, pos, self.u_bias, self.v_bias, mask[:, -1:], layer_cache, 1,
                               need_weights=False)
            else:
                out, attention = layer(out, layer_memory, pos, self.u_bias, self.v_bias, mask, layer_cache,
                                       need_weights=need_weights)
            if need_weights:
                attentions.append(attention)
        stacked = torch.stack(attentions, dim=1) if need_weights else None  # (B, L, H, T, S)
        if cache is not None:
            end = cache.end + num_new
            cache.storage.end = end
            return out, KVCache(cache.storage, max(cache.start, end - memory_tokens), end), stacked
        return out, new_memory, stacked
