"""Aggregate metrics with stratified-bootstrap confidence intervals (Agarwal et al. 2021, "Deep RL at the edge of
the statistical precipice"), on numpy and scipy only.

Scores are human-normalized, one per (run, game). They come either as a 2-D array shaped (R, G) (R runs of each of
G games) or as a list of G per-game arrays whose LAST axis holds that game's runs, so games may have different
numbers of runs (ragged). Any leading axes of the per-game arrays are batch axes: every aggregate here maps arrays
shaped (..., n_g) to results shaped (...), which is how the bootstrap evaluates all its replicates in one call.

The aggregates follow rliable: `mean` and `median` are taken over per-game mean scores; `iqm` and
`optimality_gap` pool every (run, game) score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp_stats

ScoresLike = np.ndarray | Sequence[np.ndarray] | Sequence[Sequence[float]]
"""(R, G) array, or G per-game arrays shaped (..., n_g)."""
AggregateFn = Callable[[list[np.ndarray]], np.ndarray | float]
"""Per-game arrays shaped (..., n_g) -> aggregate shaped (...)."""


def per_game(scores: ScoresLike) -> list[np.ndarray]:
    """Normalise the input to a list of G float arrays, runs on the last axis.

    Shapes: a 2-D ndarray (R, G) becomes G arrays (R,); a sequence of G arrays (..., n_g) is kept as is.
    """
    if isinstance(scores, np.ndarray):
        if scores.ndim != 2:
            raise ValueError(f"a score array must be 2-D (runs, games), got shape {scores.shape}")
        games = [scores[:, g] for g in range(scores.shape[1])]
    else:
        games = [np.asarray(x) for x in scores]
    out = [np.asarray(x, dtype=np.float64) for x in games]
    if not out:
        raise ValueError("no games: at least one game's scores are needed")
    for g, x in enumerate(out):
        if x.ndim == 0 or x.shape[-1] == 0:
            raise ValueError(f"game {g}: expected at least one run on the last axis, got shape {x.shape}")
    return out


def _pooled(games: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(games, axis=-1)  # (..., sum of n_g)


def _game_means(games: list[np.ndarray]) -> np.ndarray:
    return np.stack([x.mean(axis=-1) for x in games], axis=-1)  # (..., G)


def mean(scores: ScoresLike) -> np.ndarray | float:
    """Mean over games of the per-game mean score."""
    return _game_means(per_game(scores)).mean(axis=-1)


def median(scores: ScoresLike) -> np.ndarray | float:
    """Median over games of the per-game mean score."""
    return np.median(_game_means(per_game(scores)), axis=-1)


def iqm(scores: ScoresLike) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% of all (run, game) scores pooled (25% trimmed each side)."""
    return sp_stats.trim_mean(_pooled(per_game(scores)), 0.25, axis=-1)


def optimality_gap(scores: ScoresLike, gamma: float = 1.0) -> np.ndarray | float:
    """Mean shortfall below `gamma` of all (run, game) scores pooled: mean(max(0, gamma - score))."""
    return np.clip(gamma - _pooled(per_game(scores)), 0.0, None).mean(axis=-1)


AGGREGATES: dict[str, AggregateFn] = {"mean": mean, "median": median, "iqm": iqm, "optimality_gap": optimality_gap}
"""The four aggregates of rliable's Atari 100k reports, by name (the report's keys)."""


def bootstrap_replicates(scores_per_game: ScoresLike, statistic: AggregateFn, reps: int = 2000,
                         seed: int = 0) -> np.ndarray:
    """`statistic` on `reps` stratified resamples: each game's runs are drawn with replacement within that game.

    Games are never mixed, so a game keeps its weight and its run count in every replicate. `statistic` is called
    once on (reps, n_g) arrays when it broadcasts over leading axes (all of `AGGREGATES` do), else once per
    replicate. Shapes: returns (reps, ...) where (...) is the shape of one `statistic` value.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    games = per_game(scores_per_game)
    if any(x.ndim != 1 for x in games):
        raise ValueError(f"expected 1-D per-game run scores, got shapes {[x.shape for x in games]}")
    rng = np.random.default_rng(seed)
    resampled = [x[rng.integers(0, x.size, size=(reps, x.size))] for x in games]  # G × (reps, n_g)
    single = np.shape(statistic([x[:1] for x in resampled]))  # the statistic's own shape, probed on one replicate
    values = np.asarray(statistic(resampled), dtype=np.float64)
    if values.shape != (reps, *single[1:]) or single[:1] != (1,):
        # Not batched (it reduced the replicate axis too): evaluate replicate by replicate.
        values = np.stack([np.asarray(statistic([x[i] for x in resampled]), dtype=np.float64) for i in range(reps)])
    return values


def stratified_bootstrap_ci(scores_per_game: ScoresLike, aggregate_fn: AggregateFn, reps: int = 2000,
                            confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile confidence interval `(low, high)` of a scalar aggregate under the stratified bootstrap.

    Deterministic for a given `seed` (numpy `Generator`). The point estimate is `aggregate_fn(scores_per_game)`.
    """
    _check_confidence(confidence)
    values = bootstrap_replicates(scores_per_game, aggregate_fn, reps, seed)  # (reps,)
    if values.ndim != 1:
        raise ValueError(f"aggregate_fn must return a scalar per replicate, got shape {values.shape[1:]}")
    low, high = _percentile_interval(values, confidence)
    return float(low), float(high)


@dataclass(frozen=True)
class Profile:
    """A performance profile: for each threshold tau, the fraction of runs scoring above it, with its CI band."""

    taus: np.ndarray
    """Thresholds, shape (T,)."""
    fraction: np.ndarray
    """Average over games of the per-game fraction of runs with score > tau, shape (T,)."""
    ci_low: np.ndarray | None
    """Lower edge of the bootstrap band, shape (T,); None when `reps == 0`."""
    ci_high: np.ndarray | None
    """Upper edge of the bootstrap band, shape (T,); None when `reps == 0`."""


def fraction_above(scores: ScoresLike, taus: np.ndarray) -> np.ndarray:
    """Average over games of the fraction of that game's runs scoring above each tau (games weigh equally).

    Shapes: per-game (..., n_g), taus (T,) -> (..., T).
    """
    taus = np.asarray(taus, dtype=np.float64)
    per_game_fraction = [(x[..., :, None] > taus).mean(axis=-2) for x in per_game(scores)]  # G × (..., T)
    return np.mean(per_game_fraction, axis=0)


def performance_profile(scores_per_game: ScoresLike, taus: np.ndarray | Sequence[float], reps: int = 2000,
                        confidence: float = 0.95, seed: int = 0) -> Profile:
    """Score distribution (fraction of runs above tau, games weighted equally) with stratified-bootstrap bands.

    Shapes: taus (T,) -> every array of the `Profile` is (T,). `reps=0` skips the bands.
    """
    _check_confidence(confidence)
    taus = np.asarray(taus, dtype=np.float64)
    if taus.ndim != 1:
        raise ValueError(f"taus must be 1-D, got shape {taus.shape}")
    fraction = fraction_above(scores_per_game, taus)
    if reps == 0:
        return Profile(taus, fraction, None, None)

    def statistic(games: list[np.ndarray]) -> np.ndarray:
        return fraction_above(games, taus)

    values = bootstrap_replicates(scores_per_game, statistic, reps, seed)  # (reps, T)
    low, high = _percentile_interval(values, confidence)
    return Profile(taus, fraction, low, high)


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (the replicates)."""
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [alpha, 100.0 - alpha], axis=0)
    return low, high


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
