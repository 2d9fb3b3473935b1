"""Imagination: roll the policy out inside the world model (method.md §4.4, reference agent.py `Dreamer`).

The context is one real step: the dynamics model first reads (z_{t-1}, a_{t-1}) to fill its memory, then each
imagined step feeds (r_{t-1}, z_t, a_t) through the incremental path and samples ẑ_{t+1} at temperature 1, with r̂_t
the mean and γ̂_t = sigmoid. Trajectory weights are the cumulative predicted discounts (reset after a done); a row
is done once its cumulative discount falls below the threshold, and then continues from a fresh start latent
(the attention mask stops at that boundary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from twm_core.models.actor_critic import ActorCritic
from twm_core.models.dynamics import DynamicsMemory, DynamicsOutput
from twm_core.models.observation import sample_onehot
from twm_core.performance import apply_performance_settings, autocast
from twm_core.world_model import WorldModel


@dataclass
class ImaginationStart:
    """One real step of context per row: latents of steps t-1 and t, and the transition t-1.

    Shapes: z (M, 2, Z); actions, rewards (M, 1); terminated, truncated (M, 1) bool
    """

    z: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor

    def index(self, rows: torch.Tensor) -> ImaginationStart:
        return ImaginationStart(self.z[rows], self.actions[rows], self.rewards[rows], self.terminated[rows],
                                self.truncated[rows])


@dataclass
class ImaginedTrajectory:
    """An imagined batch. z_0 is the real start latent; step t acts on z_t (and h_{t-1}).

    Shapes: z (M, H+1, Z); hidden (M, H+1, D) = [h_{-1}, h_0, …, h_{H-1}]; actions (M, H) int64;
    rewards, discounts, weights (M, H); dones (M, H) bool; attention: H × (M, L, heads, 3, S_t) when requested
    """

    z: torch.Tensor
    hidden: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    discounts: torch.Tensor
    dones: torch.Tensor
    weights: torch.Tensor
    z_logits: torch.Tensor | None = None
    attention: list[torch.Tensor] = field(default_factory=list)


def select_starts(z: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor,
                  truncated: torch.Tensor, count: int, generator: torch.Generator | None = None) -> ImaginationStart:
    """All 2-step windows of the world-model batch, `count` of them drawn uniformly without replacement
    (reference trainer.py `_train_step`).

    Shapes: z (B, T, Z); actions, rewards, terminated, truncated (B, T) with T = ℓ+1 -> ImaginationStart (count)
    """
    batch, time = actions.shape
    z_windows = torch.stack([z[:, :-1], z[:, 1:]], dim=2).flatten(0, 1)  # (B·(T-1), 2, Z)
    flat = [x[:, :-1].reshape(-1, 1) for x in (actions, rewards, terminated, truncated)]  # (B·(T-1), 1)
    if count > z_windows.shape[0]:
        raise ValueError(f"{count} imagination starts requested but the batch has {z_windows.shape[0]} windows")
    rows = torch.randperm(z_windows.shape[0], generator=generator, device="cpu")[:count].to(z.device)
    return ImaginationStart(z_windows, *flat).index(rows)


def discount_bookkeeping(cumulative: torch.Tensor, prev_done: torch.Tensor, discount: torch.Tensor,
                         threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the trajectory weights (reference agent.py:201-218).

    The weight of step t is the product of the predicted discounts before it, restarting at 1 after a done; the
    row is done at step t once that product times γ̂_t falls below `threshold`.
    Shapes: (M, 1) each -> weight, new cumulative discount, done (bool)
    """
    after_done = prev_done.float()
    weight = cumulative * (1 - after_done) + after_done
    cumulative = ((1 - after_done) * cumulative + after_done) * discount
    return weight, cumulative, cumulative < threshold


@dataclass
class ImaginedStep:
    """One imagined step of M rows from latent z_t and h_{t-1}: the action a_t, the dynamics output at a_t (h_t,
    heads, attention), the memory after it, the sampled ẑ_{t+1} (fresh start latents where a row restarted) and
    the trajectory bookkeeping.

    Shapes: action (M, 1) int64; z_logits (M, 1, C, K) fp32; next_z (M, 1, Z); reward, discount, weight,
    cumulative (M, 1); done, restart (M, 1) / (M,) bool
    """

    action: torch.Tensor
    output: DynamicsOutput
    memory: DynamicsMemory
    z_logits: torch.Tensor
    next_z: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor
    weight: torch.Tensor
    cumulative: torch.Tensor
    done: torch.Tensor
    restart: torch.Tensor


def imagine_step(wm: WorldModel, ac: ActorCritic, memory: DynamicsMemory, z: torch.Tensor, h: torch.Tensor,
                 prev_reward: torch.Tensor, prev_done: torch.Tensor, cumulative: torch.Tensor,
                 sample_start_z: Callable[[int], torch.Tensor], discount_threshold: float,
                 action: torch.Tensor | None = None, return_attention: bool = False,
                 generator: torch.Generator | None = None, cache_capacity: int | None = None,
                 action_generator: torch.Generator | None = None) -> ImaginedStep:
    """Feed (r_{t-1}, z_t, a_t) and sample ẑ_{t+1} at temperature 1 (the policy acts when `action` is None).

    The random draws come in a fixed order (policy action, ẑ, restarts), all from `generator` (default: torch's
    global RNG; `sample_start_z` draws with its own), the action from `action_generator` if given (then a given
    action and a sampled one leave the same random numbers for ẑ).
    Shapes: z (M, 1, Z), h (M, 1, D), prev_reward, cumulative (M, 1), prev_done (M, 1) bool, action (M, 1)
    """
    amp, device = wm.cfg.train.amp, z.device
    with autocast(amp, device):
        a = ac.act(ac.inputs(z, h), generator=action_generator or generator) if action is None else action  # (M, 1)
        out, memory = wm.dyn_model.step(memory, z, a, prev_reward, prev_done, return_attention=return_attention,
                                        cache_capacity=cache_capacity)
    assert out.z_logits is not None and out.reward is not None and out.discount is not None  # heads=True
    z_logits = out.z_logits.float()  # (M, 1, C, K); fp32 also under amp, for the sampling
    next_z = sample_onehot(z_logits, 1.0, generator).flatten(-2)  # (M, 1, Z), temperature 1
    r, g = out.reward.float(), out.discount.float()  # (M, 1)
    w, cumulative, d = discount_bookkeeping(cumulative, prev_done, g, discount_threshold)
    restart = d[:, 0]
    if restart.any():
        next_z[restart, 0] = sample_start_z(int(restart.sum()))
    return ImaginedStep(a, out, memory, z_logits, next_z, r, g, w, cumulative, d, restart)


@torch.no_grad()
def imagine(wm: WorldModel, ac: ActorCritic, start: ImaginationStart, horizon: int,
            sample_start_z: Callable[[int], torch.Tensor], discount_threshold: float,
            actions: torch.Tensor | None = None, return_attention: bool = False,
            keep_logits: bool = False) -> ImaginedTrajectory:
    """Imagine `horizon` steps from `start` with the policy (or the given `actions`, shape (M, H)).

    `sample_start_z(n)` returns n fresh start latents (M rows done → restarted), shape (n, Z). The outputs are
    written into preallocated (M, H(+1), ·) tensors; the random draws happen in the same order as a step-by-step
    loop with list appends (policy action, then ẑ, then restarts), so a seed gives the same trajectory.
    """
    apply_performance_settings(wm.cfg.train, wm, ac)
    wm.eval()
    ac.eval()
    dyn, amp, device = wm.dyn_model, wm.cfg.train.amp, start.z.device
    with autocast(amp, device):  # memory from (z_{t-1}, a_{t-1}); its predictions are not used
        out, memory = dyn.step(None, start.z[:, :1], start.actions, heads=False)
    batch, z_dim = start.z.shape[0], start.z.shape[-1]
    zs = start.z.new_empty(batch, horizon + 1, z_dim)  # (M, H+1, Z)
    hs = torch.empty(batch, horizon + 1, out.hidden.shape[-1], device=device)  # (M, H+1, D)
    acts = torch.empty(batch, horizon, dtype=torch.long, device=device)  # (M, H)
    rewards, discounts, weights = (torch.empty(batch, horizon, device=device) for _ in range(3))  # (M, H)
    dones = torch.empty(batch, horizon, dtype=torch.bool, device=device)
    logits = torch.empty(batch, horizon, *dyn.z_shape, device=device) if keep_logits else None  # (M, H, C, K)
    zs[:, 0], hs[:, 0] = start.z[:, 1], out.hidden[:, 0]
    z, h = zs[:, :1], hs[:, :1]  # (M, 1, Z), (M, 1, D)
    prev_r, prev_d = start.rewards, start.terminated | start.truncated  # (M, 1)
    cumulative = torch.ones_like(prev_r)
    attention = []
    for t in range(horizon):
        given = None if actions is None else actions[:, t:t + 1]
        step = imagine_step(wm, ac, memory, z, h, prev_r, prev_d, cumulative, sample_start_z, discount_threshold,
                            given, return_attention)
        memory, cumulative = step.memory, step.cumulative
        zs[:, t + 1:t + 2], hs[:, t + 1:t + 2], acts[:, t:t + 1] = step.next_z, step.output.hidden, step.action
        rewards[:, t:t + 1], discounts[:, t:t + 1] = step.reward, step.discount
        dones[:, t:t + 1], weights[:, t:t + 1] = step.done, step.weight
        if logits is not None:
            logits[:, t:t + 1] = step.z_logits
        if return_attention:
            assert step.output.attention is not None
            attention.append(step.output.attention)
        z, h, prev_r, prev_d = zs[:, t + 1:t + 2], hs[:, t + 1:t + 2], step.reward, step.done
    return ImaginedTrajectory(z=zs, hidden=hs, actions=acts, rewards=rewards, discounts=discounts, dones=dones,
                              weights=weights, z_logits=logits, attention=attention)
