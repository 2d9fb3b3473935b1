"""World-model updates (method.md §5.1, reference world_model.py:38-123): the full update of the main loop and the
two pretraining updates. The caller owns the optimizers; these functions own the order of operations.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from twm_core import losses
from twm_core.optim import make_adam, optimizer_step
from twm_core.performance import apply_performance_settings, autocast, module_device
from twm_core.replay import ReplayBatch
from twm_core.world_model import WorldModel

Metrics = dict[str, torch.Tensor]


@dataclass
class WorldModelOptimizers:
    """Separate Adam optimizers for φ and ψ (reference world_model.py:23-28)."""

    obs: torch.optim.Adam
    dyn: torch.optim.Adam

    @classmethod
    def create(cls, wm: WorldModel) -> WorldModelOptimizers:
        o, d = wm.cfg.obs, wm.cfg.dyn
        return cls(obs=make_adam(wm.obs_model.parameters(), o.lr, o.eps, o.weight_decay),
                   dyn=make_adam(dynamics_parameters(wm), d.lr, d.eps, d.weight_decay))


def dynamics_parameters(wm: WorldModel) -> list[torch.nn.Parameter]:
    """The parameters ψ's optimizer updates: all of ψ, or without the z head under `dyn.z_loss_as_published`.

    In the published code the z head is in the optimizer but never gets a gradient (jrobine/twm#4), and Adam skips
    parameters without one, so it stays at its initial weights; leaving it out here gives the same, with no
    gradient to keep away from it (and no weight decay) whatever the loss.
    """
    params = list(wm.dyn_model.parameters())
    if not wm.cfg.dyn.z_loss_as_published:
        return params
    frozen = {id(p) for p in wm.dyn_model.z_head.parameters()}
    return [p for p in params if id(p) not in frozen]


def _dynamics_targets(wm: WorldModel, terminated: torch.Tensor,
                      truncated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dones, discount targets and the weights of the next-latent loss (0 after a done)."""
    dones = terminated | truncated  # (B, ℓ+1)
    discounts = wm.discounts(terminated)  # (B, ℓ+1)
    return dones, discounts, (~dones[:, 1:]).float()


def _dynamics_loss(wm: WorldModel, z: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                   terminated: torch.Tensor, truncated: torch.Tensor,
                   target_logits: torch.Tensor) -> tuple[torch.Tensor, Metrics, torch.Tensor]:
    """Forward ψ over z (with the context step) and score its predictions of steps 1..ℓ.

    Returns the loss, metrics and the predicted latent probabilities of steps 0..ℓ-1 (for the consistency loss).
    Shapes: z (B, ℓ+1, Z); actions, rewards, terminated, truncated (B, ℓ+1); target_logits (B, ℓ, C, K)
    """
    dones, discounts, weights = _dynamics_targets(wm, terminated, truncated)
    with _amp(wm):
        out = wm.dyn_model(z, actions, rewards[:, :-1], dones[:, :-1]).float()
    d = wm.cfg.dyn
    loss, metrics = losses.dynamics_loss(
        out.z_logits[:, 1:], out.reward[:, 1:], out.discount_logit[:, 1:], target_logits, rewards[:, 1:],
        discounts[:, 1:], weights, z_coef=d.z_coef, reward_coef=d.reward_coef, discount_coef=d.discount_coef,
        z_in_loss=not d.z_loss_as_published)
    metrics["h_norm"] = out.hidden.detach().norm(dim=-1).mean()
    return loss, metrics, out.z_logits[:, :-1].detach().softmax(-1)


def _amp(wm: WorldModel) -> contextlib.AbstractContextManager[None]:
    """The forward passes' precision (`train.amp`); outputs are cast back to fp32 before the losses."""
    return autocast(wm.cfg.train.amp, module_device(wm))


def world_model_update(wm: WorldModel, optimizers: WorldModelOptimizers,
                       batch: ReplayBatch) -> tuple[torch.Tensor, Metrics]:
    """One training step of ψ then φ on a sampled batch (reference `WorldModel.optimize`).

    Returns the latents fed to ψ (context sample + straight-through samples, detached), the imagination starts.
    Shapes: batch from `ReplayBuffer.get_data(prefix=1, return_next_obs=True)`: obs (B, ℓ+2, F, 64, 64),
    the rest (B, ℓ+1) -> z (B, ℓ+1, Z)
    """
    obs_model, cfg = wm.obs_model, wm.cfg
    apply_performance_settings(cfg.train, wm)
    wm.eval()
    with torch.no_grad(), _amp(wm):
        context_z = obs_model.sample(obs_model.encode(batch.obs[:, :1]).float())  # (B, 1, Z), temperature 1
        next_logits = obs_model.encode(batch.obs[:, -1:]).float()  # (B, 1, C, K)
    wm.train()

    obs = obs_model.preprocess(batch.obs[:, 1:-1])  # (B, ℓ, F, 64, 64)
    with _amp(wm):
        z_logits = obs_model.encode(obs).float()  # (B, ℓ, C, K)
    z = obs_model.sample(z_logits, straight_through=True)  # (B, ℓ, Z)
    with _amp(wm):
        recon = obs_model.decode(z).float()  # (B, ℓ, F, 64, 64)
    dec_loss, dec_metrics = losses.decoder_loss(recon, obs, cfg.obs.decoder_coef)
    ent_loss, ent_metrics = losses.latent_entropy_loss(z_logits, cfg.obs.entropy_coef, cfg.obs.entropy_threshold)

    z = torch.cat([context_z, z.detach()], dim=1)  # (B, ℓ+1, Z): z is detached before entering ψ
    target_logits = torch.cat([z_logits[:, 1:].detach(), next_logits], dim=1)  # (B, ℓ, C, K)
    dyn_loss, dyn_metrics, predicted_probs = _dynamics_loss(
        wm, z, batch.actions, batch.rewards, batch.terminated, batch.truncated, target_logits)
    dyn_metrics["dyn_grad_norm"] = optimizer_step(optimizers.dyn, dyn_loss, cfg.dyn.grad_clip)  # ψ first

    con_loss, con_metrics = losses.consistency_loss(z_logits, predicted_probs, cfg.obs.consistency_coef)
    obs_loss = dec_loss + ent_loss + con_loss
    obs_metrics = {"obs_loss": obs_loss.detach(),
                   "obs_grad_norm": optimizer_step(optimizers.obs, obs_loss, cfg.obs.grad_clip)}
    return z, {**dec_metrics, **ent_metrics, **con_metrics, **dyn_metrics, **obs_metrics}


def pretrain_obs_update(wm: WorldModel, optimizers: WorldModelOptimizers,
                        obs: torch.Tensor) -> Metrics:
    """Pretraining step of φ on single observations: decoder + entropy, no consistency (reference
    `optimize_pretrain_obs`).

    Shapes: obs (B, 1, F, 64, 64) uint8
    """
    cfg = wm.cfg
    apply_performance_settings(cfg.train, wm)
    wm.obs_model.train()
    x = wm.obs_model.preprocess(obs)
    with _amp(wm):
        z_logits = wm.obs_model.encode(x).float()
    z = wm.obs_model.sample(z_logits, straight_through=True)
    with _amp(wm):
        recon = wm.obs_model.decode(z).float()
    dec_loss, dec_metrics = losses.decoder_loss(recon, x, cfg.obs.decoder_coef)
    ent_loss, ent_metrics = losses.latent_entropy_loss(z_logits, cfg.obs.entropy_coef, cfg.obs.entropy_threshold)
    obs_loss = dec_loss + ent_loss
    grad_norm = optimizer_step(optimizers.obs, obs_loss, cfg.obs.grad_clip)
    return {**dec_metrics, **ent_metrics, "obs_loss": obs_loss.detach(), "obs_grad_norm": grad_norm}


def pretrain_dyn_update(wm: WorldModel, optimizers: WorldModelOptimizers, z: torch.Tensor, actions: torch.Tensor,
                        rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                        target_logits: torch.Tensor) -> Metrics:
    """Pretraining step of ψ on latents sampled from cached encoder logits (reference `optimize_pretrain_dyn`).

    Shapes: z, actions, rewards, terminated, truncated with ℓ+1 steps; target_logits (B, ℓ, C, K)
    """
    apply_performance_settings(wm.cfg.train, wm)
    wm.dyn_model.train()
    loss, metrics, _ = _dynamics_loss(wm, z, actions, rewards, terminated, truncated, target_logits)
    metrics["dyn_grad_norm"] = optimizer_step(optimizers.dyn, loss, wm.cfg.dyn.grad_clip)
    return metrics
