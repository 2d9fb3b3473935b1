"""Optimizers as the reference builds them: Adam (plain L2 weight decay, not AdamW) with grad-norm clipping."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def make_adam(params: Iterable[nn.Parameter], lr: float, eps: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with betas (0.9, 0.999), `weight_decay` as L2 inside Adam (reference utils.AdamOptim).

    Torch's fused implementation (`fused=True`, one kernel per parameter on CPU and CUDA): the same update rule as
    the default loop up to float rounding (tests/core/test_fastpaths.py), and several times faster on a CPU for
    these models' many small parameters (the `optimizer` row of `python -m bench.profile --path wm_update`)."""
    return torch.optim.Adam(list(params), lr=lr, eps=eps, weight_decay=weight_decay, betas=(0.9, 0.999), fused=True)


def use_fused(optimizer: torch.optim.Optimizer) -> None:
    """After `load_state_dict`: a checkpoint written before `make_adam` fused restores `fused: None` in its
    parameter groups; set them back to the fused path (the state itself is the same)."""
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> torch.Tensor:
    """zero_grad, backward, clip the gradient norm over this optimizer's parameters, step; returns the norm."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = torch.zeros(())
    optimizer.step()
    return norm.detach()
