"""`make_env`: the TWM environment protocol (method.md §2.2, §6.4), plus reward transform and snapshots.

Atari wrapper stack, innermost first, as the reference's `create_atari_env` (`jrobine/twm` `twm/utils.py`):

1. `ALE/<Game>-v5` with `frameskip=1`, `repeat_action_probability=cfg.sticky_action_prob` (0: no sticky
   actions), the minimal action set, and no ALE frame cap (the reference's `AtariEnv` had none; the time
   limit below bounds episodes).
2. `AtariPreprocessing`: repeats each action `cfg.frame_skip` frames, max-pools the last two, 64×64
   grayscale (INTER_AREA), `noop_max` single-frame no-ops on reset. FIRE games get 0 here and instead
3. `FireAfterLifeLoss` + `NoopStart(noop_max)` (no-ops as agent steps, after the FIRE presses).
4. `EpisodicLives`, training only (`eval=False` and `cfg.episodic_lives`).
5. `FrameStackObservation(cfg.frame_stack)`: observations (F, 64, 64) uint8, newest frame last.
6. `TimeLimit(cfg.time_limit)` in agent steps. It wraps the episodic-lives wrapper, so in training the
   count restarts at every life, as in the reference.
7. `EpisodeInfo`: `info["lives"]`, `info["game_over"]`, `info["stack_reset"]` (see its docstring).

`noop_max` is `cfg.noop_max` for training and 0 for evaluation. Evaluation (`eval=True`) plays all lives
and terminates only at game over. (The reference's eval env kept episodic lives and let its vector env
auto-reset through each life loss; its score is the same sum over all lives.)

Rewards are raw game rewards; the learner applies `transform_reward`.

The built-in `Catch` gets only steps 5-7: it has no frame skip, no no-ops and a single life.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TimeLimit
from gymnasium.wrappers.common import OrderEnforcing, PassiveEnvChecker

from twm_core.config import EnvConfig
from twm_core.envs.catch import Catch
from twm_core.envs.games import is_builtin, resolve_game
from twm_core.envs.wrappers import EpisodeInfo, EpisodicLives, FireAfterLifeLoss, NoopStart


def make_env(cfg: EnvConfig | str, *, seed: int, eval: bool = False,
             render_mode: str | None = None) -> gym.Env:
    """Build the training (`eval=False`) or evaluation env of `cfg.game`; the first `reset()` uses `seed`.

    Shapes:
        observation: (F, 64, 64) uint8, F = cfg.frame_stack, newest frame at index -1.
    """
    if isinstance(cfg, str):
        cfg = EnvConfig(game=cfg)
    game = resolve_game(cfg.game)
    if is_builtin(game):
        env: gym.Env = Catch(render_mode=render_mode)
    else:
        env = _make_atari(game, cfg, eval=eval, render_mode=render_mode)
    env = FrameStackObservation(env, cfg.frame_stack, padding_type="reset")
    env = TimeLimit(env, max_episode_steps=cfg.time_limit)
    env = EpisodeInfo(env, seed=seed)
    env.action_space.seed(seed)
    return env


def _make_atari(game: str, cfg: EnvConfig, *, eval: bool, render_mode: str | None) -> gym.Env:
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=cfg.sticky_action_prob,
                   full_action_space=False, max_num_frames_per_episode=None, render_mode=render_mode,
                   disable_env_checker=True)
    noop_max = 0 if eval else cfg.noop_max
    has_fire = cast(Any, env.unwrapped).get_action_meanings()[1:2] == ["FIRE"]
    env = AtariPreprocessing(env, noop_max=0 if has_fire else noop_max, frame_skip=cfg.frame_skip,
                             screen_size=cfg.frame_size, terminal_on_life_loss=False,
                             grayscale_obs=cfg.grayscale)
    if has_fire:
        env = FireAfterLifeLoss(env)
        if noop_max > 0:
            env = NoopStart(env, noop_max)
    if cfg.episodic_lives and not eval:
        env = EpisodicLives(env)
    return env


def transform_reward(reward: float | np.ndarray, cfg: EnvConfig) -> float | np.ndarray:
    """The reward the learner stores: `tanh(r)` for `reward_transform='tanh'`, `r` for `'none'`."""
    if cfg.reward_transform == "tanh":
        out = np.tanh(reward)
        return float(out) if np.ndim(out) == 0 else out
    if cfg.reward_transform == "none":
        return reward
    raise ValueError(f"unknown reward_transform {cfg.reward_transform!r}")


def action_meanings(env: gym.Env) -> list[str]:
    """Names of the env's actions in index order (ALE minimal action set; Catch: NOOP, LEFT, RIGHT)."""
    return list(cast(Any, env.unwrapped).get_action_meanings())  # ALE envs and Catch have it


# ----------------------------------------------------------------------------------------------------
# Snapshots: everything that determines the future, layer by layer
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvSnapshot:
    """The state of every layer of an env made by `make_env`, outermost first: `(layer type name, state)`."""

    layers: tuple[tuple[str, Any], ...]


def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _capture(layer: gym.Env) -> Any:
    if hasattr(layer, "get_state"):  # our wrappers and Catch
        return copy.deepcopy(layer.get_state())
    if isinstance(layer, AtariPreprocessing):
        return {"obs_buffer": [b.copy() for b in layer.obs_buffer], "lives": layer.lives,
                "game_over": layer.game_over}
    if isinstance(layer, FrameStackObservation):
        return {"queue": [np.array(o, copy=True) for o in layer.obs_queue],
                "padding": np.array(layer.padding_value, copy=True)}
    if isinstance(layer, TimeLimit):
        return {"elapsed": layer._elapsed_steps}
    if isinstance(layer, OrderEnforcing):
        return {"has_reset": layer._has_reset}
    if isinstance(layer, PassiveEnvChecker):
        return None
    ale = getattr(layer, "ale", None)
    if ale is not None and not isinstance(layer, gym.Wrapper):  # ale_py.env.AtariEnv
        if ale.getFloat("repeat_action_probability") > 0:
            warnings.warn("snapshot: with sticky actions the ALE does not restore its sticky-action "
                          "randomness, so replays after restore() may differ", RuntimeWarning, stacklevel=3)
        rng_state = copy.deepcopy(layer.np_random.bit_generator.state)
        return {"ale": ale.cloneState(include_rng=True), "rng": rng_state}
    raise TypeError(f"snapshot: no rule to capture the state of {type(layer).__name__}")


def _apply(layer: gym.Env, state: Any) -> None:
    if hasattr(layer, "set_state"):
        layer.set_state(copy.deepcopy(state))
    elif isinstance(layer, AtariPreprocessing):
        for buffer, saved in zip(layer.obs_buffer, state["obs_buffer"], strict=True):
            np.copyto(buffer, saved)  # keep the arrays: the wrapper reads screens into them in place
        layer.lives, layer.game_over = state["lives"], state["game_over"]
    elif isinstance(layer, FrameStackObservation):
        layer.obs_queue.clear()
        layer.obs_queue.extend(np.array(o, copy=True) for o in state["queue"])
        layer.padding_value = np.array(state["padding"], copy=True)
    elif isinstance(layer, TimeLimit):
        layer._elapsed_steps = state["elapsed"]
    elif isinstance(layer, OrderEnforcing):
        layer._has_reset = state["has_reset"]
    elif state is not None:  # AtariEnv
        cast(Any, layer).ale.restoreState(state["ale"])
        layer.np_random.bit_generator.state = copy.deepcopy(state["rng"])


def snapshot(env: gym.Env) -> EnvSnapshot:
    """Capture `env` (from `make_env`) so that `restore` replays any action sequence bit-identically.

    Captures the emulator (`ALEState` with its RNG), the env's `np_random` (next reset's no-op count, Catch's
    ball columns), the max-pool buffers, lives counters, the frame-stack contents and the time-limit count.
    Exact for the protocol's `sticky_action_prob=0`; with sticky actions ALE 0.12 does not restore the
    randomness of the action repeats (measured), so a `RuntimeWarning` is raised.
    """
    return EnvSnapshot(layers=tuple((type(layer).__name__, _capture(layer)) for layer in _layers(env)))


def restore(env: gym.Env, snap: EnvSnapshot) -> None:
    """Put `env` back into the state of `snap` (taken from this env or one built with the same arguments)."""
    layers = _layers(env)
    names = [type(layer).__name__ for layer in layers]
    saved = [name for name, _ in snap.layers]
    if names != saved:
        raise ValueError(f"snapshot of wrapper stack {saved} cannot restore an env with stack {names}")
    for layer, (_, state) in zip(layers, snap.layers, strict=True):
        _apply(layer, state)
