"""DreamSession: imagination one step at a time, for inspection — branchable, reproducible, beside the real env.

A session starts from a `DreamStart` (a real context step) and advances in O(1) per step through the dynamics
model's key/value cache (`imagine_step`, the training imagination's own step), never recomputing history. Point t
of a session holds the latent z_t, its decoded frame, the prior it was drawn from, and the transition that led to
it (a_{t-1}, r̂_{t-1}, γ̂_{t-1}, done); with a real start also the emulator's frame o_t after the same actions, the
encoder's posterior q(z_t | o_t) and the errors between the two.

Randomness: step t draws the policy action, ẑ_{t+1} and a restart latent from three `torch.Generator`s seeded with
`derive_seed(seed, "dream/act/t")`, `".../z/t"` and `".../restart/t"`, never from torch's global RNG. So the same
seed and inputs give the same rollout whatever else runs; a given action leaves ẑ's random numbers as a sampled
one would; and a fork continues with the same random numbers as its parent (common random numbers: two branches
differ only by what was changed; fork with another seed to resample).

Memory: every point keeps its memory (a `KVCache` view; a chain of steps shares buffers sized for many steps, about
4 tokens of keys and values per step), so forking at any point costs one copy of a window. Sessions are not
thread-safe: one caller at a time (the backend holds a lock per session).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from twm_core.agent import Agent
from twm_core.dream.start import DreamError, DreamStart
from twm_core.envs import EnvSnapshot, restore, snapshot, transform_reward
from twm_core.imagination import imagine_step
from twm_core.models.dynamics import DynamicsMemory
from twm_core.seeding import derive_seed

CHAIN_STEPS = 64
"""Steps one key/value buffer of a session serves before the window moves to a new one."""
MAX_STEPS = 10_000


@dataclass(frozen=True)
class RealStep:
    """The emulator after the same actions. Shapes: frame (64, 64) uint8 newest frame, posterior (C, K) probs"""

    frame: np.ndarray
    posterior: torch.Tensor
    reward: float | None
    """Raw game reward of the transition into this point (None at the start)."""
    reward_transformed: float | None
    """As the learner sees it (`transform_reward`), comparable with r̂."""
    done: bool
    snapshot: EnvSnapshot | None
    """Emulator state here (None once the episode is over: the real side stops)."""


@dataclass(frozen=True)
class StepErrors:
    """Imagined against real at one point: latent cross-entropy H(q_real, p_prior) summed over the categoricals
    (None where z was not drawn from a prior), |r̂ − r|, |γ̂ − γ·(1 − terminal)|, and the mean absolute pixel
    error of the decoded frame in [0, 1] units."""

    latent_ce: float | None
    reward: float | None
    discount: float | None
    pixel: float


@dataclass(frozen=True)
class DreamPoint:
    """Point t of a session: z_t and the state to step from it, and the transition t−1 → t (None at t = 0).

    Shapes: z (1, 1, Z) one-hot; prior (C, K) probs or None; frame (64, 64) uint8; hidden (1, 1, D) = h_{t-1};
    prev_reward, cumulative (1, 1); prev_done (1, 1) bool
    """

    step: int
    z: torch.Tensor
    prior: torch.Tensor | None
    frame: np.ndarray
    hidden: torch.Tensor
    memory: DynamicsMemory
    prev_reward: torch.Tensor
    prev_done: torch.Tensor
    cumulative: torch.Tensor
    action: int | None = None
    reward: float | None = None
    discount: float | None = None
    weight: float | None = None
    done: bool = False
    restarted: bool = False
    edited: bool = False
    real: RealStep | None = None
    errors: StepErrors | None = None


@dataclass
class Context:
    """The real context step fed before point 0: z_{-1}, a_{-1}. Shapes: z (1, 1, Z), action (1, 1)"""

    z: torch.Tensor
    action: torch.Tensor


class DreamSession:
    """An imagined trajectory of one agent, stepped by the caller. Use `DreamSession.begin(agent, start, seed)`."""

    def __init__(self, agent: Agent, seed: int, context: Context, points: list[DreamPoint],
                 start: DreamStart, max_steps: int = MAX_STEPS) -> None:
        self.agent, self.seed, self.context, self.points, self.start = agent, seed, context, points, start
        self.max_steps = max_steps
        self._env: gym.Env | None = None
        self._attention: dict[int, torch.Tensor] = {}  # call index -> (L, H, Tq, S) on the CPU

    # ---------------------------------------------------------------------------------------- construction
    @classmethod
    @torch.inference_mode()
    def begin(cls, agent: Agent, start: DreamStart, seed: int, real: bool = True,
              max_steps: int = MAX_STEPS) -> DreamSession:
        """A session at point 0 of `start`; `real` steps the start's env alongside (reset starts only)."""
        wm, device = agent.world_model, agent.device
        obs = start.obs.to(device)[None]  # (1, 2, F, 64, 64)
        z = wm.obs_model.encode_sample(obs, temperature=0.0)  # (1, 2, Z)
        context = Context(z[:, :1], torch.tensor([[start.action]], device=device))
        out, memory = wm.dyn_model.step(None, context.z, context.action, heads=False,
                                        cache_capacity=cls._capacity(agent))
        real_step = None
        if real and start.env is not None:
            real_step = RealStep(frame=np.asarray(start.obs[-1, -1].numpy()),
                                 posterior=cls._posterior(agent, obs[:, 1:]), reward=None, reward_transformed=None,
                                 done=False, snapshot=start.snapshot)
        frame = cls._decode(agent, z[:, 1:])
        point = DreamPoint(
            step=0, z=z[:, 1:], prior=None, frame=frame, hidden=out.hidden, memory=memory,
            prev_reward=torch.tensor([[start.reward]], dtype=torch.float32, device=device),
            prev_done=torch.tensor([[start.terminated or start.truncated]], device=device),
            cumulative=torch.ones(1, 1, device=device), real=real_step,
            errors=None if real_step is None else StepErrors(None, None, None, _pixel_error(frame, real_step.frame)))
        session = cls(agent, seed, context, [point], start, max_steps)
        if real_step is not None:
            session._env = start.env
        else:
            start.close()  # no real side: the emulator goes back to its pool now
        return session

    @staticmethod
    def _capacity(agent: Agent) -> int:
        dyn = agent.world_model.dyn_model
        return dyn.memory_tokens + CHAIN_STEPS * dyn.tokens_per_step

    @staticmethod
    def _decode(agent: Agent, z: torch.Tensor) -> np.ndarray:
        """Newest frame of the decoded stack as uint8. Shapes: z (1, 1, Z) -> (64, 64)"""
        frames = agent.world_model.obs_model.decode(z)[0, 0, -1]  # (64, 64) decoder mean
        return (frames.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()

    @staticmethod
    def _posterior(agent: Agent, obs: torch.Tensor) -> torch.Tensor:
        """q(z | o) of one stacked observation. Shapes: obs (1, 1, F, 64, 64) uint8 -> (C, K)"""
        return agent.world_model.obs_model.encode(obs).float().softmax(-1)[0, 0]

    # ------------------------------------------------------------------------------------------- stepping
    @property
    def last(self) -> DreamPoint:
        return self.points[-1]

    @property
    def num_steps(self) -> int:
        return len(self.points) - 1

    def _generator(self, tag: str, device: torch.device | str) -> torch.Generator:
        return torch.Generator(device).manual_seed(derive_seed(self.seed, tag))

    def _start_sampler(self, tag: str) -> Callable[[int], torch.Tensor]:
        """Fresh start latents after an imagined done: random replay observations at temperature 1 (method.md
        §4.4), or the start observation when the agent has no replay data."""
        agent = self.agent

        def sample(n: int) -> torch.Tensor:
            try:
                obs = agent.replay().sample_obs(n, self._generator(tag, "cpu"))  # (n, F, 64, 64)
            except (ValueError, FileNotFoundError, OSError):
                obs = self.start.obs[-1:].expand(n, *self.start.obs.shape[1:])
            obs = obs.to(agent.device)[:, None]  # (n, 1, F, 64, 64)
            return agent.world_model.obs_model.encode_sample(
                obs, temperature=1.0, generator=self._generator(tag, agent.device))[:, 0]  # (n, Z)

        return sample

    @torch.inference_mode()
    def step(self, action: int | None = None) -> DreamPoint:
        """Take action `action` (or the policy's) at the last point and imagine the next one."""
        if self.num_steps >= self.max_steps:
            raise DreamError(f"the session has reached its limit of {self.max_steps} steps; fork or start anew")
        agent, p = self.agent, self.last
        if action is not None and not 0 <= action < agent.num_actions:
            raise DreamError(f"action must lie in [0, {agent.num_actions}) for this game, got {action}")
        device = agent.device
        given = None if action is None else torch.tensor([[action]], device=device)
        res = imagine_step(agent.world_model, agent.actor_critic, p.memory, p.z, p.hidden, p.prev_reward,
                           p.prev_done, p.cumulative, self._start_sampler(f"dream/restart/{p.step}"),
                           agent.config.ac.discount_threshold, given,
                           generator=self._generator(f"dream/z/{p.step}", device),
                           cache_capacity=self._capacity(agent),
                           action_generator=self._generator(f"dream/act/{p.step}", device))
        restarted = bool(res.restart[0])
        frame = self._decode(agent, res.next_z)
        point = DreamPoint(
            step=p.step + 1, z=res.next_z, prior=None if restarted else res.z_logits[0, 0].softmax(-1), frame=frame,
            hidden=res.output.hidden, memory=res.memory, prev_reward=res.reward, prev_done=res.done,
            cumulative=res.cumulative, action=int(res.action[0, 0]), reward=float(res.reward[0, 0]),
            discount=float(res.discount[0, 0]), weight=float(res.weight[0, 0]), done=bool(res.done[0, 0]),
            restarted=restarted)
        point = self._with_real(p, point)
        self.points.append(point)
        return point

    def _with_real(self, prev: DreamPoint, point: DreamPoint) -> DreamPoint:
        """`point` with the emulator stepped from `prev`'s state under the same action (while the episode runs)."""
        if prev.real is None or prev.real.snapshot is None or point.action is None:
            return point
        agent, env = self.agent, self._real_env()
        restore(env, prev.real.snapshot)
        obs, r, terminated, truncated, _ = env.step(point.action)
        stack = torch.as_tensor(np.asarray(obs), device=agent.device)[None, None]  # (1, 1, F, 64, 64)
        done = bool(terminated or truncated)
        real = RealStep(frame=np.asarray(obs)[-1], posterior=self._posterior(agent, stack), reward=float(r),
                        reward_transformed=float(transform_reward(float(r), agent.config.env)), done=done,
                        snapshot=None if done else snapshot(env))
        target_discount = agent.config.env.discount_factor * (0.0 if terminated else 1.0)
        ce = None
        if point.prior is not None:
            ce = float(-(real.posterior * point.prior.clamp_min(1e-30).log()).sum())
        # set on every point after the first, real or imagined
        assert point.reward is not None and point.discount is not None and real.reward_transformed is not None
        errors = StepErrors(latent_ce=ce, reward=abs(point.reward - real.reward_transformed),
                            discount=abs(point.discount - target_discount), pixel=_pixel_error(point.frame, real.frame))
        return dataclasses.replace(point, real=real, errors=errors)

    def _real_env(self):
        if self._env is None:  # a fork: its own env, put into the parent's state by `restore`
            self._env = self.start.new_env(self.agent, self.seed)
        return self._env

    # ------------------------------------------------------------------------------------------ branching
    def fork(self, step: int, action: int | None = None, latent: dict[int, int] | None = None,
             seed: int | None = None) -> DreamSession:
        """A new session sharing points 0..`step`, then: with `latent` {categorical: class}, z_step edited (its
        frame decoded anew); with `action`, that action taken at `step`. The parent is unchanged."""
        if not 0 <= step <= self.num_steps:
            raise DreamError(f"fork step must lie in [0, {self.num_steps}], got {step}")
        p = self.points[step]
        # a private copy of the memory: the fork never writes into buffers its parent still extends
        rows = torch.arange(1, device=self.agent.device)
        p = dataclasses.replace(p, memory=p.memory.index(rows))
        if latent:
            p = self._edited(p, latent)
        child = DreamSession(self.agent, self.seed if seed is None else seed, self.context,
                             self.points[:step] + [p], self.start, self.max_steps)
        if action is not None:
            child.step(action)
        return child

    @torch.inference_mode()
    def _edited(self, p: DreamPoint, latent: dict[int, int]) -> DreamPoint:
        c, k = self.agent.world_model.dyn_model.z_shape
        z = p.z.reshape(c, k).clone()  # (C, K)
        for i, cls in latent.items():
            if not (0 <= i < c and 0 <= cls < k):
                raise DreamError(f"latent edits need categorical in [0, {c}) and class in [0, {k}), got {i}: {cls}")
            z[i] = 0.0
            z[i, cls] = 1.0
        z = z.reshape(1, 1, c * k)  # (1, 1, Z)
        frame = self._decode(self.agent, z)
        errors = p.errors
        if p.real is not None and errors is not None:
            errors = dataclasses.replace(errors, pixel=_pixel_error(frame, p.real.frame))
        return dataclasses.replace(p, z=z, frame=frame, edited=True, errors=errors)

    def close(self) -> None:
        """Close this session's emulator (the start's env belongs to the session begun from it)."""
        if self._env is not None:
            if self._env is self.start.env:
                self.start.close()
            else:
                self.start.release_env(self._env)
        self._env = None


def _pixel_error(imagined: np.ndarray, real: np.ndarray) -> float:
    """Mean |imagined − real| of two uint8 frames in [0, 1] units."""
    return float(np.abs(imagined.astype(np.float32) - real.astype(np.float32)).mean() / 255.0)
