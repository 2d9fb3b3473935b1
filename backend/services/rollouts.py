"""Imagined rollouts of a checkpoint, with the real emulator alongside (method.md §4.4, §6.2).

Starts (the one real step of context imagination needs, method.md §4.4):
- `ResetStart(policy_steps=k)`: `make_env(cfg.env, seed=seed, eval=True)` (the evaluation env: no no-op starts,
  all lives, so the start is a pure function of the seed), one `reset()`, then k steps of the policy in the real
  env (argmax z, sampled action, as `PolicyRunner` acts). The context step is (o_{t-1}, a_{t-1}, r_{t-1}) of the
  last policy step; with k = 0 there is none, so o_{t-1} = o_t, a_{t-1} = 0 (NOOP), r_{t-1} = 0, no done, as the
  replay buffer pads its first row (`ReplayBuffer.get_data`).
- `ReplayStart(index=i)`: row i of the run's replay buffer as of the checkpoint: o_{i-1}, o_i and row i-1's action,
  reward and done (row 0 padded as above), exactly the windows the trainer's imagination starts from.

Both latents are encoded at temperature 0. Imagination is `twm_core.imagination.imagine` (policy actions sampled,
ẑ sampled at temperature 1); an imagined done restarts from a random replay observation, as in training.

`compare_real` (reset starts only; a replay start has no emulator state) replays the imagined actions in the real
env from the start state: the env is snapshotted when the start is reached and restored before (and after) the
replay, so the same env serves any number of replays. The real replay stops at the first real done.

Determinism: everything runs inside `torch.random.fork_rng`, reseeded from the request seed before the policy steps
and again before imagination, so a seed gives the same response, and the attention endpoint (same seed and start)
imagines the same first steps as this one.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

from backend.registry import LoadedModel
from backend.services import InvalidRequest, ReplayStart, ResetStart, StartSpec
from twm_core.acting import PolicyRunner
from twm_core.config import EnvConfig
from twm_core.envs import EnvSnapshot, make_env, restore, snapshot, transform_reward
from twm_core.imagination import ImaginationStart, ImaginedTrajectory, imagine
from twm_core.seeding import derive_seed

NOOP = 0  # index 0 is NOOP in every ALE minimal action set and in Catch


@dataclass
class PreparedStart:
    """The real context of an imagination, and for reset starts the env parked at the start state.

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

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


@dataclass
class RealRollout:
    """The imagined actions replayed in the emulator; lists stop at the first real done.

    frames[0] is the start frame; frame_diffs[t] = mean |imagined_t − real_t| in [0, 1] pixel units.
    """

    frames: list[str]
    rewards: list[float]
    rewards_transformed: list[float]
    dones: list[bool]
    frame_diffs: list[float]


@dataclass
class ImagineResult:
    """An imagined rollout: H+1 frames/latents (index 0 = the start's reconstruction), H actions/predictions."""

    run_id: str
    checkpoint_step: int
    game: str
    seed: int
    horizon: int
    policy: bool
    action_meanings: list[str]
    start_frame: str
    start_policy_actions: list[int]
    latent_shape: list[int]
    frames: list[str]
    latents: list[list[list[int]]]
    latent_indices: list[list[int]]
    actions: list[int]
    action_names: list[str]
    rewards: list[float]
    discounts: list[float]
    weights: list[float]
    dones: list[bool]
    real: RealRollout | None = None


# ------------------------------------------------------------------------------------------------- helpers
def png_base64(frame: np.ndarray) -> str:
    """A (64, 64) uint8 grayscale frame as a base64 PNG string."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Decoder means clipped to [0, 1], as uint8 pixels. Shapes: (..., 64, 64) float -> (..., 64, 64) uint8"""
    return (frames.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


@contextmanager
def seeded(seed: int, tag: str, device: torch.device) -> Iterator[None]:
    """Run with torch's global RNG seeded from (seed, tag), restoring the caller's RNG state afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(seed, tag))
        yield


def check_actions(actions: list[int], num_actions: int) -> None:
    bad = [a for a in actions if not 0 <= a < num_actions]
    if bad:
        raise InvalidRequest(f"actions must lie in [0, {num_actions}) for this game, got {bad[:5]}")


# -------------------------------------------------------------------------------------------------- starts
def prepare_start(model: LoadedModel, spec: StartSpec, seed: int) -> PreparedStart:
    """The one real step of context for `spec` (see the module docstring)."""
    if isinstance(spec, ReplayStart):
        return _replay_start(model, spec.index)
    with seeded(seed, "inspect/start", model.device):
        return _reset_start(model, spec.policy_steps, seed)


def _replay_start(model: LoadedModel, index: int) -> PreparedStart:
    try:
        replay = model.replay()
    except (ValueError, FileNotFoundError) as exc:
        raise InvalidRequest(f"run {model.run_id} has no replay data to start from: {exc}") from exc
    if not 0 <= index < replay.size:
        raise InvalidRequest(f"replay index must lie in [0, {replay.size}) at checkpoint {model.step}, got {index}")
    data = replay.get_data(torch.tensor([index]), sequence_length=1, prefix=1, return_next_obs=False)
    return PreparedStart(obs=data.obs[0], action=int(data.actions[0, 0]), reward=float(data.rewards[0, 0]),
                         terminated=bool(data.terminated[0, 0]), truncated=bool(data.truncated[0, 0]))


def _reset_start(model: LoadedModel, policy_steps: int, seed: int) -> PreparedStart:
    cfg = model.config
    env = make_env(cfg.env, seed=seed, eval=True)
    try:
        obs, _ = env.reset()
        prev_obs, action, reward = obs, NOOP, 0.0
        runner = PolicyRunner(model.world_model, model.actor_critic, 1, model.device)
        taken: list[int] = []
        for i in range(policy_steps):
            a = int(runner.act(np.asarray(obs)[None], np.array([reward]), np.array([False]))[0])
            next_obs, r, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                raise InvalidRequest(f"the episode ended after {i + 1} of {policy_steps} policy steps "
                                     f"(seed {seed}); ask for fewer policy steps")
            taken.append(a)
            prev_obs, action, reward, obs = obs, a, float(transform_reward(float(r), cfg.env)), next_obs
        pair = torch.as_tensor(np.stack([np.asarray(prev_obs), np.asarray(obs)]))  # (2, F, 64, 64)
        return PreparedStart(obs=pair, action=action, reward=reward, terminated=False, truncated=False,
                             policy_actions=taken, env=env, snapshot=snapshot(env))
    except BaseException:
        env.close()
        raise


# ----------------------------------------------------------------------------------------------- imagining
def _start_z_sampler(model: LoadedModel, start: PreparedStart, seed: int) -> Callable[[int], torch.Tensor]:
    """Fresh start latents after an imagined done: random replay observations at temperature 1 (method.md §4.4),
    or the start observation when the run has no replay data."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "inspect/restart"))

    def sample(n: int) -> torch.Tensor:
        try:
            obs = model.replay().sample_obs(n, generator)  # (n, F, 64, 64)
        except (ValueError, FileNotFoundError):
            obs = start.obs[-1:].expand(n, *start.obs.shape[1:])
        obs = obs.to(model.device)[:, None]  # (n, 1, F, 64, 64)
        return model.world_model.obs_model.encode_sample(obs, temperature=1.0)[:, 0]  # (n, Z)

    return sample


def run_imagination(model: LoadedModel, start: PreparedStart, seed: int, horizon: int,
                    actions: list[int] | None, return_attention: bool = False) -> ImaginedTrajectory:
    """`imagine` one row for `horizon` steps from `start`, with the policy or the given actions."""
    device, cfg = model.device, model.config
    obs = start.obs.to(device)[None]  # (1, 2, F, 64, 64)
    with seeded(seed, "inspect/imagine", device):
        z = model.world_model.obs_model.encode_sample(obs, temperature=0.0)  # (1, 2, Z)
        context = ImaginationStart(
            z=z, actions=torch.tensor([[start.action]], device=device),
            rewards=torch.tensor([[start.reward]], dtype=torch.float32, device=device),
            terminated=torch.tensor([[start.terminated]], device=device),
            truncated=torch.tensor([[start.truncated]], device=device))
        given = None if actions is None else torch.tensor([actions], dtype=torch.long, device=device)  # (1, H)
        return imagine(model.world_model, model.actor_critic, context, horizon, _start_z_sampler(model, start, seed),
                       cfg.ac.discount_threshold, actions=given, return_attention=return_attention)


def replay_real(start: PreparedStart, actions: list[int], imagined: np.ndarray, env_cfg: EnvConfig) -> RealRollout:
    """Step the parked env through `actions` from the start snapshot; compare with the imagined frames.

    Shapes: imagined (H+1, 64, 64) float in [0, 1]
    """
    assert start.env is not None and start.snapshot is not None
    env = start.env
    restore(env, start.snapshot)
    frames = [np.asarray(start.obs[-1, -1].numpy())]
    rewards, transformed, dones = [], [], []
    for a in actions:
        obs, r, terminated, truncated, _ = env.step(a)
        frames.append(np.asarray(obs)[-1])
        rewards.append(float(r))
        transformed.append(float(transform_reward(float(r), env_cfg)))
        dones.append(bool(terminated or truncated))
        if dones[-1]:
            break
    restore(env, start.snapshot)  # parked at the start again
    diffs = [float(np.abs(imagined[t] - frame / 255.0).mean()) for t, frame in enumerate(frames)]
    return RealRollout(frames=[png_base64(f) for f in frames], rewards=rewards, rewards_transformed=transformed,
                       dones=dones, frame_diffs=diffs)


def imagine_rollout(model: LoadedModel, seed: int, spec: StartSpec, horizon: int, actions: list[int] | None = None,
                    compare_real: bool = False) -> ImagineResult:
    """Imagine `horizon` steps from `spec` (policy when `actions` is None), optionally against the real env."""
    if horizon < 1:
        raise InvalidRequest(f"horizon must be >= 1, got {horizon}")
    if actions is not None:
        if len(actions) != horizon:
            raise InvalidRequest(f"got {len(actions)} actions for a horizon of {horizon}")
        check_actions(actions, model.num_actions)
    if compare_real and not isinstance(spec, ResetStart):
        raise InvalidRequest("compare_real needs a reset start (a replay row has no emulator state to replay from)")
    with torch.inference_mode():
        start = prepare_start(model, spec, seed)
    try:
        with torch.inference_mode():
            traj = run_imagination(model, start, seed, horizon, actions)
            decoded = model.world_model.obs_model.decode(traj.z)[0, :, -1]  # (H+1, 64, 64), last frame of the stack
            imagined = decoded.clamp(0.0, 1.0).float().cpu().numpy()
            frames = to_uint8(decoded)
        taken = traj.actions[0].tolist()
        real = replay_real(start, taken, imagined, model.config.env) if compare_real else None
    finally:
        start.close()
    c, k = model.config.obs.z_categoricals, model.config.obs.z_categories
    onehot = traj.z[0].reshape(-1, c, k)  # (H+1, C, K)
    meanings = model.action_meanings()
    return ImagineResult(
        run_id=model.run_id, checkpoint_step=model.step, game=model.config.env.game, seed=seed, horizon=horizon,
        policy=actions is None, action_meanings=meanings, start_frame=png_base64(start.obs[-1, -1].numpy()),
        start_policy_actions=start.policy_actions, latent_shape=[c, k],
        frames=[png_base64(f) for f in frames], latents=onehot.round().to(torch.int64).tolist(),
        latent_indices=onehot.argmax(-1).tolist(), actions=taken, action_names=[meanings[a] for a in taken],
        rewards=traj.rewards[0].tolist(), discounts=traj.discounts[0].tolist(), weights=traj.weights[0].tolist(),
        dones=traj.dones[0].tolist(), real=real)
