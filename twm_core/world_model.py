"""World model = observation model φ + dynamics model ψ (no shared parameters, separate optimizers)."""

from __future__ import annotations

import torch
from torch import nn

from twm_core.config import TWMConfig
from twm_core.models.dynamics import DynamicsModel
from twm_core.models.observation import ObservationModel


class WorldModel(nn.Module):
    """The pair (φ, ψ) built from one config for a game with `num_actions` actions."""

    def __init__(self, cfg: TWMConfig, num_actions: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_actions = num_actions
        self.obs_model = ObservationModel(cfg.obs, cfg.env.frame_stack)
        self.dyn_model = DynamicsModel(cfg.dyn, num_actions, cfg.obs.z_categoricals, cfg.obs.z_categories,
                                       cfg.env.discount_factor)

    @property
    def z_dim(self) -> int:
        return self.cfg.obs.z_dim

    @property
    def h_dim(self) -> int:
        return self.cfg.dyn.embed_dim

    def discounts(self, terminated: torch.Tensor) -> torch.Tensor:
        """Discount targets: γ for non-terminal steps, 0 at terminations (truncation keeps γ)."""
        return self.cfg.env.discount_factor * (~terminated.bool()).float()
