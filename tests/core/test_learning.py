"""Proof that every sign in the method is right: the `catch` preset learns the built-in Catch game on a CPU.

The policy trained by the full method (prefill, pretraining, world-model updates, imagination, actor-critic) is
compared with a uniformly random policy, both over 50 evaluation episodes.
"""

from __future__ import annotations

import numpy as np
import pytest

from twm_core.envs import make_env
from twm_core.presets import make_config
from twm_core.run_dir import RunDir
from twm_core.trainer import Trainer


def random_policy_mean(episodes: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        env = make_env("Catch", seed=seed + episode, eval=True)
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.slow
def test_catch_policy_beats_random_by_a_wide_margin(tmp_path):
    cfg = make_config("catch", "Catch", seed=0)
    summary = Trainer(cfg, RunDir(tmp_path / "catch"), "cpu").run()
    trained = summary["eval/final_score_mean"]
    random = random_policy_mean(50, seed=1234)
    print(f"Catch, 50 episodes: trained {trained:.2f}, random {random:.2f} (perfect +5)")
    assert summary["eval/final_episodes"] == 50
    assert trained >= random + 2.0, f"trained {trained:.2f} vs random {random:.2f}"
