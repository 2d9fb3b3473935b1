"""Aggregate metrics and the stratified bootstrap (twm_core.stats) on hand-computed cases, and the paper's numbers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from twm_core import stats
from twm_core.report import load_reference, paper_aggregates

# Ragged: game A 2 runs (mean 0.5), game B 1 run (mean 2), game C 3 runs (mean 4).
RAGGED = [np.array([0.0, 1.0]), np.array([2.0]), np.array([3.0, 3.0, 6.0])]


def test_iqm_trims_a_quarter_each_side_of_the_pooled_scores():
    # 8 pooled scores: 0, 1 and 6, 100 are trimmed; the mean of 2, 3, 4, 5 is 3.5 (the plain mean is 15.125).
    scores = np.array([[0.0, 4.0, 1.0, 100.0], [5.0, 2.0, 6.0, 3.0]])  # (R=2, G=4)
    assert stats.iqm(scores) == pytest.approx(3.5)
    assert stats.iqm([scores[:, g] for g in range(4)]) == pytest.approx(3.5)


def test_mean_and_median_are_over_per_game_means():
    assert stats.mean(RAGGED) == pytest.approx((0.5 + 2.0 + 4.0) / 3)  # not the pooled mean 15/6 = 2.5
    assert stats.median(RAGGED) == pytest.approx(2.0)
    square = np.array([[1.0, 10.0], [3.0, 20.0]])  # (R, G): columns are games, means 2 and 15
    assert stats.mean(square) == pytest.approx(8.5)
    assert stats.median(square) == pytest.approx(8.5)


def test_optimality_gap_pools_the_shortfall_below_one():
    scores = [np.array([0.5, 1.5]), np.array([-1.0, 1.0])]  # shortfalls 0.5, 0, 2, 0
    assert stats.optimality_gap(scores) == pytest.approx(2.5 / 4)
    assert stats.optimality_gap(scores, gamma=2.0) == pytest.approx((1.5 + 0.5 + 3.0 + 1.0) / 4)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="2-D"):
        stats.mean(np.zeros(3))
    with pytest.raises(ValueError, match="no games"):
        stats.mean([])
    with pytest.raises(ValueError, match="game 1"):
        stats.mean([np.ones(2), np.array([])])


@pytest.mark.parametrize("name", sorted(stats.AGGREGATES))
def test_identical_runs_give_a_zero_width_ci_at_the_value(name):
    fn = stats.AGGREGATES[name]
    scores = [np.full(3, 0.2), np.full(5, 1.7), np.full(2, -0.4)]
    low, high = stats.stratified_bootstrap_ci(scores, fn, reps=500)
    assert low == pytest.approx(float(fn(scores))) and high == pytest.approx(float(fn(scores)))


@pytest.mark.parametrize("name", sorted(stats.AGGREGATES))
def test_resampling_never_mixes_games(name):
    # Each game's runs are constant; a bootstrap that drew across games would move every aggregate.
    fn = stats.AGGREGATES[name]
    scores = np.array([[0.0, 1.0, 5.0, 9.0]] * 4)  # (R=4, G=4): game g always scores scores[0, g]
    replicates = stats.bootstrap_replicates(scores, fn, reps=300, seed=1)
    assert np.allclose(replicates, fn(scores))


def test_ci_on_a_known_resampling_support():
    # One game, runs {0, 1}: a resample's mean is 0, 0.5 or 1 with p = 1/4, 1/2, 1/4, so the 95% interval is [0, 1].
    low, high = stats.stratified_bootstrap_ci([np.array([0.0, 1.0])], stats.mean, reps=2000)
    assert (low, high) == (0.0, 1.0)
    rng = np.random.default_rng(3)
    scores = [rng.normal(g, 1.0, size=5) for g in range(6)]
    for fn in stats.AGGREGATES.values():
        low, high = stats.stratified_bootstrap_ci(scores, fn, reps=1000)
        pooled = np.concatenate(scores)
        assert pooled.min() - 1 <= low <= float(fn(scores)) <= high <= pooled.max() + 1
        assert high > low


def test_bootstrap_is_deterministic_with_its_seed():
    scores = np.random.default_rng(0).normal(size=(5, 26))
    first = stats.stratified_bootstrap_ci(scores, stats.iqm, seed=7)
    assert stats.stratified_bootstrap_ci(scores, stats.iqm, seed=7) == first
    assert stats.stratified_bootstrap_ci(scores, stats.iqm, seed=8) != first


def test_an_unbatched_statistic_gives_the_same_interval():
    scores = np.random.default_rng(0).normal(size=(5, 4))

    def loop_mean(games: list[np.ndarray]) -> float:
        return float(np.mean([g.mean() for g in games]))  # reduces every axis: not batched

    assert stats.stratified_bootstrap_ci(scores, loop_mean, reps=200) == pytest.approx(
        stats.stratified_bootstrap_ci(scores, stats.mean, reps=200))


def test_bootstrap_of_26_games_by_5_runs_is_fast():
    scores = np.random.default_rng(0).normal(size=(5, 26))
    start = time.perf_counter()
    for fn in stats.AGGREGATES.values():
        stats.stratified_bootstrap_ci(scores, fn, reps=2000)
    assert time.perf_counter() - start < 2.0


def test_performance_profile_weights_games_equally():
    scores = [np.array([0.0, 2.0]), np.array([1.0, 1.0, 3.0, 3.0])]
    profile = stats.performance_profile(scores, [0.5, 1.0, 1.5, 2.5], reps=500)
    # Game A above tau: 1/2, 1/2, 1/2, 0; game B: 1, 1/2 (1.0 is not > 1.0), 1/2, 1/2. Pooled runs would give 5/6 first.
    assert profile.fraction == pytest.approx([0.75, 0.5, 0.5, 0.25])
    assert np.all(profile.ci_low <= profile.fraction) and np.all(profile.fraction <= profile.ci_high)
    assert profile.ci_high[0] > profile.ci_low[0]
    constant = stats.performance_profile(np.array([[0.0, 2.0]] * 3), [1.0], reps=200)
    assert constant.fraction == pytest.approx([0.5])
    assert constant.ci_low == pytest.approx([0.5]) and constant.ci_high == pytest.approx([0.5])
    assert stats.performance_profile(scores, [0.5], reps=0).ci_low is None


def test_paper_aggregates_from_the_authors_per_run_scores():
    reference = load_reference()
    hns = [np.array([(s - ref["random"]) / (ref["human"] - ref["random"]) for s in ref["TWM_runs"]])
           for ref in reference.values()]
    assert len(hns) == 26 and all(x.shape == (5,) for x in hns)
    assert round(float(stats.mean(hns)), 3) == 0.956  # paper Table 1
    assert round(float(stats.median(hns)), 3) == 0.505
    assert float(stats.iqm(hns)) == pytest.approx(0.46, abs=0.01)
    twm = paper_aggregates()["TWM (paper)"]
    assert twm["mean"]["value"] == pytest.approx(float(stats.mean(hns)))
    for entry in twm.values():
        assert entry["ci_low"] < entry["value"] < entry["ci_high"]
