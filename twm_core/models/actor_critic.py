"""Actor π_θ(a | x) and critic v_ξ(x) on x = z (reference) or [z, h] (ablation), method.md §4.5.

Both are MLPs x→512×4 (SiLU) with orthogonal init (ReLU gain, linear gain on the output) and zero biases. The
optional target critic is a hard copy refreshed every `critic_target_interval` updates (none at interval 1).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from twm_core.config import ActorCriticConfig
from twm_core.models.layers import MLP


class ActorCritic(nn.Module):
    """Policy and value networks; no optimizers inside (the trainer owns them)."""

    def __init__(self, cfg: ActorCriticConfig, num_actions: int, z_dim: int, h_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_actions = num_actions
        in_dim = z_dim + (h_dim if cfg.input_h else 0)
        self.actor = MLP(in_dim, cfg.actor_dims, num_actions, orthogonal=True)
        self.critic = MLP(in_dim, cfg.critic_dims, 1, orthogonal=True)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False) \
            if cfg.critic_target_interval > 1 else None
        self.amp = "none"
        """Runtime setting (`TrainConfig.amp`, set by `apply_performance_settings`): autocast of the updates."""

    def inputs(self, z: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """The policy's view of the state: z, or [z, h] when `input_h`.

        Shapes: z (..., Z), h (..., D) -> (..., Z[+D])
        """
        if not self.cfg.input_h:
            return z
        if h is None:
            raise ValueError("input_h is set: the policy needs h")
        return torch.cat([z, h], dim=-1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: (..., X) -> (..., A)"""
        return self.actor(x)

    def value(self, x: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Shapes: (..., X) -> (...)"""
        net = self.target_critic if target and self.target_critic is not None else self.critic
        return net(x).squeeze(-1)

    @torch.no_grad()
    def act(self, x: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample actions (temperature 1, as the reference acts and evaluates); 0 takes the argmax. `generator`
        draws the sample (default: torch's global RNG).

        Shapes: (..., X) -> (...) int64
        """
        logits = self.logits(x)
        if temperature == 0:
            return logits.argmax(-1)
        probs = (logits if temperature == 1 else logits / temperature).softmax(-1)  # x / 1.0 == x exactly
        flat = probs.reshape(-1, probs.shape[-1])  # (N, A)
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])

    def sync_target(self) -> None:
        if self.target_critic is not None:
            self.target_critic.load_state_dict(self.critic.state_dict())
