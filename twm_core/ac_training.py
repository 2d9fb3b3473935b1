"""Actor-critic updates (method.md §5.2, reference actor_critic.py): critic first, then actor; pretraining on real
latent sequences. The caller owns the optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twm_core import losses
from twm_core.imagination import ImaginedTrajectory
from twm_core.models.actor_critic import ActorCritic
from twm_core.optim import make_adam, optimizer_step
from twm_core.performance import autocast, module_device

Metrics = dict[str, torch.Tensor]


@dataclass
class ActorCriticOptimizers:
    """Separate Adam optimizers for the actor and the critic (reference actor_critic.py:38-43)."""

    actor: torch.optim.Adam
    critic: torch.optim.Adam

    @classmethod
    def create(cls, ac: ActorCritic) -> ActorCriticOptimizers:
        c = ac.cfg
        return cls(actor=make_adam(ac.actor.parameters(), c.actor_lr, c.actor_eps, c.actor_weight_decay),
                   critic=make_adam(ac.critic.parameters(), c.critic_lr, c.critic_eps, c.critic_weight_decay))


@torch.no_grad()
def compute_targets(ac: ActorCritic, x: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
                    dones: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """λ-returns and GAE advantages from the critic (eval mode; the target critic when there is one).

    Shapes: x (B, H+1, X); rewards, discounts, dones (B, H) -> returns, advantages (B, H)
    """
    ac.eval()
    with autocast(ac.amp, module_device(ac)):
        values = ac.value(x, target=True).float()  # (B, H+1)
    advantages = losses.gae_advantages(rewards, discounts, dones, values, lam)
    return advantages + values[:, :-1], advantages  # no normalisation (ac_normalize_advantages=False)


def actor_critic_update(ac: ActorCritic, optimizers: ActorCriticOptimizers, traj: ImaginedTrajectory,
                        lam: float, update_index: int) -> Metrics:
    """One critic step then one actor step on an imagined batch (reference `ActorCritic.optimize`).

    `update_index` (1-based) drives the hard target-critic copy when `critic_target_interval` > 1.
    """
    cfg = ac.cfg
    if cfg.critic_target_interval > 1 and update_index % cfg.critic_target_interval == 0:
        ac.sync_target()
    x = ac.inputs(traj.z, traj.hidden)  # (M, H+1, X)
    returns, advantages = compute_targets(ac, x, traj.rewards, traj.discounts, traj.dones, lam)
    ac.train()
    with autocast(ac.amp, module_device(ac)):
        values = ac.value(x[:, :-1]).float()  # the last state only bootstraps
    c_loss, c_metrics = losses.critic_loss(values, returns, traj.weights)
    c_metrics["critic_grad_norm"] = optimizer_step(optimizers.critic, c_loss, cfg.critic_grad_clip)
    with autocast(ac.amp, module_device(ac)):
        logits = ac.logits(x[:, :-1]).float()
    a_loss, a_metrics = losses.actor_loss(logits, traj.actions, advantages, traj.weights,
                                          cfg.entropy_coef, cfg.entropy_threshold)
    a_metrics["actor_grad_norm"] = optimizer_step(optimizers.actor, a_loss, cfg.actor_grad_clip)
    return {**c_metrics, **a_metrics, "num_dones": traj.dones.sum().detach().float()}


def actor_critic_pretrain_update(ac: ActorCritic, optimizers: ActorCriticOptimizers, z: torch.Tensor,
                                 h: torch.Tensor | None, rewards: torch.Tensor, discounts: torch.Tensor,
                                 dones: torch.Tensor, lam: float) -> Metrics:
    """Pretraining on real latent sequences of the random prefill: the critic regresses λ-returns of the real
    rewards (unit weights); the actor only maximises its entropy (reference `optimize_pretrain`; actor step first).

    Shapes: z (B, H+1, Z); h (B, H+1, D) or None; rewards, discounts, dones (B, H)
    """
    cfg = ac.cfg
    x = ac.inputs(z, h)
    returns, _ = compute_targets(ac, x, rewards, discounts, dones, lam)
    ac.train()
    with autocast(ac.amp, module_device(ac)):
        values, logits = ac.value(x[:, :-1]).float(), ac.logits(x).float()
    c_loss, c_metrics = losses.critic_loss(values, returns, torch.ones_like(returns))
    a_loss, a_metrics = losses.actor_pretrain_loss(logits, cfg.entropy_coef)
    a_metrics["actor_grad_norm"] = optimizer_step(optimizers.actor, a_loss, cfg.actor_grad_clip)
    c_metrics["critic_grad_norm"] = optimizer_step(optimizers.critic, c_loss, cfg.critic_grad_clip)
    return {**c_metrics, **a_metrics}
