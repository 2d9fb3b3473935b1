"""`Catch`: a tiny built-in pixel game for fast learning tests and CPU demos (no emulator).

An 8×8 ball falls from the top of a black 64×64 screen at a random column, 8 px per step; a 16×4 paddle on the
bottom rows moves LEFT/RIGHT by 8 px per step (or stays, NOOP). When the ball reaches the paddle row the step
pays +1 if it overlaps the paddle and −1 if not; the ball stays on the bottom for that frame and a new ball
appears at the top on the next step. After `num_balls` balls the episode terminates.

Timing (defaults): a ball needs 7 steps to fall, so an episode is `8 · num_balls − 1` steps (39 for 5 balls).
The paddle can cross 56 px while a ball falls, so a perfect policy catches every ball (return `+num_balls`).
The objects are big and a ball lands every 8 steps so that a small world model learns the game on a CPU in
minutes. A uniformly random policy catches about one ball in three: its mean return over 2000 episodes of 5
balls was −1.34 (std 2.17), measured with `random_policy_return(2000)` below.

Everything is numpy on a few integers, fully determined by the `reset(seed=...)` seed, and
`get_state()` / `set_state()` capture the whole game (for `twm_core.envs.snapshot`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SCREEN = 64
BALL_SIZE = 8
PADDLE_HEIGHT = 4
BALL_VALUE = 255
PADDLE_VALUE = 192
ACTION_MEANINGS = ("NOOP", "LEFT", "RIGHT")


class Catch(gym.Env[np.ndarray, int]):
    """Catch the falling balls with the paddle; 64×64 uint8 grayscale frames, 3 actions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, num_balls: int = 5, ball_speed: int = 8, paddle_speed: int = 8, paddle_width: int = 16,
                 render_mode: str | None = None) -> None:
        if num_balls <= 0 or ball_speed <= 0 or paddle_speed <= 0 or not 0 < paddle_width <= SCREEN:
            raise ValueError(f"invalid Catch parameters: num_balls={num_balls}, ball_speed={ball_speed}, "
                             f"paddle_speed={paddle_speed}, paddle_width={paddle_width}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"Catch supports render_mode None or 'rgb_array', got {render_mode!r}")
        self.num_balls = num_balls
        self.ball_speed = ball_speed
        self.paddle_speed = paddle_speed
        self.paddle_width = paddle_width
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (SCREEN, SCREEN), np.uint8)
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))  # type: ignore[assignment]  # np.int64 samples
        self._paddle_top = SCREEN - PADDLE_HEIGHT
        self._landing_y = self._paddle_top - BALL_SIZE  # top row of a ball resting on the paddle row
        self._ball_x = 0
        self._ball_y = 0
        self._paddle_x = (SCREEN - paddle_width) // 2
        self._balls_played = 0
        self._landed = False  # the ball touched down in the previous step; spawn a new one now
        self._done = True

    # ----------------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode: paddle centred, first ball at the top of a random column."""
        super().reset(seed=seed)
        self._paddle_x = (SCREEN - self.paddle_width) // 2
        self._balls_played = 0
        self._done = False
        self._spawn_ball()
        return self._frame(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move the paddle, then the ball; pays ±1 on the step the ball reaches the paddle row."""
        if self._done:
            raise RuntimeError("Catch.step() called after the episode ended; call reset() first")
        a = int(action)
        if not 0 <= a < len(ACTION_MEANINGS):
            raise ValueError(f"Catch action must be in [0, {len(ACTION_MEANINGS)}), got {action!r}")
        move = (0, -self.paddle_speed, self.paddle_speed)[a]
        self._paddle_x = int(np.clip(self._paddle_x + move, 0, SCREEN - self.paddle_width))

        reward = 0.0
        if self._landed:
            self._spawn_ball()
        else:
            self._ball_y = min(self._ball_y + self.ball_speed, self._landing_y)
            if self._ball_y == self._landing_y:
                paddle_end = self._paddle_x + self.paddle_width
                caught = self._ball_x < paddle_end and self._paddle_x < self._ball_x + BALL_SIZE
                reward = 1.0 if caught else -1.0
                self._balls_played += 1
                self._landed = True
                self._done = self._balls_played >= self.num_balls
        return self._frame(), reward, self._done, False, self._info()

    def render(self) -> np.ndarray | None:
        """The current frame as (64, 64, 3) uint8 RGB when `render_mode == 'rgb_array'`."""
        if self.render_mode != "rgb_array":
            return None
        return np.repeat(self._frame()[:, :, None], 3, axis=2)

    def get_action_meanings(self) -> list[str]:
        """`["NOOP", "LEFT", "RIGHT"]`, in action-index order (the ALE envs' method name)."""
        return list(ACTION_MEANINGS)

    # ----------------------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything that determines future frames and rewards (game variables and the RNG state)."""
        return {
            "ball_x": self._ball_x, "ball_y": self._ball_y, "paddle_x": self._paddle_x,
            "balls_played": self._balls_played, "landed": self._landed, "done": self._done,
            "rng": self.np_random.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a `get_state()` result exactly."""
        self._ball_x, self._ball_y = int(state["ball_x"]), int(state["ball_y"])
        self._paddle_x, self._balls_played = int(state["paddle_x"]), int(state["balls_played"])
        self._landed, self._done = bool(state["landed"]), bool(state["done"])
        self.np_random.bit_generator.state = state["rng"]

    # ----------------------------------------------------------------------------------------------------
    def _spawn_ball(self) -> None:
        self._ball_x = int(self.np_random.integers(0, SCREEN - BALL_SIZE + 1))
        self._ball_y = 0
        self._landed = False

    def _frame(self) -> np.ndarray:
        frame = np.zeros((SCREEN, SCREEN), dtype=np.uint8)
        frame[self._paddle_top:, self._paddle_x:self._paddle_x + self.paddle_width] = PADDLE_VALUE
        frame[self._ball_y:self._ball_y + BALL_SIZE, self._ball_x:self._ball_x + BALL_SIZE] = BALL_VALUE
        return frame

    def _info(self) -> dict[str, Any]:
        return {"lives": 1, "balls_left": self.num_balls - self._balls_played}


def random_policy_return(episodes: int = 200, seed: int = 0, **catch_kwargs: Any) -> tuple[float, float]:
    """Mean and std of the return of a uniformly random policy (the number quoted in the module docstring)."""
    env = Catch(**catch_kwargs)
    rng = np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, done, _, _ = env.step(int(rng.integers(len(ACTION_MEANINGS))))
            total += reward
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))
