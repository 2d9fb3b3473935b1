"""F-frame observation stacks stored as single frames (the replay buffer's observations; method.md §2.1).

Only the newest frame of each F-frame stack is stored, with a per-step `stack_reset` flag (the env refilled its
stack with F copies of that frame): the stack of step i is frames[max(i-F+1, k) .. i] with k the latest reset
<= i, leading frames repeating frame k. That is 4x less memory than the reference's stored stacks (100k steps:
~410 MB, not 1.6 GB). A stored stack must follow that rule (`put` checks it), else sampled stacks would differ
from what the agent saw.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class FrameStacks:
    """Preallocated frames, stack-reset flags and latest-reset indices of `length` observations."""

    def __init__(self, length: int, frame_stack: int, frame_size: int, device: torch.device) -> None:
        self.frame_stack, self.frame_size, self.device = frame_stack, frame_size, device
        self.frames = torch.zeros(length, frame_size, frame_size, dtype=torch.uint8, device=device)  # (L, S, S)
        self.stack_reset = torch.zeros(length, dtype=torch.bool, device=device)
        self.stack_start = torch.zeros(length, dtype=torch.long, device=device)  # latest reset index ≤ i

    def as_stack(self, obs: np.ndarray | Tensor) -> Tensor:
        """`obs` as a tensor on the device; ValueError unless uint8 of shape (F, S, S)."""
        obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, Tensor) else obs, device=self.device)
        expected = (self.frame_stack, self.frame_size, self.frame_size)
        if obs.shape != expected or obs.dtype != torch.uint8:
            raise ValueError(f"obs must be uint8 of shape {expected}, got {obs.dtype} {tuple(obs.shape)}")
        return obs

    def put(self, i: int, obs: Tensor, stack_reset: bool, check: bool = True) -> None:
        """Store observation i, the stack `obs` (F, S, S): its newest frame and whether the env reset its stack.

        With `check`, the stack must follow the rule: all frames equal to the newest after a reset, otherwise
        stack i-1 shifted by one.
        """
        if check:
            if stack_reset:
                expected = obs[-1].expand_as(obs)
            else:
                expected = torch.cat([self.get(torch.tensor(i - 1, device=self.device))[1:], obs[-1:]])
            if not torch.equal(obs, expected):
                raise ValueError(f"obs breaks the frame-stack rule (stack_reset={stack_reset}): with a reset all "
                                 "frames must equal the newest, otherwise the previous stack shifted by one")
        self.frames[i] = obs[-1]
        self.stack_reset[i] = stack_reset
        self.stack_start[i] = i if stack_reset else self.stack_start[i - 1]

    def get(self, idx: Tensor) -> Tensor:
        """Stacks of observations `idx` (not range-checked). Shapes: (...) -> (..., F, S, S) uint8."""
        offsets = torch.arange(1 - self.frame_stack, 1, device=self.device)
        src = idx.unsqueeze(-1) + offsets  # (..., F)
        src = torch.maximum(src, self.stack_start[idx].unsqueeze(-1))  # repeat the frame of the last reset
        return self.frames[src]  # (..., F, S, S)

    def rebuild_starts(self, length: int) -> None:
        """Recompute the latest-reset indices of observations [0, length) from the flags (after a bulk load; the
        first must be a reset)."""
        idx = torch.arange(length, device=self.device)
        reset_idx = torch.where(self.stack_reset[:length], idx, torch.zeros_like(idx))
        self.stack_start[:length] = torch.cummax(reset_idx, dim=0).values  # latest reset ≤ i

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """The preallocated storage (to count its bytes)."""
        return self.frames, self.stack_reset, self.stack_start
