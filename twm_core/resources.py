"""What a config costs before it runs: parameter counts and a memory estimate of training.

`estimate_memory(cfg, num_actions)` is the bytes one `Trainer` needs, as a sum of four terms:

    replay      = (capacity + 1) · (S² + 1 + 8)  +  capacity · (8 + 4 + 1 + 1 + 8)
                  one uint8 S×S frame, a stack-reset flag and a stack-start index per row (+1 row for the newest
                  observation), then action, reward, terminated, truncated and visit count (`ReplayBuffer.__init__`)
    parameters  = 4 · P                 P = numel of WorldModel + ActorCritic (built on the meta device: exact,
                                        nothing allocated), float32
    training    = 3 · 4 · P             one gradient and Adam's two moments per parameter
    activations = 2 · 4 · A             A = floats kept for the backward pass of the largest batch (×2: their
                                        gradients), the sum of
                  obs model:  N·(ℓ+2) frames · (F·S² input + 2 · 1920·h)   (encoder feature maps h·32² + 2h·16² +
                                        4h·8² + 8h·4² = 1920·h per frame, and as many in the decoder)
                  dynamics:   L · N · Tq · (H·Tk + 4·D + FF)   (attention scores per head and the q, k, v, output
                                        and feed-forward activations of each layer; Tq = k·(ℓ+1) tokens of k per
                                        step, Tk = Tq + memory tokens)
                  imagination: M · (Hz+1) · (Σ actor dims + Σ critic dims + Σ z-head dims + D)

Rough on purpose: the activation term is an order of magnitude (within ~2×), the replay and parameter terms are
exact. The replay buffer lives in host memory; parameters, optimizer state and activations live on the training
device (`MemoryEstimate.host` / `.device`). `num_actions` only sizes the action embedding and the policy's output;
the full Atari action set (18) is an upper bound for every game.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from twm_core.config import TWMConfig

MAX_ACTIONS = 18
"""The full ALE action set: an upper bound of `num_actions` for every game."""
MAX_LAYERS = 256
"""Most layers a network may have (`dyn.num_layers`, the length of each `*_dims`): the models are built, on the meta
device, one module per layer, so a count in the millions would take minutes to build even without memory."""
_FLOAT = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each term of `estimate_memory` (see the module docstring for the formula)."""

    replay: int
    parameters: int
    optimizer: int
    activations: int
    num_parameters: int

    @property
    def host(self) -> int:
        """Bytes in host memory whatever the device: the replay buffer."""
        return self.replay

    @property
    def device(self) -> int:
        """Bytes on the training device: parameters, gradients, Adam state and activations."""
        return self.parameters + self.optimizer + self.activations

    @property
    def total(self) -> int:
        return self.host + self.device


def check_layer_counts(cfg: TWMConfig) -> None:
    """Raise ValueError naming the field when a network has more than `MAX_LAYERS` layers."""
    counts = {"dyn.num_layers": cfg.dyn.num_layers, "obs.mlp_dims": len(cfg.obs.mlp_dims),
              "dyn.z_dims": len(cfg.dyn.z_dims), "dyn.reward_dims": len(cfg.dyn.reward_dims),
              "dyn.discount_dims": len(cfg.dyn.discount_dims), "ac.actor_dims": len(cfg.ac.actor_dims),
              "ac.critic_dims": len(cfg.ac.critic_dims)}
    for name, count in counts.items():
        if count > MAX_LAYERS:
            raise ValueError(f"{name}: at most {MAX_LAYERS} layers, got {count}")


def count_parameters(cfg: TWMConfig, num_actions: int = MAX_ACTIONS) -> dict[str, int]:
    """Parameter counts of `obs_model`, `dyn_model` and `actor_critic`, from models built on the meta device.

    Cached by the sizes alone (the game, seed and preset name change no count), so a sweep of 130 jobs builds the
    models once per distinct size, not once per job."""
    check_layer_counts(cfg)
    sizes_only = replace(cfg, seed=0, preset="", env=replace(cfg.env, game="-"))
    return dict(_count_parameters(sizes_only, num_actions))


@lru_cache(maxsize=32)
def _count_parameters(cfg: TWMConfig, num_actions: int) -> tuple[tuple[str, int], ...]:
    from twm_core.models.actor_critic import ActorCritic  # lazy: the models import more than this module needs
    from twm_core.world_model import WorldModel

    with torch.device("meta"):
        wm = WorldModel(cfg, num_actions)
        ac = ActorCritic(cfg.ac, num_actions, wm.z_dim, wm.h_dim)
    return tuple((name, sum(p.numel() for p in module.parameters()))
                 for name, module in (("obs_model", wm.obs_model), ("dyn_model", wm.dyn_model), ("actor_critic", ac)))


def replay_bytes(cfg: TWMConfig) -> int:
    """Bytes `ReplayBuffer(cfg.replay.capacity, ...)` preallocates (exact)."""
    n, size = cfg.replay.capacity, cfg.env.frame_size
    per_frame_row = size * size + 1 + 8  # uint8 frame, bool stack_reset, int64 stack_start
    per_row = 8 + 4 + 1 + 1 + 8  # int64 action, float32 reward, bool terminated, bool truncated, int64 visits
    return (n + 1) * per_frame_row + n * per_row


def activation_floats(cfg: TWMConfig) -> int:
    """Rough count of the float activations of one world-model update and one imagination batch."""
    n, seq, size, h = cfg.train.wm_batch_size, cfg.train.wm_sequence_length, cfg.env.frame_size, cfg.obs.channels
    frames = n * (seq + 2)
    obs = frames * (cfg.env.frame_stack * size * size + 2 * 1920 * h)
    d = cfg.dyn
    tq = d.tokens_per_step * (seq + 1)
    tk = tq + d.memory_length * d.tokens_per_step + 2
    dyn = d.num_layers * n * tq * (d.num_heads * tk + 4 * d.embed_dim + d.feedforward_dim)
    widths = sum(cfg.ac.actor_dims) + sum(cfg.ac.critic_dims) + sum(d.z_dims) + d.embed_dim
    imagine = cfg.ac.batch_size * (cfg.ac.horizon + 1) * widths
    return obs + dyn + imagine


def memory_breakdown(cfg: TWMConfig, num_actions: int = MAX_ACTIONS) -> MemoryEstimate:
    """Each term of `estimate_memory`, in bytes."""
    params = sum(count_parameters(cfg, num_actions).values())
    return MemoryEstimate(replay=replay_bytes(cfg), parameters=_FLOAT * params, optimizer=3 * _FLOAT * params,
                          activations=2 * _FLOAT * activation_floats(cfg), num_parameters=params)


def estimate_memory(cfg: TWMConfig, num_actions: int = MAX_ACTIONS) -> int:
    """Estimated bytes of training `cfg` (replay + parameters + gradients and Adam state + activations)."""
    return memory_breakdown(cfg, num_actions).total
