"""Calibration of the world model's reward and discount heads on replay data (issue #17, item 8).

The dynamics model ψ is run exactly as the world-model loss runs it (`wm_training._dynamics_loss`): windows of
ℓ = `train.wm_sequence_length` steps plus one context step from `ReplayBuffer.get_data(prefix=1)`, teacher-forced
with the encoder's latents of the real observations, through the parallel `DynamicsModel.forward`. So r̂_t and
γ̂_t here are the very predictions training fits to the stored (transformed) reward r_t and to γ·(1 − terminated_t).

Latents are *sampled* from the encoder (temperature 1, as the straight-through samples training feeds ψ), not the
argmax that acting uses: calibration measures the function training optimises, and ψ has only ever seen samples.
`latent="argmax"` is there to compare. Every random choice (windows, latent samples, the plotted subsample) draws
from the caller's generator, on the CPU, so one seed gives one answer on any device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from twm_core.agent import Agent
from twm_core.performance import autocast
from twm_core.replay import ReplayBuffer

Latent = Literal["sample", "argmax"]


@dataclass(frozen=True)
class CalibrationPoints:
    """A subsample of the predicted steps (for scatter plots), in window order. Terminal: terminated, not truncated."""

    predicted_reward: list[float]
    real_reward: list[float]
    predicted_discount: list[float]
    terminal: list[bool]


@dataclass(frozen=True)
class RewardBin:
    """Steps whose r̂ falls in [lower, upper) (values outside the range go to the end bins)."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    mean_real: float | None


@dataclass(frozen=True)
class RewardValue:
    """r̂ on the steps whose real (transformed) reward is `value`: calibrated heads give mean ≈ value."""

    value: float
    count: int
    mean_predicted: float
    std_predicted: float


@dataclass(frozen=True)
class DiscountBin:
    """Reliability bin of p = γ̂/γ (the predicted probability of continuing) in [lower, upper)."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_continue: float | None
    """Fraction of the bin's steps that did not terminate; calibrated: ≈ mean_predicted."""


@dataclass(frozen=True)
class CalibrationSummary:
    reward_mae: float
    reward_correlation: float | None
    """Pearson r(r̂, r); None when either is constant (e.g. no reward in the sampled windows)."""
    discount_brier: float
    """mean (γ̂ − γ·(1 − terminal))², the discount head's target."""
    terminal_auroc: float | None
    """AUROC of 1 − γ̂ as a terminal detector; None without both terminal and non-terminal steps."""
    num_windows: int
    num_steps: int
    num_terminals: int


@dataclass(frozen=True)
class Calibration:
    step: int
    sequence_length: int
    discount_factor: float
    latent: Latent
    summary: CalibrationSummary
    reward_bins: list[RewardBin]
    reward_values: list[RewardValue]
    discount_bins: list[DiscountBin]
    points: CalibrationPoints


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative), ties counting 1/2 (Mann-Whitney U over average ranks).

    Shapes: scores (N,), labels (N,) bool. None when either class is empty.
    """
    labels = labels.astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last element of each tie group
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average rank of each element
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _binned(x: np.ndarray, lo: float, hi: float, num_bins: int) -> np.ndarray:
    """Bin index of each x in `num_bins` equal bins over [lo, hi]; values outside fall into the end bins."""
    idx = np.floor((x - lo) / (hi - lo) * num_bins).astype(np.int64)
    return np.clip(idx, 0, num_bins - 1)


def _bin_means(idx: np.ndarray, num_bins: int, *values: np.ndarray) -> tuple[np.ndarray, list[list[float | None]]]:
    counts = np.bincount(idx, minlength=num_bins)
    means = [[float(s / c) if c else None for s, c in zip(np.bincount(idx, v, num_bins), counts, strict=True)]
             for v in values]
    return counts, means


def _reward_tables(pred_r: np.ndarray, real_r: np.ndarray, reward_range: tuple[float, float] | None,
                   num_bins: int, max_values: int) -> tuple[list[RewardBin], list[RewardValue]]:
    if reward_range is None:  # untransformed rewards: the range of both, widened when degenerate
        both = np.concatenate([pred_r, real_r])
        reward_range = (float(both.min()), float(both.max())) if both.size else (0.0, 0.0)
    lo, hi = reward_range if reward_range[0] < reward_range[1] else (reward_range[0] - 0.5, reward_range[0] + 0.5)
    edges = np.linspace(lo, hi, num_bins + 1)
    counts, (mean_p, mean_r) = _bin_means(_binned(pred_r, lo, hi, num_bins), num_bins, pred_r, real_r)
    bins = [RewardBin(float(edges[i]), float(edges[i + 1]), int(counts[i]), mean_p[i], mean_r[i])
            for i in range(num_bins)]
    values, inverse, value_counts = np.unique(real_r, return_inverse=True, return_counts=True)
    # continuous rewards would give one row per step: keep the most frequent values, listed by value
    keep = np.sort(np.argsort(-value_counts, kind="stable")[:max_values])
    rows = [RewardValue(float(values[k]), int(value_counts[k]), float(pred_r[inverse == k].mean()),
                        float(pred_r[inverse == k].std())) for k in keep]
    return bins, rows


def _discount_table(pred_g: np.ndarray, terminal: np.ndarray, discount_factor: float,
                    num_bins: int) -> list[DiscountBin]:
    p = np.clip(pred_g / discount_factor, 0.0, 1.0)  # γ̂ ∈ [0, 1] but its target is γ·(1 − d): rescale to P(continue)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    counts, (mean_p, cont) = _bin_means(_binned(p, 0.0, 1.0, num_bins), num_bins, p, (~terminal).astype(np.float64))
    return [DiscountBin(float(edges[i]), float(edges[i + 1]), int(counts[i]), mean_p[i], cont[i])
            for i in range(num_bins)]


def summarize(pred_r: np.ndarray, real_r: np.ndarray, pred_g: np.ndarray, terminal: np.ndarray, *,
              discount_factor: float, num_windows: int, generator: torch.Generator, step: int = 0,
              sequence_length: int = 0, latent: Latent = "sample", reward_range: tuple[float, float] | None = None,
              reward_bins: int = 20, discount_bins: int = 10, max_reward_values: int = 16,
              max_points: int = 5000) -> Calibration:
    """Tables and metrics of per-step predictions; pure, so the metric code is testable on known arrays.

    Shapes: all (N,) with N the number of predicted steps; `terminal` bool (terminated, not truncated).
    """
    n = pred_r.shape[0]
    if not pred_r.shape == real_r.shape == pred_g.shape == terminal.shape == (n,) or n == 0:
        raise ValueError(f"need equal non-empty (N,) arrays, got {pred_r.shape}, {real_r.shape}, {pred_g.shape}, "
                         f"{terminal.shape}")
    pred_r, real_r, pred_g = (a.astype(np.float64) for a in (pred_r, real_r, pred_g))
    terminal = terminal.astype(bool)
    corr = None
    if n > 1 and pred_r.std() > 0 and real_r.std() > 0:
        corr = float(np.corrcoef(pred_r, real_r)[0, 1])
    target_g = discount_factor * (~terminal)
    summary = CalibrationSummary(
        reward_mae=float(np.abs(pred_r - real_r).mean()), reward_correlation=corr,
        discount_brier=float(((pred_g - target_g) ** 2).mean()), terminal_auroc=auroc(1.0 - pred_g, terminal),
        num_windows=num_windows, num_steps=n, num_terminals=int(terminal.sum()))
    r_bins, r_values = _reward_tables(pred_r, real_r, reward_range, reward_bins, max_reward_values)
    keep = np.arange(n)
    if n > max_points:
        keep = torch.randperm(n, generator=generator)[:max_points].sort().values.numpy()
    points = CalibrationPoints(pred_r[keep].tolist(), real_r[keep].tolist(), pred_g[keep].tolist(),
                               terminal[keep].tolist())
    return Calibration(step, sequence_length, discount_factor, latent, summary, r_bins, r_values,
                       _discount_table(pred_g, terminal, discount_factor, discount_bins), points)


def _window_starts(replay: ReplayBuffer, num_windows: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform window starts (distinct while the buffer has enough of them). Shape (num_windows,)."""
    n = replay.num_valid_starts(seq_len)
    if n < 1:
        raise ValueError(f"the replay buffer holds {replay.size} steps, fewer than one window of {seq_len}")
    if num_windows <= n:
        return torch.randperm(n, generator=generator)[:num_windows]
    return torch.randint(n, (num_windows,), generator=generator)


@torch.inference_mode()
def _predict(agent: Agent, replay: ReplayBuffer, starts: torch.Tensor, seq_len: int, generator: torch.Generator,
             latent: Latent) -> tuple[torch.Tensor, ...]:
    """r̂, γ̂, r, terminated of the ℓ predicted steps of each window, as `_dynamics_loss` scores them.

    Shapes: starts (B,) -> four (B, ℓ) tensors on the CPU.
    """
    wm, device, amp = agent.world_model, agent.device, agent.config.train.amp
    batch = replay.get_data(starts, seq_len, prefix=1, return_next_obs=False).to(device)  # obs (B, ℓ+1, F, S, S)
    with autocast(amp, device):
        logits = wm.obs_model.encode(batch.obs).float()  # (B, ℓ+1, C, K)
    # sampled on the CPU: the caller's generator lives there, and the draw must not depend on the device
    z = wm.obs_model.sample(logits.cpu(), 1.0 if latent == "sample" else 0.0, generator=generator)  # (B, ℓ+1, Z)
    dones = batch.terminated | batch.truncated  # (B, ℓ+1)
    with autocast(amp, device):
        out = wm.dyn_model(z.to(device), batch.actions, batch.rewards[:, :-1], dones[:, :-1]).float()
    # step 0 is the context step: training scores steps 1..ℓ only
    return tuple(x[:, 1:].cpu() for x in (out.reward, out.discount, batch.rewards, batch.terminated))


def calibrate(agent: Agent, replay: ReplayBuffer, num_windows: int, generator: torch.Generator, *,
              latent: Latent = "sample", chunk_size: int = 64, max_points: int = 5000, reward_bins: int = 20,
              discount_bins: int = 10) -> Calibration:
    """Reward and discount calibration of `agent`'s world model on `num_windows` uniform replay windows.

    Raises ValueError for a buffer shorter than one window or bad sizes.
    """
    if num_windows < 1 or chunk_size < 1 or max_points < 1:
        raise ValueError(f"num_windows, chunk_size and max_points must be >= 1, got {num_windows}, {chunk_size}, "
                         f"{max_points}")
    cfg = agent.config
    seq_len = cfg.train.wm_sequence_length
    starts = _window_starts(replay, num_windows, seq_len, generator)
    parts = [_predict(agent, replay, chunk, seq_len, generator, latent) for chunk in starts.split(chunk_size)]
    pred_r, pred_g, real_r, terminal = (torch.cat(xs).flatten().numpy() for xs in zip(*parts, strict=True))
    # tanh rewards live in (−1, 1): fixed bins there make tables of different checkpoints comparable
    reward_range = (-1.0, 1.0) if cfg.env.reward_transform == "tanh" else None
    return summarize(pred_r, real_r, pred_g, terminal, discount_factor=cfg.env.discount_factor,
                     num_windows=num_windows, generator=generator, step=agent.step, sequence_length=seq_len,
                     latent=latent, reward_range=reward_range, reward_bins=reward_bins, discount_bins=discount_bins,
                     max_points=max_points)
