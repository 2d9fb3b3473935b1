"""Gymnasium wrappers of the TWM Atari protocol (method.md §2.2; reference `jrobine/twm` `twm/utils.py`).

One class each, in the order `make_env` stacks them (innermost first):

* `FireAfterLifeLoss`: games whose action 1 is FIRE press FIRE, then action 2, on reset, and FIRE after each
  lost life (within the same agent step), so the agent never waits for a serve it cannot see coming.
* `NoopStart`: 1..`noop_max` no-op *agent* steps after each reset (FIRE games, after the FIRE presses).
* `EpisodicLives`: a lost life is `terminated=True`, but the following `reset()` continues the game with one
  NOOP step instead of resetting the emulator, until the real game over.
* `EpisodeInfo` (outermost): adds `lives`, `game_over` and `stack_reset` to the infos, seeds the first reset,
  and makes the reset after a time-limit truncation a real one.

Each of our wrappers exposes `get_state()` / `set_state()` so that `twm_core.envs.snapshot` can capture it.
"""

from __future__ import annotations

from typing import Any, SupportsFloat, cast

import gymnasium as gym

FORCE_RESET = "force_reset"
"""`reset(options={FORCE_RESET: True})` resets the emulator even in the middle of an episodic-lives game."""

StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]


def env_lives(env: gym.Env) -> int | None:
    """Lives left according to the ALE (`None` for environments without an emulator)."""
    ale = getattr(env.unwrapped, "ale", None)
    return int(ale.lives()) if ale is not None else None


def _without_force(options: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
    """Split our private `force_reset` flag from the options passed down to the inner envs."""
    if not options or FORCE_RESET not in options:
        return False, options
    rest = {key: value for key, value in options.items() if key != FORCE_RESET}
    return bool(options[FORCE_RESET]), rest or None


class FireAfterLifeLoss(gym.Wrapper):
    """FIRE (then action 2) on reset, and FIRE after every lost life; for games whose action 1 is FIRE.

    As in the reference, the extra FIRE step after a life loss belongs to the same agent step: its reward is
    added and its frame is returned. Unlike the reference, no FIRE is pressed once the game is over (the final
    observation of a game is discarded by the replay buffer anyway).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = cast(Any, env.unwrapped).get_action_meanings()  # an ALE env (checked below)
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireAfterLifeLoss needs action 1 == 'FIRE' and >= 3 actions, got {meanings}")
        self.lives = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset, then press FIRE and action 2 (resetting again if either ends the game)."""
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.lives = env_lives(self.env) or 0
        return obs, info

    def step(self, action: Any) -> StepResult:
        """Step; if a life was lost and the game goes on, press FIRE in the same agent step."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = env_lives(self.env) or 0
        if lives < self.lives and not (terminated or truncated):
            obs, reward_fire, terminated, truncated, info_fire = self.env.step(1)
            reward = float(reward) + float(reward_fire)
            info.update(info_fire)
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def get_state(self) -> dict[str, Any]:
        """The lives counter."""
        return {"lives": self.lives}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()`."""
        self.lives = int(state["lives"])


class NoopStart(gym.Wrapper):
    """After each reset, take 1..`noop_max` NOOP agent steps (drawn with the env's own seeded `np_random`).

    The reference applies this only to FIRE games, above `FireAfterLifeLoss` (so the no-ops come after the
    FIRE presses and are whole agent steps); other games get `AtariPreprocessing`'s no-ops, which are single
    emulator frames. `last_noops` records the count of the latest reset.
    """

    def __init__(self, env: gym.Env, noop_max: int) -> None:
        super().__init__(env)
        if noop_max <= 0:
            raise ValueError(f"NoopStart needs noop_max > 0, got {noop_max}")
        self.noop_max = noop_max
        self.last_noops = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset, then take the no-ops (resetting again if they end the game)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.last_noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1))
        for _ in range(self.last_noops):
            obs, _, terminated, truncated, step_info = self.env.step(0)
            info.update(step_info)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info

    def get_state(self) -> dict[str, Any]:
        """The latest no-op count (informational)."""
        return {"last_noops": self.last_noops}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()`."""
        self.last_noops = int(state["last_noops"])


class EpisodicLives(gym.Wrapper):
    """A lost life ends the episode (`terminated=True`) without resetting the emulator until game over.

    `reset()` after a life loss returns the frame of one NOOP agent step, as the reference does; the frame
    stack above this wrapper then refills with copies of it. `info["game_over"]` is the emulator's own
    terminal flag. As in the reference, a life counter that drops to 0 while the game continues (Qbert) is
    not a terminal. Deviations, both for robustness: a reset with an explicit `seed` or with
    `options={"force_reset": True}` always resets the emulator, and so does a continuation whose NOOP step
    itself ends the game.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.was_real_done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset the emulator after a game over; otherwise continue the game with one NOOP step."""
        force, options = _without_force(options)
        if self.was_real_done or force or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.lives = env_lives(self.env) or 0
        return obs, info

    def step(self, action: Any) -> StepResult:
        """Step; a decrease of the (positive) life counter is reported as `terminated`."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.was_real_done = bool(terminated or truncated)
        info["game_over"] = bool(terminated)
        lives = env_lives(self.env) or 0
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def get_state(self) -> dict[str, Any]:
        """The lives counter and whether the last step ended the game."""
        return {"lives": self.lives, "was_real_done": self.was_real_done}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()`."""
        self.lives = int(state["lives"])
        self.was_real_done = bool(state["was_real_done"])


class EpisodeInfo(gym.Wrapper):
    """Outermost wrapper: the info keys every consumer relies on, first-reset seeding, truncation resets.

    Info keys, in every `reset()` and `step()` info:

    * `lives` (int): lives left (ALE counter; 1 for built-in games).
    * `game_over` (bool): the game really ended. A life loss under episodic lives is `terminated` but not
      `game_over`; a time-limit truncation is neither.
    * `stack_reset` (bool): True exactly in `reset()` infos. Rule for the replay buffer: the frame stack wraps
      the episodic-lives wrapper (reference order), so *every* `reset()`, including the one that continues
      the game after a lost life, refills the stack with `frame_stack` copies of the reset frame: the
      observation is `[f, f, f, f]` with `f = obs[-1]`. After a `step()` (`stack_reset=False`) the stack is
      the previous stack shifted by one with the new frame last. So a buffer that stores single frames
      `obs[-1]` rebuilds the stack at row t from rows t-3..t, repeating the frame of the latest row whose
      `stack_reset` is True for the slots before it.

    The first `reset()` without a seed uses the `seed` given here; later ones continue the env's RNG
    stream. The reset after a time-limit truncation is a real emulator reset (the reference would continue
    the game there, which only matters after 27k steps in one life).
    """

    def __init__(self, env: gym.Env, seed: int | None = None) -> None:
        super().__init__(env)
        self._pending_seed = seed
        self._force_next_reset = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset (with the construction seed the first time); info gets `stack_reset=True`."""
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        if self._force_next_reset:
            options = {**(options or {}), FORCE_RESET: True}
        self._force_next_reset = False
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info.update(lives=self._lives(info), game_over=False, stack_reset=True)
        return obs, info

    def step(self, action: Any) -> StepResult:
        """Step; adds `lives`, `game_over` and `stack_reset=False` to the info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        game_over = bool(info.get("game_over", terminated))
        info.update(lives=self._lives(info), game_over=game_over, stack_reset=False)
        self._force_next_reset = bool(truncated) and not game_over
        return obs, reward, bool(terminated), bool(truncated), info

    def _lives(self, info: dict[str, Any]) -> int:
        lives = env_lives(self.env)
        return int(info.get("lives", 1)) if lives is None else lives

    def get_state(self) -> dict[str, Any]:
        """The pending first-reset seed and whether the next reset must be a real one."""
        return {"pending_seed": self._pending_seed, "force_next_reset": self._force_next_reset}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()`."""
        self._pending_seed = state["pending_seed"]
        self._force_next_reset = bool(state["force_next_reset"])

