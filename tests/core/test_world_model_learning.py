"""The world model learns on real Pong frames collected by a random policy (debug preset, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twm_core.envs import make_env, transform_reward
from twm_core.presets import debug
from twm_core.replay import ReplayBuffer
from twm_core.wm_training import WorldModelOptimizers, world_model_update
from twm_core.world_model import WorldModel


def collect_random(cfg, steps: int, seed: int) -> ReplayBuffer:
    env = make_env(cfg.env, seed=seed)
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(steps, cfg.env.frame_stack, temperature=cfg.replay.temperature)
    obs, info = env.reset(seed=seed)
    buffer.reset_obs(obs, info["stack_reset"])
    for _ in range(steps):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()
        buffer.add(action, float(transform_reward(reward, cfg.env)), terminated, truncated, obs,
                   info.get("stack_reset", False))
    env.close()
    return buffer


@pytest.mark.slow
def test_world_model_learns_pong_frames():
    torch.manual_seed(0)
    cfg = debug("Pong")
    buffer = collect_random(cfg, 600, seed=0)
    wm = WorldModel(cfg, num_actions=6)
    optimizers = WorldModelOptimizers.create(wm)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(300):
        batch = buffer.sample(cfg.train.wm_batch_size, cfg.train.wm_sequence_length, generator)
        _, metrics = world_model_update(wm, optimizers, batch)
        history.append((metrics["dec_loss"].item(), metrics["z_pred_ce"].item()))
    start = np.mean(history[:10], axis=0)
    end = np.mean(history[-10:], axis=0)
    # The decoder NLL has a constant floor of 0.5·ln(2π) per pixel: compare the part above it.
    floor = 0.5 * np.log(2 * np.pi) * cfg.env.frame_stack * 64 * 64
    print(f"recon above floor {start[0] - floor:.1f} -> {end[0] - floor:.1f}; z CE {start[1]:.2f} -> {end[1]:.2f}")
    assert end[0] - floor < 0.5 * (start[0] - floor)
    assert end[1] < 0.7 * start[1]
