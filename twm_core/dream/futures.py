"""Stochastic futures: n imagined continuations of one point of a dream, in one batched forward per step.

The point's memory is copied to n rows; each row then acts (policy, or the given actions) and samples its own ẑ,
so the spread of the decoded frames shows what the world model is unsure about. The draws come from one
`torch.Generator` seeded from (seed, point, n): the same request gives the same futures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twm_core.dream.session import DreamSession
from twm_core.dream.start import DreamError
from twm_core.imagination import imagine_step
from twm_core.seeding import derive_seed

MAX_FUTURES = 64


@dataclass
class Futures:
    """n futures of `horizon` steps from point `step`. Entry [i, t] is future i after t + 1 steps.

    Shapes: frames (n, H, 64, 64) uint8; mean, std (H, 64, 64) float in [0, 1] over the n decoded frames;
    latents (n, H, C) class of each categorical; actions (n, H) int64; rewards, discounts (n, H) float;
    dones (n, H) bool
    """

    step: int
    seed: int
    frames: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    latents: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    dones: np.ndarray


@torch.inference_mode()
def imagine_futures(session: DreamSession, n: int, horizon: int, step: int | None = None, seed: int | None = None,
                    actions: list[int] | None = None) -> Futures:
    """n futures from point `step` (default: the last), with the policy or the same `actions` for every row."""
    agent = session.agent
    step = session.num_steps if step is None else step
    seed = session.seed if seed is None else seed
    if not 0 <= step <= session.num_steps:
        raise DreamError(f"futures step must lie in [0, {session.num_steps}], got {step}")
    if not 1 <= n <= MAX_FUTURES or horizon < 1:
        raise DreamError(f"futures need 1 <= n <= {MAX_FUTURES} and horizon >= 1, got n={n}, horizon={horizon}")
    if actions is not None and (len(actions) != horizon or any(not 0 <= a < agent.num_actions for a in actions)):
        raise DreamError(f"futures take {horizon} actions in [0, {agent.num_actions}), got {actions}")
    p, device = session.points[step], agent.device
    rows = torch.zeros(n, dtype=torch.long, device=device)
    memory = p.memory.index(rows)  # a copy per future
    z, h = p.z.expand(n, -1, -1), p.hidden.expand(n, -1, -1)  # (n, 1, Z), (n, 1, D)
    prev_r, prev_d, cumulative = p.prev_reward.expand(n, 1), p.prev_done.expand(n, 1), p.cumulative.expand(n, 1)
    generator = torch.Generator(device).manual_seed(derive_seed(seed, f"dream/futures/{step}/{n}"))
    zs, acts, rewards, discounts, dones = [], [], [], [], []
    for t in range(horizon):
        given = None if actions is None else torch.full((n, 1), actions[t], dtype=torch.long, device=device)
        res = imagine_step(agent.world_model, agent.actor_critic, memory, z, h, prev_r, prev_d, cumulative,
                           session._start_sampler(f"dream/futures/restart/{step}/{t}"),
                           agent.config.ac.discount_threshold, given, generator=generator)
        memory, cumulative = res.memory, res.cumulative
        z, h, prev_r, prev_d = res.next_z, res.output.hidden, res.reward, res.done
        zs.append(res.next_z)
        acts.append(res.action)
        rewards.append(res.reward)
        discounts.append(res.discount)
        dones.append(res.done)
    z_all = torch.cat(zs, dim=1)  # (n, H, Z)
    decoded = agent.world_model.obs_model.decode(z_all)[:, :, -1].float().clamp(0, 1)  # (n, H, 64, 64)
    frames = (decoded * 255.0).round().to(torch.uint8).cpu().numpy()
    latents = z_all.unflatten(-1, agent.world_model.dyn_model.z_shape).argmax(-1)  # (n, H, C)
    return Futures(step=step, seed=seed, frames=frames, mean=decoded.mean(0).cpu().numpy(),
                   std=decoded.std(0, unbiased=False).cpu().numpy(), latents=latents.cpu().numpy(),
                   actions=torch.cat(acts, 1).cpu().numpy(), rewards=torch.cat(rewards, 1).cpu().numpy(),
                   discounts=torch.cat(discounts, 1).cpu().numpy(), dones=torch.cat(dones, 1).cpu().numpy())
