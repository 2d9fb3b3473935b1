"""Evaluation protocol (method.md §6.4): no no-op starts, all lives, raw scores, stochastic policy.

Episodes run in lockstep batches of environments; a batch starts together and ends when all of its episodes are
over ("to remove bias for shorter episodes"), and the first N scores are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from twm_core.acting import PolicyRunner
from twm_core.config import TWMConfig
from twm_core.envs import make_env, transform_reward
from twm_core.models.actor_critic import ActorCritic
from twm_core.report import load_reference
from twm_core.seeding import derive_seed
from twm_core.world_model import WorldModel


@dataclass(frozen=True)
class EpisodeResult:
    score: float
    length: int


def reference_scores() -> dict:
    """Random, human and published scores per game (paper Table 1 and the authors' per-run results)."""
    return load_reference()


def human_normalized(game: str, score: float) -> float | None:
    """(score − random) / (human − random), or None for games without reference scores (e.g. Catch)."""
    ref = reference_scores().get(game)
    if ref is None:
        return None
    return (score - ref["random"]) / (ref["human"] - ref["random"])


@torch.no_grad()
def evaluate(wm: WorldModel, ac: ActorCritic, cfg: TWMConfig, episodes: int, seed: int, device: torch.device,
             max_parallel: int = 8, on_episode: Callable[[EpisodeResult], None] | None = None,
             temperature: float = 1.0) -> list[EpisodeResult]:
    """Play `episodes` full episodes with the current policy and return their raw scores; `on_episode` is called
    as each episode ends (progress reporting: it must not act or draw random numbers). `temperature` 1 samples the
    actions, as the reference evaluates; 0 plays the policy's argmax (a diagnostic: the greedy policy)."""
    results: list[EpisodeResult] = []
    round_index = 0
    while len(results) < episodes:
        n = min(max_parallel, episodes - len(results))
        envs = [make_env(cfg.env, seed=derive_seed(seed, f"eval-{round_index}-{i}"), eval=True) for i in range(n)]
        try:
            results.extend(_play_round(envs, PolicyRunner(wm, ac, n, device), cfg, on_episode, temperature))
        finally:
            for env in envs:
                env.close()
        round_index += 1
    return results[:episodes]


def _play_round(envs: list, runner: PolicyRunner, cfg: TWMConfig,
                on_episode: Callable[[EpisodeResult], None] | None = None,
                temperature: float = 1.0) -> list[EpisodeResult]:
    n = len(envs)
    obs = np.stack([env.reset()[0] for env in envs])
    scores, lengths = np.zeros(n), np.zeros(n, dtype=int)
    finished = np.zeros(n, dtype=bool)
    rewards, dones = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=bool)
    while not finished.all():
        actions = runner.act(obs, rewards, dones, temperature=temperature)
        for i, env in enumerate(envs):
            if finished[i]:
                continue
            o, r, terminated, truncated, _ = env.step(int(actions[i]))
            scores[i] += r
            lengths[i] += 1
            rewards[i], dones[i] = transform_reward(r, cfg.env), terminated or truncated
            obs[i] = o
            finished[i] = terminated or truncated
            if finished[i] and on_episode is not None:
                on_episode(EpisodeResult(float(scores[i]), int(lengths[i])))
    return [EpisodeResult(float(s), int(n_steps)) for s, n_steps in zip(scores, lengths, strict=True)]


def summarize(game: str, results: list[EpisodeResult], prefix: str = "eval/") -> dict[str, float]:
    """Mean, std, median, min, max of the scores, and the human-normalized mean where defined."""
    scores = np.array([r.score for r in results], dtype=np.float64)
    out = {f"{prefix}score_mean": float(scores.mean()), f"{prefix}score_std": float(scores.std()),
           f"{prefix}score_median": float(np.median(scores)), f"{prefix}score_min": float(scores.min()),
           f"{prefix}score_max": float(scores.max()), f"{prefix}episodes": float(len(scores)),
           f"{prefix}length_mean": float(np.mean([r.length for r in results]))}
    hns = human_normalized(game, out[f"{prefix}score_mean"])
    if hns is not None:
        out[f"{prefix}hns"] = hns
    return out
