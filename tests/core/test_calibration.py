"""Calibration of the reward and discount heads: the metric code on known arrays (perfect predictor, brute-force
AUROC), and `calibrate` on a debug agent over real Catch steps (shapes, bin counts, determinism, agreement with
the parallel dynamics forward)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from twm_core.agent import Agent
from twm_core.calibration import auroc, calibrate, summarize
from twm_core.envs import make_env, transform_reward
from twm_core.presets import debug
from twm_core.replay import ReplayBuffer


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def agent() -> Agent:
    torch.manual_seed(0)  # initial weights only
    cfg = debug("Catch")
    env = make_env(cfg.env, seed=0)
    num_actions = int(env.action_space.n)
    env.close()
    return Agent.build(cfg, num_actions)


@pytest.fixture(scope="module")
def replay(agent: Agent) -> ReplayBuffer:
    """300 real Catch steps under random actions (several balls caught or missed, so rewards and terminals)."""
    cfg = agent.config
    env = make_env(cfg.env, seed=1)
    buf = ReplayBuffer(400, cfg.env.frame_stack, cfg.env.frame_size)
    obs, info = env.reset()
    buf.reset_obs(obs, stack_reset=True)
    rng = np.random.default_rng(0)
    for _ in range(300):
        action = int(rng.integers(agent.num_actions))
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()
        buf.add(action, float(transform_reward(reward, cfg.env)), terminated, truncated, obs,
                bool(info.get("stack_reset", False)))
    env.close()
    return buf


def _arrays(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    real_r = rng.choice([-math.tanh(1), 0.0, math.tanh(1)], size=n, p=[0.1, 0.8, 0.1])
    terminal = rng.random(n) < 0.1
    return rng.normal(real_r, 0.3), real_r, rng.uniform(0, 1, n), terminal


def _brute_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_brute_force_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 300).astype(float) / 5  # coarse values: many ties
    labels = rng.random(300) < 0.3
    assert auroc(scores, labels) == pytest.approx(_brute_auroc(scores, labels), abs=1e-12)
    continuous = rng.random(300)
    assert auroc(continuous, labels) == pytest.approx(_brute_auroc(continuous, labels), abs=1e-12)


def test_auroc_without_both_classes_is_none() -> None:
    assert auroc(np.array([0.1, 0.5]), np.array([False, False])) is None
    assert auroc(np.array([0.1, 0.5]), np.array([True, True])) is None


def test_perfect_predictor() -> None:
    _, real_r, _, terminal = _arrays(1000)
    gamma = 0.99
    cal = summarize(real_r.copy(), real_r, gamma * (~terminal), terminal, discount_factor=gamma, num_windows=10,
                    generator=_generator())
    s = cal.summary
    assert s.reward_mae == 0.0 and s.reward_correlation == pytest.approx(1.0)
    assert s.discount_brier == 0.0 and s.terminal_auroc == 1.0
    assert s.num_steps == 1000 and s.num_terminals == int(terminal.sum())
    for row in cal.reward_values:  # one row per distinct real reward, predicted exactly
        assert row.mean_predicted == pytest.approx(row.value) and row.std_predicted == pytest.approx(0.0)
    assert sum(r.count for r in cal.reward_values) == 1000
    for b in cal.discount_bins:  # p = γ̂/γ ∈ {0, 1}: the end bins, each exactly right
        assert b.count == 0 or b.observed_continue == pytest.approx(b.mean_predicted)


def test_tables_count_every_step_and_points_are_capped() -> None:
    pred_r, real_r, pred_g, terminal = _arrays(7000, seed=3)
    pred_r[:5] = [-5.0, 5.0, -1.0, 1.0, 0.0]  # outside and on the edges of the range: clipped into the end bins
    cal = summarize(pred_r, real_r, pred_g, terminal, discount_factor=0.99, num_windows=7, generator=_generator(),
                    reward_range=(-1.0, 1.0), reward_bins=8, discount_bins=5, max_points=500)
    assert len(cal.reward_bins) == 8 and len(cal.discount_bins) == 5
    assert sum(b.count for b in cal.reward_bins) == sum(b.count for b in cal.discount_bins) == 7000
    assert cal.reward_bins[0].lower == -1.0 and cal.reward_bins[-1].upper == 1.0
    assert cal.discount_bins[0].lower == 0.0 and cal.discount_bins[-1].upper == 1.0
    assert [r.value for r in cal.reward_values] == pytest.approx([-math.tanh(1), 0.0, math.tanh(1)])
    assert len(cal.points.predicted_reward) == len(cal.points.terminal) == 500
    assert cal.summary.reward_correlation is not None and 0 < cal.summary.reward_correlation < 1
    assert cal.summary.terminal_auroc == pytest.approx(0.5, abs=0.05)  # γ̂ independent of the terminals


def test_constant_rewards_have_no_correlation() -> None:
    n = 50
    cal = summarize(np.zeros(n), np.zeros(n), np.full(n, 0.99), np.zeros(n, bool), discount_factor=0.99,
                    num_windows=1, generator=_generator())
    assert cal.summary.reward_correlation is None and cal.summary.terminal_auroc is None
    assert sum(b.count for b in cal.reward_bins) == n  # degenerate range widened, not divided by zero


def test_calibrate_shapes_counts_and_determinism(agent: Agent, replay: ReplayBuffer) -> None:
    seq_len = agent.config.train.wm_sequence_length
    cal = calibrate(agent, replay, 20, _generator(5), chunk_size=7)
    s = cal.summary
    assert s.num_windows == 20 and s.num_steps == 20 * seq_len and cal.sequence_length == seq_len
    assert sum(b.count for b in cal.reward_bins) == sum(b.count for b in cal.discount_bins) == s.num_steps
    assert len(cal.points.predicted_reward) == s.num_steps
    assert all(0.0 <= g <= 1.0 for g in cal.points.predicted_discount)
    rewards = np.array(cal.points.real_reward)  # stored as float32 tanh values
    assert np.abs(rewards[:, None] - np.array([-math.tanh(1), 0.0, math.tanh(1)])).min(1).max() < 1e-6
    again = calibrate(agent, replay, 20, _generator(5), chunk_size=7)
    assert again == cal
    assert calibrate(agent, replay, 20, _generator(6)) != cal


def test_calibrate_more_windows_than_starts_and_argmax(agent: Agent, replay: ReplayBuffer) -> None:
    seq_len = agent.config.train.wm_sequence_length
    n = replay.num_valid_starts(seq_len)
    cal = calibrate(agent, replay, n + 10, _generator(), latent="argmax", max_points=100)
    assert cal.summary.num_steps == (n + 10) * seq_len and len(cal.points.terminal) == 100
    assert cal.latent == "argmax"
    # argmax latents draw nothing but the windows and the subsample: the same answer for the same windows
    assert calibrate(agent, replay, n + 10, _generator(), latent="argmax", max_points=100) == cal


def test_calibrate_matches_the_training_forward(agent: Agent, replay: ReplayBuffer) -> None:
    """r̂, γ̂ of one window equal the parallel forward over the argmax latents of get_data(prefix=1)."""
    seq_len = agent.config.train.wm_sequence_length
    n = replay.num_valid_starts(seq_len)
    cal = calibrate(agent, replay, n, _generator(), latent="argmax", max_points=n * seq_len)
    wm = agent.world_model
    with torch.inference_mode():
        batch = replay.get_data(torch.arange(n), seq_len, prefix=1, return_next_obs=False)
        z = wm.obs_model.encode_sample(batch.obs)  # (n, ℓ+1, Z)
        dones = batch.terminated | batch.truncated
        out = wm.dyn_model(z, batch.actions, batch.rewards[:, :-1], dones[:, :-1])
    # all starts drawn (a permutation): compare as sorted multisets of (r̂, r, γ̂, terminal)
    expected = sorted(zip(out.reward[:, 1:].flatten().tolist(), batch.rewards[:, 1:].flatten().tolist(),
                          out.discount[:, 1:].flatten().tolist(), batch.terminated[:, 1:].flatten().tolist(),
                          strict=True))
    got = sorted(zip(cal.points.predicted_reward, cal.points.real_reward, cal.points.predicted_discount,
                     cal.points.terminal, strict=True))
    assert np.allclose(np.array(got, dtype=float), np.array(expected, dtype=float), atol=1e-5)
    assert cal.summary.num_terminals == int(batch.terminated[:, 1:].sum())


def test_calibrate_rejects_a_buffer_shorter_than_a_window(agent: Agent) -> None:
    cfg = agent.config
    buf = ReplayBuffer(10, cfg.env.frame_stack, cfg.env.frame_size)
    buf.reset_obs(np.zeros((cfg.env.frame_stack, 64, 64), np.uint8), stack_reset=True)
    with pytest.raises(ValueError, match="fewer than one window"):
        calibrate(agent, buf, 4, _generator())
    with pytest.raises(ValueError, match="num_windows"):
        calibrate(agent, buf, 0, _generator())
