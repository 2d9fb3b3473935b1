"""ModelRegistry: an LRU cache of eval-mode models, keyed by (run_id, checkpoint step).

A request for a run's checkpoint ('latest' or a step) resolves the step first, so 'latest' and the same step
share one entry. Loads go through `load_checkpoint` (`torch.load(weights_only=True)`), rebuild the model from the
checkpoint's own config (never from the live config.json, which a resumed run may have changed), and put it on
the settings' device in eval mode (no dropout: rollouts are deterministic given a seed).

Threads: FastAPI runs the model work in its threadpool, so `get` is thread-safe. One lock guards the cache and a
per-key lock makes concurrent requests for the same checkpoint load it once. `inference_lock` serialises model
work: the services reseed torch's global RNG (inside `fork_rng`), which two threads must not do at once.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backend.settings import Settings
from twm_core.run_dir import RunDir

if TYPE_CHECKING:  # torch and the models load on the first model request, not with the app
    import torch

    from twm_core.config import TWMConfig
    from twm_core.models.actor_critic import ActorCritic
    from twm_core.replay import ReplayBuffer
    from twm_core.world_model import WorldModel

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a plain directory name: no '/', no '..'
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


class RunNotFoundError(LookupError):
    """No run directory of that id under the runs directory."""


@dataclass
class LoadedModel:
    """One checkpoint, ready for inference: config, world model and actor-critic in eval mode on `device`."""

    run_id: str
    step: int
    run_dir: RunDir
    config: TWMConfig
    num_actions: int
    world_model: WorldModel
    actor_critic: ActorCritic
    device: torch.device
    replay_size: int
    """Rows of the run's replay buffer that this checkpoint had seen (the buffer is loaded up to here)."""
    _replay: ReplayBuffer | None = field(default=None, repr=False)
    _meanings: list[str] | None = field(default=None, repr=False)
    _lazy_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def replay(self) -> ReplayBuffer:
        """The run's replay buffer as of this checkpoint (chunks up to `replay_size`), loaded once on first use.

        Raises ValueError when the run has no replay chunks (or fewer rows than the checkpoint saw).
        """
        from twm_core.replay import ReplayBuffer

        with self._lazy_lock:
            if self._replay is None:
                # capacity = the rows loaded, not cfg.replay.capacity: no need to preallocate 100k frames
                self._replay = ReplayBuffer.load(
                    self.run_dir.replay_dir, capacity=max(self.replay_size, 1), upto=self.replay_size,
                    frame_stack=self.config.env.frame_stack, frame_size=self.config.env.frame_size)
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


class ModelRegistry:
    """Bounded LRU of `LoadedModel`s (`settings.max_loaded_models`) on `settings.resolved_device()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.capacity = settings.max_loaded_models
        self.inference_lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self._lock = threading.Lock()

    def run_dir(self, run_id: str) -> RunDir:
        """The run directory of `run_id`; RunNotFoundError if it is not a directory directly under runs_dir."""
        if not _RUN_ID_RE.match(run_id):
            raise RunNotFoundError(f"invalid run id {run_id!r}")
        run = RunDir(self.settings.runs_dir / run_id)
        if not run.exists():
            raise RunNotFoundError(f"no run {run_id!r} in {self.settings.runs_dir}")
        return run

    def resolve(self, run_id: str, checkpoint: int | str = "latest") -> tuple[RunDir, int, Path]:
        """(run dir, step, path) of a checkpoint; raises RunNotFoundError or CheckpointNotFoundError."""
        from twm_core.checkpoint import resolve_checkpoint

        run = self.run_dir(run_id)
        path = resolve_checkpoint(run, checkpoint)
        match = _STEP_RE.match(path.name)
        assert match is not None, path  # resolve_checkpoint only returns step_*.pt files
        return run, int(match.group(1)), path

    def get(self, run_id: str, checkpoint: int | str = "latest") -> LoadedModel:
        """The model of a run's checkpoint ('latest' or a step), loading it on a miss (and evicting the LRU)."""
        run, step, path = self.resolve(run_id, checkpoint)
        key = (run_id, step)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # requests for the same checkpoint wait here for one load
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            try:
                model = self._load(run, step, path)
                with self._lock:
                    self._cache[key] = model
                    while len(self._cache) > self.capacity:
                        self._cache.popitem(last=False)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            return model

    def cached_keys(self) -> list[tuple[str, int]]:
        """Keys in the cache, least recently used first."""
        with self._lock:
            return list(self._cache)

    def _load(self, run: RunDir, step: int, path: Path) -> LoadedModel:
        import torch

        from twm_core.checkpoint import CheckpointError, load_checkpoint
        from twm_core.config import TWMConfig
        from twm_core.models.actor_critic import ActorCritic
        from twm_core.world_model import WorldModel

        device = torch.device(self.settings.resolved_device())
        state = load_checkpoint(path, map_location=device)
        missing = [key for key in ("config", "num_actions", "world_model", "actor_critic") if key not in state]
        if missing:
            raise CheckpointError(f"{path}: checkpoint lacks {missing}")
        try:  # a file torch can read may still hold a bad config or weights that do not fit: not a server fault
            cfg = TWMConfig.from_dict(state["config"])
            num_actions = int(state["num_actions"])
            wm = WorldModel(cfg, num_actions)
            ac = ActorCritic(cfg.ac, num_actions, wm.z_dim, wm.h_dim)
            wm.load_state_dict(state["world_model"])
            ac.load_state_dict(state["actor_critic"])
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:  # ConfigError is a ValueError
            raise CheckpointError(f"{path}: cannot rebuild the model ({type(exc).__name__}: {exc})") from exc
        wm.to(device).eval().requires_grad_(False)
        ac.to(device).eval().requires_grad_(False)
        replay_state = state.get("replay")
        replay_size = int(replay_state["size"]) if isinstance(replay_state, dict) and "size" in replay_state else step
        return LoadedModel(run_id=run.run_id, step=step, run_dir=run, config=cfg, num_actions=num_actions,
                           world_model=wm, actor_critic=ac, device=device, replay_size=replay_size)
