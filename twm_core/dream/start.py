"""Where a dream starts: the one real step of context imagination needs (method.md §4.4).

- `reset_start(agent, seed, policy_steps=k)`: the evaluation env (no no-op starts, all lives, so the start is a
  pure function of the seed) after one `reset()` and k policy steps (argmax z, sampled action, as `PolicyRunner`
  acts). The context step is (o_{t-1}, a_{t-1}, r_{t-1}) of the last policy step; with k = 0 there is none, so
  o_{t-1} = o_t, a_{t-1} = NOOP, r_{t-1} = 0 and no done, as the replay buffer pads its first row
  (`ReplayBuffer.get_data`). The env stays open, parked at the start, so a session can step it alongside.
- `replay_start(agent, index)`: row i of the run's replay buffer as of the checkpoint: o_{i-1}, o_i and row
  i-1's action, reward and done (row 0 padded as above), exactly the windows the trainer's imagination starts from.
  It has no emulator state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from twm_core.acting import PolicyRunner
from twm_core.agent import Agent
from twm_core.envs import EnvSnapshot, make_env, restore, snapshot, transform_reward
from twm_core.envs.builder import EnvBuilder
from twm_core.seeding import derive_seed

NOOP = 0  # index 0 is NOOP in every ALE minimal action set and in Catch


class DreamError(ValueError):
    """A dream cannot be started or continued as asked (its message is meant for the user)."""


@dataclass
class DreamStart:
    """The real context of a dream, and for reset starts the env parked at the start state.

    Shapes: obs (2, F, 64, 64) uint8 = o_{t-1}, o_t
    """

    obs: torch.Tensor
    action: int
    reward: float
    """r_{t-1} as the learner sees it (transformed)."""
    terminated: bool
    truncated: bool
    policy_actions: list[int] = field(default_factory=list)
    env: gym.Env | None = None
    snapshot: EnvSnapshot | None = None
    description: str = ""
    pool: StartCache | None = None
    """Where emulators come from and go back to (None: built and closed each time)."""

    def new_env(self, agent: Agent, seed: int) -> gym.Env:
        """An emulator for this dream's game (state: whatever `restore` puts in)."""
        return self.pool.acquire() if self.pool is not None else make_env(agent.config.env, seed=seed, eval=True)

    def release_env(self, env: gym.Env) -> None:
        if self.pool is not None:
            self.pool.release(env)
        else:
            env.close()

    def close(self) -> None:
        if self.env is not None:
            self.release_env(self.env)
            self.env = None


class StartCache:
    """Reset starts of one agent remembered by (seed, policy steps), and a pool of idle emulators.

    Building an ALE env loads the ROM twice (construction and first reset, ~0.1 s each on this CPU), more than a
    whole 16-step dream. A start seen before is served from its snapshot, restored into a pooled env: `restore`
    makes any env built with the same arguments bit-identical to the one snapshotted, so a cached start and a
    fresh one give the same real rollouts (tested). With a `builder`, a new start's env is built and reset in its
    helper process and restored into a pooled env, so this process never loads a ROM for it (see
    `twm_core.envs.builder` for why the backend needs that). Thread-safe.
    """

    def __init__(self, agent: Agent, max_starts: int = 256, max_idle: int = 4,
                 builder: EnvBuilder | None = None) -> None:
        self.agent, self.max_starts, self.max_idle, self.builder = agent, max_starts, max_idle, builder
        self._starts: OrderedDict[tuple[int, int], DreamStart] = OrderedDict()
        self._idle: list[gym.Env] = []
        self._lock = threading.Lock()

    def acquire(self) -> gym.Env:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return make_env(self.agent.config.env, seed=0, eval=True)

    def release(self, env: gym.Env) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(env)
                return
        env.close()

    def reset_start(self, seed: int, policy_steps: int = 0) -> DreamStart:
        """`reset_start(agent, seed, policy_steps)`, from the cache when this start was made before."""
        key = (seed, policy_steps)
        with self._lock:
            cached = self._starts.get(key)
            if cached is not None:
                self._starts.move_to_end(key)
        if cached is None:
            start = reset_start(self.agent, seed, policy_steps, pool=self)
            start.pool = self
            with self._lock:
                self._starts[key] = DreamStart(start.obs, start.action, start.reward, start.terminated,
                                               start.truncated, list(start.policy_actions), None, start.snapshot,
                                               start.description)
                while len(self._starts) > self.max_starts:
                    self._starts.popitem(last=False)
            return start
        env = self.acquire()
        assert cached.snapshot is not None
        restore(env, cached.snapshot)
        return DreamStart(cached.obs, cached.action, cached.reward, cached.terminated, cached.truncated,
                          list(cached.policy_actions), env, cached.snapshot, cached.description, self)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for env in idle:
            env.close()


def replay_start(agent: Agent, index: int) -> DreamStart:
    try:
        replay = agent.replay()
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise DreamError(f"run {agent.run_id or '(none)'} has no replay data to start from: {exc}") from exc
    if not 0 <= index < replay.size:
        raise DreamError(f"replay index must lie in [0, {replay.size}) at checkpoint {agent.step}, got {index}")
    data = replay.get_data(torch.tensor([index]), sequence_length=1, prefix=1, return_next_obs=False)
    return DreamStart(obs=data.obs[0], action=int(data.actions[0, 0]), reward=float(data.rewards[0, 0]),
                      terminated=bool(data.terminated[0, 0]), truncated=bool(data.truncated[0, 0]),
                      description=f"replay row {index}")


def reset_start(agent: Agent, seed: int, policy_steps: int = 0, pool: StartCache | None = None) -> DreamStart:
    cfg = agent.config
    builder = pool.builder if pool is not None else None
    env = pool.acquire() if pool is not None and builder is not None else make_env(cfg.env, seed=seed, eval=True)
    generator = torch.Generator(agent.device).manual_seed(derive_seed(seed, "dream/start"))
    try:
        if builder is not None:  # the state `make_env(seed)` + `reset()` gives, without a ROM load in this process
            obs, state = builder.reset_snapshot(cfg.env, seed)
            restore(env, state)
        else:
            obs, _ = env.reset()
        prev_obs, action, reward = obs, NOOP, 0.0
        runner = PolicyRunner(agent.world_model, agent.actor_critic, 1, agent.device)
        taken: list[int] = []
        for i in range(policy_steps):
            a = int(runner.act(np.asarray(obs)[None], np.array([reward]), np.array([False]), generator)[0])
            next_obs, r, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                raise DreamError(f"the episode ended after {i + 1} of {policy_steps} policy steps "
                                 f"(seed {seed}); ask for fewer policy steps")
            taken.append(a)
            prev_obs, action, reward, obs = obs, a, float(transform_reward(float(r), cfg.env)), next_obs
        pair = torch.as_tensor(np.stack([np.asarray(prev_obs), np.asarray(obs)]))  # (2, F, 64, 64)
        return DreamStart(obs=pair, action=action, reward=reward, terminated=False, truncated=False,
                          policy_actions=taken, env=env, snapshot=snapshot(env),
                          description=f"env reset (seed {seed}) + {policy_steps} policy steps")
    except BaseException:
        env.close()
        raise
