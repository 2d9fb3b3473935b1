"""Tests of the environment protocol (`twm_core.envs`): Atari wrappers, the built-in Catch, snapshots."""

from __future__ import annotations

import math
import time

import gymnasium as gym
import numpy as np
import pytest

from twm_core.config import EnvConfig
from twm_core.envs import (
    ATARI100K_GAMES,
    Catch,
    NoopStart,
    action_meanings,
    available_games,
    make_env,
    resolve_game,
    restore,
    snapshot,
    transform_reward,
)


def _frame_number(env: gym.Env) -> int:
    """Emulator frames since the last emulator reset."""
    return int(env.unwrapped.ale.getEpisodeFrameNumber())


def _find(env: gym.Env, cls: type) -> gym.Env:
    layer = env
    while not isinstance(layer, cls):
        layer = layer.env
    return layer


def _catch_positions(frame: np.ndarray) -> tuple[float, float]:
    """Centre columns of the ball and the paddle, read from a 64×64 Catch frame."""
    ball_cols = np.nonzero((frame[:60] == 255).any(axis=0))[0]
    paddle_cols = np.nonzero(frame[63] > 0)[0]
    return float(ball_cols.mean()), float(paddle_cols.mean())


# ----------------------------------------------------------------------------------------------------
# Observations, actions, seeding
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("game", ["Pong", "Catch"])
def test_observation_shape_and_stack_order(game: str) -> None:
    env = make_env(game, seed=0)
    obs, info = env.reset()
    assert obs.shape == (4, 64, 64) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 64, 64)
    assert info["stack_reset"] is True and info["game_over"] is False
    assert all(np.array_equal(obs[k], obs[-1]) for k in range(4)), "reset fills the stack with its frame"
    previous = obs
    for _ in range(6):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (4, 64, 64) and obs.dtype == np.uint8
        assert info["stack_reset"] is False
        assert np.array_equal(obs[:-1], previous[1:]), "newest frame last, older frames shift left"
        assert not (terminated or truncated)
        previous = obs
    assert obs[-1].max() > 0, "frames are not blank"


def test_action_sets() -> None:
    pong = make_env("Pong", seed=0)
    assert pong.action_space.n == 6
    assert action_meanings(pong) == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    catch = make_env("Catch", seed=0)
    assert catch.action_space.n == 3 and action_meanings(catch) == ["NOOP", "LEFT", "RIGHT"]


def test_reset_with_same_seed_is_deterministic() -> None:
    env_a, env_b = make_env("Pong", seed=7), make_env("Pong", seed=7)
    obs_a, _ = env_a.reset()
    obs_b, _ = env_b.reset()
    frames_a = _frame_number(env_a)
    assert np.array_equal(obs_a, obs_b) and frames_a == _frame_number(env_b)
    for _ in range(20):
        env_a.step(0)
    obs_again, _ = env_a.reset(seed=7)
    assert np.array_equal(obs_again, obs_a) and _frame_number(env_a) == frames_a


def test_eval_env_has_no_noops() -> None:
    # Freeway has no FIRE action: AtariPreprocessing's single-frame no-ops would be the only frames before the
    # first observation. Pong has FIRE: the reset presses FIRE and action 2, one agent step (4 frames) each.
    for seed in range(3):
        freeway = make_env("Freeway", seed=seed, eval=True)
        freeway.reset()
        assert _frame_number(freeway) == 0
        pong = make_env("Pong", seed=seed, eval=True)
        pong.reset()
        assert _frame_number(pong) == 2 * 4
    first = [make_env("Pong", seed=s, eval=True).reset()[0] for s in (0, 1)]
    assert np.array_equal(first[0], first[1]), "no no-ops, no sticky actions: same start"


def test_training_env_applies_noops() -> None:
    counts, freeway_frames = set(), set()
    for seed in range(8):
        pong = make_env("Pong", seed=seed)
        pong.reset()
        noops = _find(pong, NoopStart).last_noops
        assert 1 <= noops <= 30
        assert _frame_number(pong) == 2 * 4 + 4 * noops, "FIRE games: no-ops are agent steps after FIRE"
        counts.add(noops)
        freeway = make_env("Freeway", seed=seed)
        freeway.reset()
        assert 1 <= _frame_number(freeway) <= 30, "other games: 1..30 single-frame no-ops"
        freeway_frames.add(_frame_number(freeway))
    assert len(counts) > 1 and len(freeway_frames) > 1, "the no-op count depends on the seed"


# ----------------------------------------------------------------------------------------------------
# Lives, termination, truncation
# ----------------------------------------------------------------------------------------------------
def test_episodic_lives_continue_the_game() -> None:
    env = make_env("Breakout", seed=1)
    _, info = env.reset()
    assert info["lives"] == 5
    lives_at_reset, life_losses = [5], 0
    for _ in range(5000):
        frames_before = _frame_number(env)
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated
        if not terminated:
            continue
        if info["game_over"]:
            assert info["lives"] == 0
            break
        life_losses += 1
        assert info["lives"] < lives_at_reset[-1]
        obs, info = env.reset()
        assert info["stack_reset"] is True and info["game_over"] is False
        assert all(np.array_equal(obs[k], obs[-1]) for k in range(4))
        assert info["lives"] == lives_at_reset[-1] - 1, "the reset after a life loss keeps the lost life lost"
        assert _frame_number(env) > frames_before, "the emulator was not reset"
        lives_at_reset.append(info["lives"])
    else:
        pytest.fail("no game over in 5000 random steps")
    assert life_losses == 4 and lives_at_reset == [5, 4, 3, 2, 1]
    frames_at_game_over = _frame_number(env)
    env.reset()
    noop_frames = 4 * _find(env, NoopStart).last_noops
    # FIRE, action 2, the no-ops, and maybe one FIRE after a ball lost during the no-ops.
    assert 8 + noop_frames <= _frame_number(env) <= 12 + noop_frames < frames_at_game_over


def test_life_loss_reset_is_one_noop_step() -> None:
    env = make_env("Breakout", seed=4)
    env.reset()
    for _ in range(2000):
        _, _, terminated, _, info = env.step(env.action_space.sample())
        if terminated:
            break
    assert terminated and not info["game_over"]
    snap = snapshot(env)
    obs_reset, _ = env.reset()
    restore(env, snap)
    obs_noop, _, _, _, _ = env.step(0)
    assert np.array_equal(obs_reset[-1], obs_noop[-1]), "the continuing reset shows the frame of a NOOP step"


def test_eval_env_terminates_only_at_game_over() -> None:
    env = make_env("Breakout", seed=2, eval=True)
    _, info = env.reset()
    seen_lives = {info["lives"]}
    for _ in range(5000):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        seen_lives.add(info["lives"])
        assert not truncated
        assert terminated == info["game_over"]
        if terminated:
            break
    assert terminated and info["lives"] == 0
    assert seen_lives == {5, 4, 3, 2, 1, 0}


@pytest.mark.parametrize("game", ["Pong", "Catch"])
def test_time_limit_truncates(game: str) -> None:
    env = make_env(EnvConfig(game=game, time_limit=5), seed=0)
    env.reset()
    for step in range(1, 6):
        _, _, terminated, truncated, info = env.step(0)
        assert not terminated and info["game_over"] is False
        assert truncated == (step == 5)


def test_reset_after_truncation_is_a_real_reset() -> None:
    env = make_env(EnvConfig(game="Breakout", time_limit=3), seed=0)
    env.reset()
    truncations = 0
    for _ in range(60):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            env.reset()
            if truncated:
                truncations += 1
                # A continued game would have run on (3 steps + 1 NOOP per cycle); a reset restarts the count
                # (FIRE, action 2, the no-ops, and maybe one FIRE after a ball lost during the no-ops).
                noop_frames = 4 * _find(env, NoopStart).last_noops
                assert 8 + noop_frames <= _frame_number(env) <= 12 + noop_frames
    assert truncations >= 10


# ----------------------------------------------------------------------------------------------------
# Names and rewards
# ----------------------------------------------------------------------------------------------------
def test_game_names() -> None:
    games = available_games()
    assert len(ATARI100K_GAMES) == 26 and set(ATARI100K_GAMES) <= set(games)
    assert "Catch" in games and "Asteroids" in games
    assert resolve_game("pong") == "Pong" and resolve_game("MSPACMAN") == "MsPacman"
    with pytest.raises(ValueError, match=r"unknown game 'Foo'; valid games: .*Pong"):
        resolve_game("Foo")
    with pytest.raises(ValueError, match="unknown game 'Foo'"):
        make_env("Foo", seed=0)


def test_transform_reward() -> None:
    assert transform_reward(2.0, EnvConfig(reward_transform="tanh")) == pytest.approx(math.tanh(2.0))
    assert transform_reward(-7.0, EnvConfig(reward_transform="none")) == -7.0
    rewards = np.array([-3.0, 0.0, 1.0])
    np.testing.assert_allclose(transform_reward(rewards, EnvConfig()), [math.tanh(-3.0), 0.0, math.tanh(1.0)])


# ----------------------------------------------------------------------------------------------------
# Snapshots
# ----------------------------------------------------------------------------------------------------
def _play(env: gym.Env, actions: np.ndarray) -> list[tuple]:
    """Step through `actions`, resetting on episode ends; record everything observable."""
    trace: list[tuple] = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(int(action))
        trace.append((obs.copy(), float(reward), terminated, truncated, info["lives"], info["game_over"]))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((obs.copy(), info["lives"]))
    return trace


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("game", "warmup", "time_limit"), [("Pong", 30, 27000), ("Catch", 40, 60),
                                                             ("Catch", 40, 27000), ("Breakout", 20, 27000)])
def test_snapshot_restore_replays_bit_identically(game: str, warmup: int, time_limit: int) -> None:
    # Catch and Breakout episodes end inside the 50 replayed steps, so the resets (and their RNG) are covered;
    # with time_limit=60 the Catch replay is truncated after 20 steps (the time-limit count is restored).
    cfg = EnvConfig(game=game, time_limit=time_limit)
    env = make_env(cfg, seed=3)
    env.reset()
    rng = np.random.default_rng(0)
    for action in rng.integers(env.action_space.n, size=warmup):
        _, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            env.reset()
    snap = snapshot(env)
    actions = rng.integers(env.action_space.n, size=50)
    first = _play(env, actions)
    restore(env, snap)
    second = _play(env, actions)
    assert _same(first, second)
    restore(env, snap)  # the snapshot is not consumed or aliased by a restore
    assert _same(first, _play(env, actions))
    # A fresh env with the same construction arguments can be restored too.
    other = make_env(cfg, seed=99)
    other.reset()
    restore(other, snap)
    assert _same(first, _play(other, actions))
    # And the check has teeth: other actions give another trace.
    restore(env, snap)
    assert not _same(first, _play(env, (actions + 1) % env.action_space.n))


def test_snapshot_warns_with_sticky_actions() -> None:
    env = make_env(EnvConfig(game="Pong", sticky_action_prob=0.25), seed=0)
    env.reset()
    with pytest.warns(RuntimeWarning, match="sticky"):
        snapshot(env)


def test_restore_rejects_another_stack() -> None:
    catch = make_env("Catch", seed=0)
    catch.reset()
    pong = make_env("Pong", seed=0)
    pong.reset()
    with pytest.raises(ValueError, match="cannot restore"):
        restore(pong, snapshot(catch))


# ----------------------------------------------------------------------------------------------------
# Catch
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_balls", [1, 3, 5])
def test_catch_rewards_and_episode_end(num_balls: int) -> None:
    env = Catch(num_balls=num_balls)
    env.reset(seed=num_balls)
    rng = np.random.default_rng(num_balls)
    rewards, steps, terminated = [], 0, False
    while not terminated:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
        assert not truncated and info["lives"] == 1
        rewards.append(reward)
        steps += 1
        assert steps < 1000
    nonzero = [r for r in rewards if r != 0]
    assert len(nonzero) == num_balls and set(nonzero) <= {-1.0, 1.0}
    assert rewards[-1] != 0, "the episode ends on the last ball's landing"
    assert info["balls_left"] == 0


def test_catch_perfect_policy_and_random_policy() -> None:
    env = make_env("Catch", seed=0)
    for _ in range(3):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            ball, paddle = _catch_positions(obs[-1])
            action = 0 if abs(ball - paddle) < 2 else (1 if ball < paddle else 2)
            obs, reward, done, _, info = env.step(action)
            total += reward
        assert info["game_over"] is True
        assert total == 5.0
    returns = []
    for _ in range(40):
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, done, _, _ = env.step(env.action_space.sample())
            total += reward
        returns.append(total)
    assert np.mean(returns) < -1.0


def test_catch_is_deterministic_given_seed() -> None:
    frames = []
    for _ in range(2):
        env = Catch()
        obs, _ = env.reset(seed=11)
        trace = [obs]
        for action in [0, 1, 2] * 10:
            trace.append(env.step(action)[0])
        frames.append(np.stack(trace))
    assert np.array_equal(frames[0], frames[1])
    first_balls = {_catch_positions(Catch().reset(seed=seed)[0])[0] for seed in range(5)}
    assert len(first_balls) > 1, "the seed chooses the ball column"


# ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_all_atari100k_games_run() -> None:
    start = time.monotonic()
    for game in ATARI100K_GAMES:
        env = make_env(game, seed=0)
        obs, info = env.reset()
        assert obs.shape == (4, 64, 64) and obs.dtype == np.uint8, game
        assert len(action_meanings(env)) == env.action_space.n, game
        for _ in range(10):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert obs.shape == (4, 64, 64) and isinstance(info["game_over"], bool), game
            if terminated or truncated:
                env.reset()
        env.close()
    assert time.monotonic() - start < 60
