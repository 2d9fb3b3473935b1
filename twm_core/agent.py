"""A loaded agent: one checkpoint's world model and actor-critic, ready for inference (eval, inspection, bench).

`load_agent(path)` is the one way to rebuild the models from a checkpoint: `load_checkpoint` (`weights_only=True`),
the model built from the checkpoint's own config (never from the live config.json, which a resumed run may have
changed), the weights loaded, both models in eval mode without gradients on `device`, and the performance settings
of the config applied once (so no caller mutates modules per request). The weights must be finite: a diverged run
saves NaN weights, which would give NaN frames and NaN probabilities downstream.

An `Agent` is safe to use from several threads at once: inference only reads the modules; the lazily loaded replay
buffer and action names are built under a lock.
"""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from twm_core.checkpoint import CheckpointError, load_checkpoint
from twm_core.config import TWMConfig
from twm_core.models.actor_critic import ActorCritic
from twm_core.performance import apply_performance_settings
from twm_core.replay import ReplayBuffer
from twm_core.run_dir import RunDir
from twm_core.world_model import WorldModel


@dataclass
class Agent:
    """World model and actor-critic of one checkpoint (or freshly built, `step` 0) in eval mode on `device`."""

    config: TWMConfig
    num_actions: int
    world_model: WorldModel
    actor_critic: ActorCritic
    device: torch.device
    step: int = 0
    run_dir: RunDir | None = None
    replay_size: int = 0
    """Rows of the run's replay buffer that this checkpoint had seen (the buffer is loaded up to here)."""
    _replay: ReplayBuffer | None = field(default=None, repr=False)
    _meanings: list[str] | None = field(default=None, repr=False)
    _lazy_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, cfg: TWMConfig, num_actions: int, device: str | torch.device = "cpu",
              state: dict | None = None, **fields: object) -> Agent:
        """Models of `cfg`, with the `world_model`/`actor_critic` weights of `state` if given (else initial)."""
        wm = WorldModel(cfg, num_actions)
        ac = ActorCritic(cfg.ac, num_actions, wm.z_dim, wm.h_dim)
        if state is not None:
            wm.load_state_dict(state["world_model"])
            ac.load_state_dict(state["actor_critic"])
        device = torch.device(device)
        wm.to(device).eval().requires_grad_(False)
        ac.to(device).eval().requires_grad_(False)
        apply_performance_settings(cfg.train, wm, ac)
        return cls(config=cfg, num_actions=num_actions, world_model=wm, actor_critic=ac, device=device,
                   **fields)  # type: ignore[arg-type]

    @property
    def run_id(self) -> str:
        return self.run_dir.run_id if self.run_dir is not None else ""

    def replay(self) -> ReplayBuffer:
        """The run's replay buffer as of this checkpoint (chunks up to `replay_size`), loaded once on first use.

        Raises ValueError when the run has no replay data, fewer rows than the checkpoint saw, or chunks that cannot
        be read (a truncated or corrupt file: only this agent's replay starts and restarts are affected).
        """
        with self._lazy_lock:
            if self._replay is None:
                if self.run_dir is None or self.replay_size < 1:
                    raise ValueError("this agent has no replay data")
                try:  # capacity = the rows loaded, not cfg.replay.capacity: no need to preallocate 100k frames
                    self._replay = ReplayBuffer.load(
                        self.run_dir.replay_dir, capacity=self.replay_size, upto=self.replay_size,
                        frame_stack=self.config.env.frame_stack, frame_size=self.config.env.frame_size)
                except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
                    raise ValueError(f"replay data cannot be read ({type(exc).__name__})") from exc  # no paths
                except ValueError as exc:  # name the directory relative to the runs directory
                    replay_dir = self.run_dir.replay_dir
                    raise ValueError(str(exc).replace(str(replay_dir), self.run_dir.name_of(replay_dir))) from exc
            return self._replay

    def action_meanings(self) -> list[str]:
        """Names of the game's actions in index order (read once from a throwaway env)."""
        from twm_core.envs import action_meanings, make_env

        with self._lazy_lock:
            if self._meanings is None:
                env = make_env(self.config.env, seed=0, eval=True)
                try:
                    self._meanings = action_meanings(env)
                finally:
                    env.close()
            return self._meanings


def load_agent(path: Path, device: str | torch.device = "cpu", run_dir: RunDir | None = None,
               step: int | None = None) -> Agent:
    """The agent of the checkpoint at `path`. Raises FileNotFoundError, or CheckpointError for a file that cannot
    be read or whose config, weights or shapes do not make a usable model (with the reason)."""
    state = load_checkpoint(path, map_location=device)
    missing = [key for key in ("config", "num_actions", "world_model", "actor_critic") if key not in state]
    if missing:
        raise CheckpointError(f"{Path(path).name}: checkpoint lacks {missing}")
    try:  # a file torch can read may still hold a bad config or weights that do not fit: not a server fault
        cfg = TWMConfig.from_dict(state["config"])
        num_actions = int(state["num_actions"])
        replay_state = state.get("replay")
        step = int(state.get("step", 0)) if step is None else step
        replay_size = int(replay_state["size"]) if isinstance(replay_state, dict) and "size" in replay_state else step
        agent = Agent.build(cfg, num_actions, device, state, step=step, run_dir=run_dir, replay_size=replay_size)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:  # ConfigError is a ValueError
        raise CheckpointError(f"{Path(path).name}: cannot rebuild the model ({type(exc).__name__}: {exc})") from exc
    bad = [name for module in (agent.world_model, agent.actor_critic)
           for name, p in module.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise CheckpointError(f"{Path(path).name}: non-finite weights in {bad[:3]} (a diverged run?)")
    return agent
