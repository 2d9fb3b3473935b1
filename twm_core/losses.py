"""Loss functions of the world model (paper Eqs. 3-4, method.md §5.1), pure: tensors in, `(loss, metrics)` out.

Metrics are detached scalar tensors (call `.item()` only when logging, to avoid a GPU sync per step). Metric names
follow the reference's wandb keys (method.md §6.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Metrics = dict[str, torch.Tensor]
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log N(target; mean, 1), elementwise (the constant included, as torch.distributions.Normal)."""
    return 0.5 * (target - mean) ** 2 + HALF_LOG_2PI


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of independent categoricals summed over them.

    Shapes: (..., C, K) -> (...)
    """
    log_probs = logits.log_softmax(-1)
    return -(log_probs.exp() * log_probs).sum(-1).sum(-1)


def decoder_loss(recon: torch.Tensor, obs: torch.Tensor, coef: float = 1.0) -> tuple[torch.Tensor, Metrics]:
    """Unit-variance Gaussian NLL of the stacked frames, summed over pixels and averaged over (B, T).

    Computed as one summed squared error (`F.mse_loss`) plus the constant, `0.5·Σ(obs - recon)² / (B·T) +
    F·64·64·log(2π)/2`: the value and gradient of `gaussian_nll` summed over the pixels, up to float rounding
    (tests/core/test_losses.py), in one pass over the frames instead of five.
    Shapes: recon (B, T, F, 64, 64), obs (B, T, F, 64, 64) floats in [0, 1]
    """
    steps, pixels = recon.shape[0] * recon.shape[1], math.prod(recon.shape[2:])  # B·T, F·64·64
    nll = 0.5 * F.mse_loss(recon, obs, reduction="sum") / steps + HALF_LOG_2PI * pixels
    loss = coef * nll
    return loss, {"dec_loss": loss.detach(), "recon_mae": F.l1_loss(recon.detach(), obs)}


def latent_entropy_loss(logits: torch.Tensor, coef: float, threshold: float) -> tuple[torch.Tensor, Metrics]:
    """Hinge on the normalised latent entropy: coef · relu(threshold − H(z) / (C ln K)) (α1 term of Eq. 3).

    A threshold >= 1 gives plain maximisation, −coef · H(z) / (C ln K), as the reference.
    Shapes: logits (B, T, C, K)
    """
    entropy = categorical_entropy(logits).mean()
    normalized = entropy / (logits.shape[-2] * math.log(logits.shape[-1]))
    if threshold < 1:
        loss = coef * torch.relu(threshold - normalized)
    else:
        loss = -coef * normalized
    return loss, {"z_ent": entropy.detach(), "z_norm_ent": normalized.detach(), "z_entropy_loss": loss.detach()}


def consistency_loss(encoder_logits: torch.Tensor, predicted_probs: torch.Tensor,
                     coef: float) -> tuple[torch.Tensor, Metrics]:
    """α2 · H(p_ψ(ẑ_t | h_{t-1}), q_φ(z_t | o_t)): pulls the encoder towards the (detached) dynamics prediction.

    Shapes: encoder_logits (B, T, C, K), predicted_probs (B, T, C, K) detached
    """
    cross_entropy = -(predicted_probs.detach() * encoder_logits.log_softmax(-1)).sum(-1).sum(-1)  # (B, T)
    loss = coef * cross_entropy.mean()
    return loss, {"enc_prior_ce": cross_entropy.detach().mean(), "enc_prior_loss": loss.detach()}


def dynamics_loss(predicted_logits: torch.Tensor, predicted_reward: torch.Tensor, discount_logit: torch.Tensor,
                  target_logits: torch.Tensor, target_reward: torch.Tensor, target_discount: torch.Tensor,
                  target_weights: torch.Tensor, *, z_coef: float, reward_coef: float,
                  discount_coef: float, z_in_loss: bool = True) -> tuple[torch.Tensor, Metrics]:
    """Eq. 4: next-latent cross-entropy (masked after dones), reward NLL (β1) and discount NLL (β2).

    The latent CE H(q_φ(z_{t+1}|o_{t+1}), p_ψ(ẑ_{t+1}|h_t)) sums over the C categoricals and is averaged with
    `target_weights` (0 after a done, where the next observation is a reset). Reward and discount are not masked;
    the discount target is soft: γ for non-terminal steps, 0 at terminations (truncation keeps γ).
    `z_in_loss=False` is the published code (jrobine/twm#4): the CE is only a metric (`z_pred_ce`, no
    `z_pred_loss`) and no gradient reaches `predicted_logits`.
    Shapes: predicted_logits, target_logits (B, T, C, K); the rest (B, T)
    """
    log_p = (predicted_logits if z_in_loss else predicted_logits.detach()).log_softmax(-1)
    target_log_q = target_logits.detach().log_softmax(-1)
    target_q = target_log_q.exp()
    cross_entropy = -(target_q * log_p).sum(-1).sum(-1)  # (B, T)
    # Weighted mean; the clamp only matters when every target is masked (the reference would give NaN).
    weighted_ce = (target_weights * cross_entropy).sum() / target_weights.sum().clamp(min=1e-8)
    z_loss = z_coef * weighted_ce
    reward_loss = reward_coef * gaussian_nll(predicted_reward, target_reward).mean()
    discount_nll = F.binary_cross_entropy_with_logits(discount_logit, target_discount, reduction="mean")
    discount_loss = discount_coef * discount_nll
    loss = (z_loss + reward_loss + discount_loss) if z_in_loss else (reward_loss + discount_loss)

    discount = torch.sigmoid(discount_logit.detach()).clamp(0, 1)
    # z_kl as the reference logs it: mean over all elements of q·(log q − log p), clipped at 0. Not optimised.
    z_kl = torch.relu((target_q * (target_log_q - log_p.detach())).mean())
    metrics = {
        "z_pred_loss": z_loss.detach(),
        "z_pred_ent": categorical_entropy(predicted_logits.detach()).mean(),
        "z_pred_ce": weighted_ce.detach(),
        "z_kl": z_kl,
        "reward_loss": reward_loss.detach(),
        "reward_mae": (target_reward - predicted_reward.detach()).abs().mean(),
        "reward": predicted_reward.detach().mean(),
        "discount_loss": discount_loss.detach(),
        "discount_mae": (target_discount - discount).abs().mean(),
        "discount": discount.mean(),
        "dyn_loss": loss.detach(),
    }
    if not z_in_loss:
        del metrics["z_pred_loss"]
    return loss, metrics


# ---------------------------------------------------------------------------------------------------------------------
# Actor-critic (paper §2.2, Eq. 5; method.md §5.2)
# ---------------------------------------------------------------------------------------------------------------------
def gae_advantages(rewards: torch.Tensor, discounts: torch.Tensor, dones: torch.Tensor, values: torch.Tensor,
                   lam: float) -> torch.Tensor:
    """GAE(λ) with the world model's *predicted* discounts γ̂_t, stopped at dones.

    δ_t = r_t + γ̂_t(1−d_t)V_{t+1} − V_t,  A_t = δ_t + λγ̂_t(1−d_t)A_{t+1},  A_H = 0.
    Shapes: rewards, discounts, dones (B, H); values (B, H+1) -> advantages (B, H)
    """
    if values.shape[1] != rewards.shape[1] + 1:
        raise ValueError(f"values need one more step than rewards: {tuple(values.shape)} vs {tuple(rewards.shape)}")
    stopped = discounts * (~dones.bool()).float()
    delta = rewards + stopped * values[:, 1:] - values[:, :-1]
    advantages = torch.zeros_like(values)
    for t in range(rewards.shape[1] - 1, -1, -1):
        advantages[:, t] = delta[:, t] + lam * stopped[:, t] * advantages[:, t + 1]
    return advantages[:, :-1]


def critic_loss(values: torch.Tensor, returns: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """−mean(w_t · log N(R_t; V_t, 1)): a weighted MSE/2 towards the λ-returns.

    Shapes: (B, H) each
    """
    loss = (weights.detach() * gaussian_nll(values, returns.detach())).mean()
    return loss, {"critic_loss": loss.detach(), "critic_mae": (returns - values.detach()).abs().mean(),
                  "critic": values.detach().mean(), "returns": returns.detach().mean()}


def policy_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shapes: (..., A) -> (...)"""
    log_probs = logits.log_softmax(-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def thresholded_entropy_loss(normalized_entropy: torch.Tensor, coef: float, threshold: float) -> torch.Tensor:
    """Paper Eq. 5: coef · max(0, Γ − H(π)/ln m): zero above Γ, linear below."""
    return coef * torch.relu(threshold - normalized_entropy)


def actor_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, weights: torch.Tensor,
               entropy_coef: float, entropy_threshold: float) -> tuple[torch.Tensor, Metrics]:
    """REINFORCE with GAE advantages, weighted by cumulative discounts, plus the thresholded entropy loss.

    Shapes: logits (B, H, A); actions, advantages, weights (B, H)
    """
    log_probs = logits.log_softmax(-1)
    log_prob = log_probs.gather(-1, actions[..., None]).squeeze(-1)  # (B, H)
    reinforce = (weights.detach() * log_prob * advantages.detach()).mean()
    entropy = weights.detach() * policy_entropy(logits)  # (B, H)
    normalized = (entropy / math.log(logits.shape[-1])).mean()
    loss = -reinforce + thresholded_entropy_loss(normalized, entropy_coef, entropy_threshold)
    return loss, {"actor_loss": loss.detach(), "reinforce": reinforce.detach(), "ent": entropy.detach().mean(),
                  "norm_ent": normalized.detach()}


def actor_pretrain_loss(logits: torch.Tensor, entropy_coef: float) -> tuple[torch.Tensor, Metrics]:
    """Pretraining on random-policy data: only maximise the normalised entropy (reference optimize_pretrain).

    Shapes: logits (B, T, A)
    """
    entropy = policy_entropy(logits).mean()
    normalized = entropy / math.log(logits.shape[-1])
    loss = -entropy_coef * normalized
    return loss, {"actor_loss": loss.detach(), "ent": entropy.detach(), "norm_ent": normalized.detach()}
