"""Unit tests of `frontend.charts`: metric rows in, plotly figures out."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from frontend.charts import metric_lines, overlay, rows_to_points, score_chart, trace_name

ROWS = [
    {"step": 20, "time": 1.0, "wm/dec_loss": 0.9},
    {"step": 40, "time": 2.0, "wm/dec_loss": 0.7, "ac/actor_loss": -0.1},
    {"step": 60, "wm/dec_loss": None},  # a null (e.g. a NaN written as null) is skipped
    {"step": 80, "wm/dec_loss": math.nan, "ac/actor_loss": 0.2},
    {"step": 100, "wm/dec_loss": 0.5, "flag": True},
]


def test_rows_to_points_keeps_finite_numbers_sorted_by_step() -> None:
    assert rows_to_points(list(reversed(ROWS)), "wm/dec_loss") == [(20, 0.9), (40, 0.7), (100, 0.5)]
    assert rows_to_points(ROWS, "ac/actor_loss") == [(40, -0.1), (80, 0.2)]
    assert rows_to_points(ROWS, "flag") == []  # booleans are not metric values
    assert rows_to_points(ROWS, "missing") == []


def test_trace_names_stay_short_when_possible() -> None:
    assert trace_name("run-a", "wm/dec_loss", num_runs=1, num_keys=3) == "wm/dec_loss"
    assert trace_name("run-a", "wm/dec_loss", num_runs=2, num_keys=1) == "run-a"
    assert trace_name("run-a", "wm/dec_loss", num_runs=2, num_keys=2) == "run-a · wm/dec_loss"


def test_overlay_gives_one_series_per_run_and_key_with_data() -> None:
    other = [{"step": 10, "wm/dec_loss": 1.5}]
    assert overlay({"a": ROWS, "b": other}, ["wm/dec_loss"]) == {
        "a": [(20, 0.9), (40, 0.7), (100, 0.5)], "b": [(10, 1.5)]}
    both = overlay({"a": ROWS, "b": other}, ["wm/dec_loss", "ac/actor_loss"])
    assert list(both) == ["a · wm/dec_loss", "a · ac/actor_loss", "b · wm/dec_loss"]  # b has no actor loss


def test_metric_lines_draws_one_trace_per_series() -> None:
    fig = metric_lines({"run-a": [(1, 2.0), (2, 3.0)], "run-b": [(1, 1.0)]}, title="wm/dec_loss", y_label="loss")
    assert isinstance(fig, go.Figure)
    assert [trace.name for trace in fig.data] == ["run-a", "run-b"]
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == [2.0, 3.0]
    assert fig.layout.title.text == "wm/dec_loss"
    assert fig.layout.xaxis.title.text == "env step" and fig.layout.yaxis.title.text == "loss"
    assert not fig.layout.annotations


def test_metric_lines_without_data_says_so() -> None:
    fig = metric_lines({}, title="empty")
    assert not fig.data
    assert fig.layout.annotations[0].text == "no data yet"


def test_score_chart_puts_hns_on_a_secondary_axis() -> None:
    fig = score_chart({"a": [(100, -21.0), (300, -20.0)]}, evals={"a": [(200, -19.5)]}, hns={"a": [(200, 0.01)]})
    traces = {trace.name: trace for trace in fig.data}
    assert list(traces) == ["a episodes", "a eval mean", "a HNS"]
    assert traces["a episodes"].mode == "markers" and list(traces["a episodes"].y) == [-21.0, -20.0]
    assert list(traces["a eval mean"].x) == [200] and list(traces["a eval mean"].y) == [-19.5]
    assert traces["a HNS"].yaxis == "y2" and traces["a eval mean"].yaxis in (None, "y")
    assert fig.layout.yaxis2.overlaying == "y" and fig.layout.yaxis2.side == "right"
    assert fig.layout.yaxis.title.text == "score" and fig.layout.yaxis2.title.text == "human-normalized score"


def test_score_chart_without_hns_has_one_axis() -> None:
    fig = score_chart({"a": [(100, 3.0)]}, evals={"b": [(50, 4.0)]})
    assert [trace.name for trace in fig.data] == ["a episodes", "b eval mean"]
    assert "yaxis2" not in fig.to_dict()["layout"]
    empty = score_chart({})
    assert not empty.data and "no episodes" in empty.layout.annotations[0].text
