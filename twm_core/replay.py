"""Replay buffer with balanced sampling (paper §2.3, Eq. 6; method.md §2.1 and §3 steps 1-2, 5.2.1-5.2.2).

Row i holds (o_i, a_i, r_i, terminated_i, truncated_i), where o_i is the observation *before* action a_i.
As in the reference (`jrobine/twm` `twm/replay_buffer.py` `step`), the true final observation of an episode is
discarded: after a done, row i+1's observation is the reset observation. Index `size` holds the newest
observation (no action yet).

Observations are stored as single frames with a per-step `stack_reset` flag (`twm_core.frame_stacks`): 4x less
memory than the reference's stored stacks.

Persistence (append-only chunk files) is `twm_core.replay_store`: the buffer hands out and takes back rows
(`export_rows`, `restore_rows`) and remembers which are on disk (`unsaved_from`). A checkpoint stores `state_dict()`
(size, visit counts); resuming is `replay_store.load(dir, capacity, upto=state["size"])`, then `load_state_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from twm_core.frame_stacks import FrameStacks


@dataclass
class ReplayBatch:
    """Sequences from the buffer, aligned as the reference's `get_data(idx, prefix, return_next_obs)`.

    Shapes (P = prefix context steps, T = sequence length, S = frame size):
        obs: (B, P+T+1, F, S, S) uint8 (the +1, the next observation, only with `return_next_obs`)
        actions: (B, P+T) int64 · rewards: (B, P+T) float32 · terminated, truncated: (B, P+T) bool
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor

    def to(self, device: torch.device | str) -> ReplayBatch:
        return ReplayBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class ReplayBuffer:
    """Preallocated single-frame storage, visit counts, and balanced sampling softmax(-visits/τ)."""

    def __init__(self, capacity: int, frame_stack: int = 4, frame_size: int = 64, temperature: float = 20.0,
                 device: torch.device | str = "cpu", check_stacks: bool = True) -> None:
        for name, value in (("capacity", capacity), ("frame_stack", frame_stack), ("frame_size", frame_size)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if not temperature > 0:  # also rejects NaN; math.inf means uniform sampling
            raise ValueError(f"temperature must be > 0 (math.inf for uniform), got {temperature!r}")
        self.capacity, self.frame_stack, self.frame_size = capacity, frame_stack, frame_size
        self.temperature = float(temperature)
        self.device = torch.device(device)
        self.check_stacks = check_stacks
        dev, n = self.device, capacity
        self._obs = FrameStacks(n + 1, frame_stack, frame_size, dev)  # observations 0..size
        self._actions = torch.zeros(n, dtype=torch.long, device=dev)
        self._rewards = torch.zeros(n, dtype=torch.float32, device=dev)
        self._terminated = torch.zeros(n, dtype=torch.bool, device=dev)
        self._truncated = torch.zeros(n, dtype=torch.bool, device=dev)
        self._visits = torch.zeros(n, dtype=torch.long)  # on CPU: sampling happens there, as in the reference
        self._size = 0
        self._has_obs = False
        self._flushed = 0  # rows [0, _flushed) are known to be in the chunk directory

    # ----------------------------------------------------------------------------------------------- filling
    @property
    def size(self) -> int:
        """Number of complete transitions (rows)."""
        return self._size

    def reset_obs(self, obs: np.ndarray | Tensor, stack_reset: bool = True) -> None:
        """Set (or replace) the current observation, e.g. at the start; the first needs `stack_reset=True`."""
        obs = self._obs.as_stack(obs)
        if not stack_reset and self._size == 0:
            raise ValueError("stack_reset must be True for the first observation (older frames are unknown)")
        self._obs.put(self._size, obs, stack_reset, check=self.check_stacks)
        self._has_obs = True

    def add(self, action: int, reward: float, terminated: bool, truncated: bool,
            next_obs: np.ndarray | Tensor, next_stack_reset: bool) -> None:
        """Append one transition; `next_obs` is the following observation (the reset obs after a done)."""
        if not self._has_obs:
            raise ValueError("call reset_obs(obs, stack_reset=True) before the first add()")
        i = self._size
        if i >= self.capacity:
            raise ValueError(f"buffer is full: capacity={self.capacity}")
        next_obs = self._obs.as_stack(next_obs)
        self._obs.put(i + 1, next_obs, next_stack_reset, check=self.check_stacks)  # checks before it writes
        self._actions[i], self._rewards[i] = int(action), float(reward)
        self._terminated[i], self._truncated[i] = bool(terminated), bool(truncated)
        self._size = i + 1

    def current_obs(self) -> Tensor:
        """The newest stacked observation, (F, S, S) uint8: what the agent acts on."""
        if not self._has_obs:
            raise ValueError("no observation yet: call reset_obs(obs, stack_reset=True) first")
        return self._obs.get(torch.tensor(self._size, device=self.device))

    # ---------------------------------------------------------------------------------------------- reading
    def get_obs(self, indices: Tensor) -> Tensor:
        """Stacked observations of arbitrary indices in [0, size]. Shapes: (...) -> (..., F, S, S) uint8."""
        indices = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        if indices.numel() and (indices.min() < 0 or indices.max() > self._size):
            raise ValueError(f"indices must lie in [0, size={self._size}]")
        return self._obs.get(indices)

    def num_valid_starts(self, sequence_length: int) -> int:
        """Starts s with s + ℓ - 1 < size, as the reference's `n = size - sequence_length + 1`."""
        return max(self._size - sequence_length + 1, 0)

    def visit_probs(self, sequence_length: int = 1) -> Tensor:
        """P(start) = softmax(-visits/τ) over the valid starts (Eq. 6); uniform for τ = ∞. Shape (n,)."""
        n = self.num_valid_starts(sequence_length)
        if n == 0:
            return torch.zeros(0)
        if math.isinf(self.temperature):
            return torch.full((n,), 1.0 / n)
        return torch.softmax(self._visits[:n].float() / -self.temperature, dim=0)

    def sample_indices(self, batch_size: int, sequence_length: int, generator: torch.Generator) -> Tensor:
        """Draw `batch_size` distinct starts by balanced sampling and count one visit for each. Shape (B,).

        As the reference (`sample_indices`), it refuses unless batch_size * sequence_length <= valid starts.
        """
        if batch_size <= 0 or sequence_length <= 0:
            raise ValueError(f"batch_size and sequence_length must be > 0, got {batch_size}, "
                             f"{sequence_length}")
        n = self.num_valid_starts(sequence_length)
        if batch_size * sequence_length > n:
            raise ValueError(f"batch_size={batch_size} * sequence_length={sequence_length} exceeds the {n} "
                             f"valid starts of a buffer of size {self._size}")
        starts = torch.multinomial(self.visit_probs(sequence_length), batch_size, replacement=False,
                                   generator=generator)
        self._visits[starts] += 1  # distinct starts, so no duplicates to accumulate
        return starts.to(self.device)

    def get_data(self, starts: Tensor, sequence_length: int, prefix: int = 1,
                 return_next_obs: bool = True) -> ReplayBatch:
        """Rows s-P .. s+T-1 (obs also s+T with `return_next_obs`) per start s, as the reference `get_data`.

        Prefix rows before index 0 repeat row 0, except that their actions and rewards are 0 (the reference's
        `repeat_fill_value`); terminated/truncated repeat row 0 unchanged, also as the reference.
        Shapes: starts (B,) -> ReplayBatch with obs (B, P+T+1, F, S, S), the rest (B, P+T).
        """
        starts = torch.as_tensor(starts, dtype=torch.long, device=self.device).reshape(-1)
        if prefix < 0:
            raise ValueError(f"prefix must be >= 0, got {prefix}")
        if starts.numel() and (starts.min() < 0 or starts.max() + sequence_length > self._size):
            raise ValueError(f"starts + sequence_length={sequence_length} must lie in [0, size={self._size}]")
        rows = starts.unsqueeze(1) + torch.arange(-prefix, sequence_length, device=self.device)  # (B, P+T)
        before = rows < 0
        rows = rows.clamp(min=0)
        obs_rows = torch.cat([rows, rows[:, -1:] + 1], dim=1) if return_next_obs else rows  # (B, P+T+1)
        return ReplayBatch(
            obs=self._obs.get(obs_rows),  # (B, P+T+1, F, S, S)
            actions=self._actions[rows].masked_fill(before, 0),  # 0 = noop
            rewards=self._rewards[rows].masked_fill(before, 0.0),
            terminated=self._terminated[rows],
            truncated=self._truncated[rows],
        )

    def sample(self, batch_size: int, sequence_length: int, generator: torch.Generator) -> ReplayBatch:
        """`sample_indices`, then `get_data(prefix=1, return_next_obs=True)`: the world-model batch."""
        return self.get_data(self.sample_indices(batch_size, sequence_length, generator), sequence_length)

    def generate_uniform_indices(self, batch_size: int, sequence_length: int,
                                 generator: torch.Generator) -> list[Tensor]:
        """Starts of non-overlapping windows at a random offset, shuffled, split in batches (for pretraining).

        As the reference, starts are offset, offset+ℓ, ... < size - ℓ, so `get_data(starts, ℓ)` including the
        next observation always fits. Visit counts are not touched. Returns tensors of shape (<=B,).
        """
        if batch_size <= 0 or sequence_length <= 0:
            raise ValueError(f"batch_size and sequence_length must be > 0, got {batch_size}, "
                             f"{sequence_length}")
        offset = int(torch.randint(sequence_length, (1,), generator=generator))
        starts = torch.arange(offset, self._size - sequence_length, sequence_length)
        starts = starts[torch.randperm(len(starts), generator=generator)]
        return [s.to(self.device) for s in starts.split(batch_size)]

    def sample_obs(self, n: int, generator: torch.Generator) -> Tensor:
        """n distinct uniformly drawn stacked observations from rows [0, size) (imagination restarts).
        Shape (n, F, S, S)."""
        if not 0 < n <= self._size:
            raise ValueError(f"n must be in [1, size={self._size}], got {n}")
        idx = torch.multinomial(torch.ones(self._size), n, replacement=False, generator=generator)
        return self._obs.get(idx.to(self.device))

    # ---------------------------------------------------------------------------------------------- metrics
    @property
    def visits(self) -> Tensor:
        """Copy of the visit counts of rows [0, size). Shape (size,)."""
        return self._visits[: self._size].clone()

    def visit_entropy(self) -> float:
        """Entropy of the visit distribution normalised by log(size): 1.0 = perfectly even."""
        visits = self._visits[: self._size].double()
        total = visits.sum()
        if self._size <= 1 or total == 0:
            return 1.0
        p = visits / total
        entropy = -torch.special.xlogy(p, p).sum().item()
        return min(entropy / math.log(self._size), 1.0)

    def nbytes(self) -> int:
        """Bytes held by the preallocated storage (100k capacity at 64×64: about 410 MB)."""
        tensors = (*self._obs.tensors(), self._actions, self._rewards, self._terminated, self._truncated,
                   self._visits)
        return sum(t.element_size() * t.nelement() for t in tensors)

    def interrupt_episode(self, obs: np.ndarray | Tensor) -> None:
        """Cut the episode in progress (a resumed run cannot restore the emulator): the last transition becomes
        truncated and `obs`, a fresh reset observation, replaces the current one. The last row is flushed again,
        so the chunk holding it is rewritten with the flag (through the straddling-chunk path of `flush`).
        """
        if self._size == 0:
            self.reset_obs(obs, stack_reset=True)
            return
        self._truncated[self._size - 1] = True
        self._flushed = min(self._flushed, self._size - 1)
        self.reset_obs(obs, stack_reset=True)

    def mark_interrupted(self, rows: Iterable[int]) -> None:
        """Mark `rows` truncated: the last rows of episodes that earlier resumes cut (`interrupt_episode`). The
        chunks flushed after each cut hold the flag already; nothing is marked for rewriting."""
        for row in rows:
            if not 0 <= row < self._size:
                raise ValueError(f"row {row} is not in [0, size={self._size})")
            self._truncated[row] = True

    # ------------------------------------------------------------------ persistence (twm_core.replay_store)
    def state_dict(self) -> dict[str, Any]:
        """Size and visit counts (the frames live in chunks); safe for `torch.load(weights_only=True)`."""
        return {"format_version": 1, "size": self._size, "visits": self._visits[: self._size].clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore visit counts; the buffer must hold the same rows (`load(..., upto=state["size"])`)."""
        if int(state["size"]) != self._size or tuple(state["visits"].shape) != (self._size,):
            raise ValueError(f"state size={state['size']} does not match buffer size={self._size}")
        self._visits.zero_()
        self._visits[: self._size] = state["visits"].to(torch.long)

    @property
    def unsaved_from(self) -> int:
        """The first row not known to be in the chunk directory (rows before it are, as of the last flush or load;
        `interrupt_episode` moves it back to rewrite a row)."""
        return self._flushed

    def mark_saved(self) -> None:
        """Every row is now in the chunk directory (after a flush)."""
        self._flushed = self._size

    def export_rows(self, start: int, end: int) -> dict[str, Tensor]:
        """Rows [start, end) and frames start..end (the last row's next observation too), as a chunk stores them.

        Shapes: frames (n+1, S, S) uint8, stack_reset (n+1,) bool, actions (n,) int64, rewards (n,) float32,
        terminated, truncated (n,) bool, with n = end - start.
        """
        if not 0 <= start <= end <= self._size:
            raise ValueError(f"rows [{start}, {end}) are not within [0, size={self._size}]")
        return {
            "frames": self._obs.frames[start: end + 1], "stack_reset": self._obs.stack_reset[start: end + 1],
            "actions": self._actions[start:end], "rewards": self._rewards[start:end],
            "terminated": self._terminated[start:end], "truncated": self._truncated[start:end],
        }

    def restore_rows(self, parts: Iterable[tuple[int, int, Mapping[str, np.ndarray]]], size: int) -> None:
        """Fill rows [0, size) and observation `size` from `(start, n, arrays)` parts: the first n rows (n+1 frames)
        of arrays laid out as `export_rows` gives them, put at row `start`. The buffer then holds exactly those rows,
        all of them saved."""
        for start, n, arrays in parts:
            rows, frames = slice(start, start + n), slice(start, start + n + 1)
            self._obs.frames[frames] = torch.from_numpy(arrays["frames"][: n + 1]).to(self.device)
            self._obs.stack_reset[frames] = torch.from_numpy(arrays["stack_reset"][: n + 1]).to(self.device)
            for name in ("actions", "rewards", "terminated", "truncated"):
                getattr(self, f"_{name}")[rows] = torch.from_numpy(arrays[name][:n]).to(self.device)
        if not bool(self._obs.stack_reset[0]):
            raise ValueError("row 0 of the chunks is not a stack reset")
        self._obs.rebuild_starts(size + 1)
        self._size, self._has_obs, self._flushed = size, True, size

    def flush(self, directory: Path | str) -> int:
        """Append the rows not yet on disk as one chunk: `twm_core.replay_store.flush(self, directory)`."""
        from twm_core import replay_store  # imported here: the store builds on this module

        return replay_store.flush(self, directory)

    @classmethod
    def load(cls, directory: Path | str, capacity: int, upto: int | None = None, frame_stack: int = 4,
             frame_size: int = 64, temperature: float = 20.0,
             device: torch.device | str = "cpu") -> ReplayBuffer:
        """Rows [0, upto) and observation `upto` from the chunks in `directory`: `twm_core.replay_store.load`."""
        from twm_core import replay_store  # imported here: the store builds on this module

        return replay_store.load(directory, capacity, upto, frame_stack, frame_size, temperature, device)
