"""Acting in the real environment (method.md §4.4 "Policy at inference", §6.4).

The observation stack is encoded with temperature 0 (argmax of each categorical) and the action is *sampled* from
the policy (temperature 1, no ε-greedy). With the reference's `ac.input_h = False` the transformer is not run at
all; with the [z, h] ablation the dynamics model reads the real transitions through its incremental path (episode
boundaries handled by its done mask), and the policy sees h_{t-1}, as in the imagination.
"""

from __future__ import annotations

import numpy as np
import torch

from twm_core.models.actor_critic import ActorCritic
from twm_core.models.dynamics import DynamicsMemory
from twm_core.performance import apply_performance_settings, autocast
from twm_core.world_model import WorldModel


def _eval(*modules: torch.nn.Module) -> None:
    """`module.eval()` only where some submodule is in training mode: the recursive `eval()` of the world model
    costs about 0.9 ms of a 6 ms single-observation action on a CPU (nn.Module.__setattr__ on ~100 modules)."""
    for module in modules:
        if any(m.training for m in module.modules()):
            module.eval()


class PolicyRunner:
    """Acts for a batch of B environments stepping in lockstep."""

    def __init__(self, wm: WorldModel, ac: ActorCritic, batch_size: int, device: torch.device) -> None:
        self.wm, self.ac, self.batch_size, self.device = wm, ac, batch_size, device
        apply_performance_settings(wm.cfg.train, wm, ac)
        self.reset()

    def reset(self) -> None:
        """Forget the history (only used with `input_h`)."""
        self._memory: DynamicsMemory | None = None
        self._last_z: torch.Tensor | None = None
        self._last_a: torch.Tensor | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # reward, done of the transition before

    @torch.inference_mode()  # no autograd bookkeeping at all (the results leave as numpy arrays)
    def act(self, obs: np.ndarray | torch.Tensor, rewards: np.ndarray | None = None,
            dones: np.ndarray | None = None, generator: torch.Generator | None = None,
            temperature: float = 1.0) -> np.ndarray:
        """Actions for the current observations; `rewards`/`dones` are those of the transition that led here
        (transformed rewards; needed only with `input_h`). `generator` draws the actions (default: global RNG).
        `temperature` 1 samples from the policy, as the reference acts and evaluates; 0 takes its argmax.

        Shapes: obs (B, F, 64, 64) uint8 -> (B,) int64
        """
        _eval(self.wm.obs_model, self.ac, *((self.wm.dyn_model,) if self.ac.cfg.input_h else ()))
        obs_t = torch.as_tensor(obs, device=self.device)[:, None]  # (B, 1, F, 64, 64)
        with autocast(self.wm.cfg.train.amp, self.device):
            z = self.wm.obs_model.encode_sample(obs_t, temperature=0).float()  # (B, 1, Z)
            h = None
            if self.ac.cfg.input_h:
                h = self._observe(rewards, dones)
            actions = self.ac.act(self.ac.inputs(z, h), temperature, generator=generator)  # (B, 1)
        self._last_z, self._last_a = z, actions
        return actions[:, 0].cpu().numpy()

    def _observe(self, rewards: np.ndarray | None, dones: np.ndarray | None) -> torch.Tensor:
        """Feed (r_{t-2}, z_{t-1}, a_{t-1}) and return h_{t-1} (zeros before the first action)."""
        if self._last_z is None:
            return torch.zeros(self.batch_size, 1, self.wm.h_dim, device=self.device)
        assert self._last_a is not None  # set with _last_z
        prev_r, prev_d = self._pending if self._pending is not None else (None, None)
        out, self._memory = self.wm.dyn_model.step(self._memory, self._last_z, self._last_a, prev_r, prev_d,
                                                   heads=False)  # only h is used
        if rewards is None or dones is None:
            raise ValueError("input_h needs the rewards and dones of each transition")
        self._pending = (torch.as_tensor(rewards, dtype=torch.float32, device=self.device).reshape(-1, 1),
                         torch.as_tensor(dones, dtype=torch.bool, device=self.device).reshape(-1, 1))
        return out.hidden.float()
