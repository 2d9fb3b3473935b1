"""Pure helpers of the Inspector and Calibration pages: branch recipes, the viewer's data, film checkpoints,
divergence, calibration figures."""

from __future__ import annotations

import pytest

from frontend import calibration_views as cv
from frontend import inspector_views as iv


def test_recipes_round_trip_and_fork_bodies() -> None:
    assert iv.recipe(5, action=2) == "s5a2" and iv.parse_recipe("s5a2") == {"step": 5, "action": 2}
    assert iv.recipe(5, latent=(3, 11)) == "s5c3k11"
    assert iv.parse_recipe("s5c3k11") == {"step": 5, "latent": [{"categorical": 3, "category": 11}]}
    for bad in ("", "s5", "a2", "s5a", "s-1a2", "s5a2;drop"):
        assert iv.parse_recipe(bad) is None
    assert iv.fork_body("s5a2", 24) == {"step": 5, "action": 2, "steps": 18}  # 5 + the action + 18 = 24
    assert iv.fork_body("s5c3k11", 24)["steps"] == 19
    assert iv.fork_body("s30a1", 24)["steps"] == 0
    assert iv.recipe_label("s5a2", ["NOOP", "FIRE", "RIGHT"]) == "fork at step 5: RIGHT"
    with pytest.raises(ValueError):
        iv.recipe(3)


def _point(step: int, pixel: float | None) -> dict:
    return {"step": step, "frame": f"F{step}", "real": {"frame": f"R{step}"} if pixel is not None else None,
            "errors": None if pixel is None else {"pixel": pixel, "latent_ce": None, "reward": None, "discount": None},
            "action": None if step == 0 else 1, "reward": None if step == 0 else 0.1, "discount": 0.99,
            "done": False, "restarted": False, "latent": [0, 1], "confidence": None}


def test_viewer_data_tracks_and_version() -> None:
    branch = {"id": "abc", "label": "main", "points": [_point(0, 0.01), _point(1, 0.2), _point(2, None)]}
    data = iv.viewer_data([branch], ["NOOP", "FIRE"], [2, 4], step=1)
    (track,) = data["tracks"]
    assert track["frames"] == ["F0", "F1", "F2"] and track["real"] == ["R0", "R1", None]
    assert track["actions"] == [None, "FIRE", "FIRE"] and data["step"] == 1 and data["film"] is False
    longer = {**branch, "points": [*branch["points"], _point(3, None)]}
    assert iv.viewer_data([longer], ["NOOP", "FIRE"], [2, 4], step=1)["version"] != data["version"]
    assert iv.first_divergence(branch["points"], "pixel", 0.05) == 1
    assert iv.first_divergence(branch["points"], "pixel", 0.5) is None


def test_film_checkpoints_are_spread_and_keep_both_ends() -> None:
    assert iv.film_checkpoints([300, 100, 200]) == [100, 200, 300]
    picks = iv.film_checkpoints(list(range(0, 2000, 100)), most=5)
    assert len(picks) == 5 and picks[0] == 0 and picks[-1] == 1900 and picks == sorted(picks)


def test_calibration_figures() -> None:
    reply = {"step": 200, "summary": {"reward_mae": 0.1, "reward_correlation": None, "discount_brier": 0.003,
                                      "terminal_auroc": None, "num_steps": 20, "num_terminals": 0},
             "reward_bins": [{"count": 0, "mean_predicted": None, "mean_real": None},
                             {"count": 15, "mean_predicted": -0.1, "mean_real": 0.0},
                             {"count": 5, "mean_predicted": 0.3, "mean_real": 0.76}],
             "discount_bins": [{"count": 20, "mean_predicted": 0.95, "observed_continue": 1.0}]}
    fig = cv.reward_figure([reply])
    assert [t.name for t in fig.data] == ["perfect", "step 200"]
    assert list(fig.data[1].x) == [-0.1, 0.3] and list(fig.data[1].customdata) == [15, 5]  # empty bins left out
    assert list(cv.discount_figure([reply]).data[1].y) == [1.0]
    (row,) = cv.summary_rows([reply])
    assert row["reward corr."] == "—" and row["discount Brier"] == "0.0030" and row["checkpoint"] == 200


def test_overview_figure_and_token_hover() -> None:
    points = [_point(0, 0.01), _point(1, 0.2), _point(2, 0.3)]
    labels = [{"modality": "z", "step": -1}, {"modality": "a", "step": -1}, {"modality": "r", "step": -1},
              {"modality": "z", "step": 0}, {"modality": "a", "step": 0}, {"modality": "r", "step": 0},
              {"modality": "z", "step": 1}, {"modality": "a", "step": 1}]
    reply = {"layer": 1, "head": None, "token": "a", "steps": [-1, 0, 1], "labels": labels,
             "matrix": [[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0.2] * 5 + [0, 0, 0], [0.125] * 8]}
    fig = iv.overview_figure(reply, points, ["NOOP", "FIRE"])
    (heatmap,) = fig.data
    assert list(heatmap.y) == ["a-1", "a0", "a1"] and len(heatmap.customdata[0]) == 8
    assert heatmap.customdata[0][4] == "a0 = FIRE" and heatmap.customdata[0][5] == "r̂0 = +0.100"
    assert heatmap.customdata[0][0] == "z of the real context step"
    assert "pixel error vs real 0.200" in heatmap.customdata[0][6]


def test_token_hover_names_each_key_and_its_step_for_the_viewer() -> None:
    from frontend import inspect_views as views

    points = [_point(0, 0.01), _point(1, 0.2), _point(2, 0.3)]
    labels = [{"modality": m, "step": s, "relative_step": s - 1} for s in (0, 1) for m in ("z", "a", "r")]
    reply = {"labels": labels, "head_mean": [[0.1] * 6, [0.2] * 6], "query_step": 1,
             "weights": [[[0.1] * 6, [0.1] * 6], [[0.2] * 6, [0.2] * 6]]}
    fig = iv.with_token_hover(views.attention_figure(reply), labels, points, ["NOOP", "FIRE"], "branch-7")
    (heatmap,) = fig.data
    assert len(heatmap.customdata) == 2 and list(heatmap.customdata[1]) == [
        "z0 (pixel error vs real 0.010)", "a0 = FIRE", "r̂0 = +0.100", "z1 (pixel error vs real 0.200)", "a1 = FIRE",
        "r̂1 = +0.100"]
    assert "key %{x} · %{customdata}" in heatmap.hovertemplate
    # what the dream viewer reads to draw a z token's frame on hover: the branch and each column's step
    assert fig.layout.meta == {"dream_tokens": {"track": "branch-7", "steps": [0, 0, 0, 1, 1, 1],
                                                "modalities": ["z", "a", "r", "z", "a", "r"]}}
    heads = iv.with_token_hover(views.attention_heads_figure(reply), labels, points, ["NOOP", "FIRE"], "branch-7")
    assert len(heads.data) == 2 and all(list(t.customdata[0]) == list(heatmap.customdata[0]) for t in heads.data)
    assert iv.with_token_hover(views.attention_figure(reply), labels, points, ["NOOP", "FIRE"]).layout.meta is None
