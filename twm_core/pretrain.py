"""Offline pretraining on the random prefill (method.md §3 step 2, reference trainer.py `_pretrain`).

Budgets are in frames: the observation model sees random permutations of single observations in chunks of N·ℓ,
the dynamics model non-overlapping windows of ℓ+2 steps with latents sampled from cached encoder logits, and the
actor-critic windows of H+2 steps of *real* latents (critic on λ-returns of real rewards, actor on entropy only).

Each stage calls `progress(frames)` after every update with the frames of its budget used so far (the last batch
may overshoot the budget): the trainer's metric rows and status.json during pretraining. It only reads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from twm_core.ac_training import ActorCriticOptimizers, actor_critic_pretrain_update
from twm_core.config import TWMConfig
from twm_core.models.actor_critic import ActorCritic
from twm_core.replay import ReplayBuffer
from twm_core.wm_training import WorldModelOptimizers, pretrain_dyn_update, pretrain_obs_update
from twm_core.world_model import WorldModel

Metrics = dict[str, torch.Tensor]
Report = Callable[[str, Metrics], None]
Progress = Callable[[float], None]
"""`progress(frames)`: the frames of the stage's budget used so far, after each update."""


def _no_progress(frames: float) -> None:
    pass


def pretrain_observation_model(wm: WorldModel, optimizers: WorldModelOptimizers, replay: ReplayBuffer,
                               budget: float, generator: torch.Generator, device: torch.device,
                               report: Report, progress: Progress = _no_progress) -> None:
    chunk = wm.cfg.train.wm_batch_size * wm.cfg.train.wm_sequence_length
    total = budget
    while budget > 0:
        for idx in torch.randperm(replay.size, generator=generator).split(chunk):
            if budget <= 0:
                break
            obs = replay.get_obs(idx).to(device)[:, None]  # (n, 1, F, 64, 64)
            report("wm", pretrain_obs_update(wm, optimizers, obs))
            budget -= idx.numel()
            progress(total - budget)


@torch.no_grad()
def encode_buffer(wm: WorldModel, replay: ReplayBuffer, device: torch.device, chunk: int = 512) -> torch.Tensor:
    """Encoder logits of every observation once, shifted by one: row k holds observation k−1 (row 0 repeats
    observation 0, the reference's context before the first step).

    Shapes: -> (size + 2, C, K)
    """
    wm.obs_model.eval()
    indices = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(replay.size + 1)])
    parts = [wm.obs_model.encode(replay.get_obs(idx).to(device)[:, None])[:, 0] for idx in indices.split(chunk)]
    return torch.cat(parts)


def _windows(starts: torch.Tensor, length: int) -> torch.Tensor:
    """Rows of the shifted logits cache for observations s−1 … s+length: (B, length + 2)."""
    return starts[:, None] + torch.arange(length + 2)


def pretrain_dynamics_model(wm: WorldModel, optimizers: WorldModelOptimizers, replay: ReplayBuffer,
                            logits: torch.Tensor, budget: float, generator: torch.Generator,
                            device: torch.device, report: Report, progress: Progress = _no_progress) -> None:
    batch, length = wm.cfg.train.wm_batch_size, wm.cfg.train.wm_sequence_length
    total = budget
    while budget > 0:
        for starts in replay.generate_uniform_indices(batch, length, generator):
            data = replay.get_data(starts, length, prefix=1, return_next_obs=False).to(device)
            window = logits[_windows(starts, length).to(logits.device)]  # (B, ℓ+2, C, K)
            z = wm.obs_model.sample(window[:, :-1])  # (B, ℓ+1, Z), temperature 1
            report("wm", pretrain_dyn_update(wm, optimizers, z, data.actions, data.rewards, data.terminated,
                                             data.truncated, window[:, 2:]))
            budget -= starts.numel() * length
            progress(total - budget)
            if budget <= 0:
                break


def pretrain_actor_critic(wm: WorldModel, ac: ActorCritic, optimizers: ActorCriticOptimizers,
                          replay: ReplayBuffer, logits: torch.Tensor, budget: float, generator: torch.Generator,
                          device: torch.device, report: Report, progress: Progress = _no_progress) -> None:
    cfg: TWMConfig = wm.cfg
    batch, horizon = cfg.ac.batch_size, cfg.ac.horizon
    total = budget
    while budget > 0:
        for starts in replay.generate_uniform_indices(batch, horizon, generator):
            data = replay.get_data(starts, horizon, prefix=1, return_next_obs=False).to(device)
            z = wm.obs_model.sample(logits[_windows(starts, horizon).to(logits.device)])  # (B, H+2, Z)
            dones = data.terminated | data.truncated  # (B, H+1)
            h = None
            if cfg.ac.input_h:  # h_{s-1} … h_{s+H-1}, paired with z_s … z_{s+H}
                with torch.no_grad():
                    h = wm.dyn_model.eval()(z[:, :-1], data.actions, data.rewards[:, :-1], dones[:, :-1]).hidden
            discounts = cfg.env.discount_factor * (~dones).float()  # the reference discounts at any done here
            report("ac", actor_critic_pretrain_update(
                ac, optimizers, z[:, 1:], h, data.rewards[:, 1:], discounts[:, 1:], dones[:, 1:],
                cfg.env.discount_lambda))
            budget -= starts.numel() * horizon
            progress(total - budget)
            if budget <= 0:
                break
    ac.sync_target()
