"""Unit tests of the Runs page's pure helpers: smoothing, run colours, baseline lines (`frontend.charts`) and the
stage progress / ETA text (`frontend.widgets`)."""

from __future__ import annotations

import math

import pytest

from frontend.charts import (
    BASELINE_STYLES,
    RUN_PALETTE,
    ema,
    metric_lines,
    run_colours,
    score_chart,
    smooth,
)
from frontend.widgets import format_duration, stage_progress


# ------------------------------------------------------------------------------------------------ smoothing
def test_ema_is_tensorboards_debiased_average() -> None:
    # By hand: last = w·last + (1-w)·x, divided by 1 - w^n (the weight the n points seen carry).
    assert ema([0.0, 1.0], 0.5) == [0.0, pytest.approx(0.5 / 0.75)]
    assert ema([2.0, 4.0, 8.0], 0.5) == pytest.approx([2.0, (0.5 * 1.0 + 2.0) / 0.75, (0.5 * 2.5 + 4.0) / 0.875])
    assert ema([5.0, 5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0] * 4)  # debiased: no pull towards 0 at the start


def test_ema_weight_zero_is_the_raw_curve_and_heavier_weights_smooth_more() -> None:
    values = [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]
    assert ema(values, 0.0) == values
    spread = [max(ema(values, w)[2:]) - min(ema(values, w)[2:]) for w in (0.0, 0.5, 0.9)]
    assert spread[0] > spread[1] > spread[2]
    assert ema([], 0.6) == []


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5])
def test_ema_refuses_weights_outside_zero_one(weight: float) -> None:
    with pytest.raises(ValueError, match="smoothing weight"):
        ema([1.0], weight)


def test_smooth_keeps_the_steps() -> None:
    assert smooth([(10, 0.0), (30, 1.0)], 0.5) == [(10, 0.0), (30, pytest.approx(0.5 / 0.75))]


def test_metric_lines_draws_the_raw_curve_faint_behind_the_smoothed_one() -> None:
    points = [(float(step), float(step % 3)) for step in range(50)]
    fig = metric_lines({"run-a": points}, colours={"run-a": "#123456"}, smoothing=0.8)
    raw, smoothed = fig.data
    assert (raw.name, smoothed.name) == ("run-a (raw)", "run-a")
    assert list(raw.y) == [p[1] for p in points] and raw.opacity < 0.5 and raw.showlegend is False
    assert list(smoothed.y) == pytest.approx(ema([p[1] for p in points], 0.8))
    assert raw.line.color == smoothed.line.color == "#123456"
    assert len(metric_lines({"run-a": points}, smoothing=0.0).data) == 1  # no smoothing: the raw curve alone


# ------------------------------------------------------------------------------------------------ colours
def _contrast_on_white(colour: str) -> float:
    """WCAG contrast ratio of `colour` against white."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(int(colour[i:i + 2], 16)) for i in (1, 3, 5))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return 1.05 / (luminance + 0.05)


def test_palette_is_distinct_and_readable_on_white() -> None:
    assert len(set(RUN_PALETTE)) == len(RUN_PALETTE) >= 8
    assert all(_contrast_on_white(colour) >= 4.0 for colour in RUN_PALETTE), \
        {colour: round(_contrast_on_white(colour), 2) for colour in RUN_PALETTE}


def test_each_run_keeps_its_colour_in_every_chart() -> None:
    colours = run_colours(["a", "b", "c"])
    assert colours == {"a": RUN_PALETTE[0], "b": RUN_PALETTE[1], "c": RUN_PALETTE[2]}
    assert run_colours(["a", "b", "c", "d"])["b"] == colours["b"]  # adding a run moves none of the others
    line = metric_lines({"a": [(1, 1.0)], "b": [(1, 2.0)]}, colours=colours, smoothing=0.5)
    scores = score_chart({"a": [(1, 1.0)], "b": [(1, 2.0)]}, evals={"b": [(2, 3.0)]}, hns={"a": [(2, 0.1)]},
                         colours=colours, smoothing=0.5)
    drawn = {trace.name: trace.line.color or trace.marker.color for trace in [*line.data, *scores.data]}
    assert {name: colour for name, colour in drawn.items() if name.startswith("a")} == dict.fromkeys(
        ["a (raw)", "a", "a episodes", "a episodes (smoothed)", "a HNS"], colours["a"])
    assert {name: colour for name, colour in drawn.items() if name.startswith("b")} == dict.fromkeys(
        ["b (raw)", "b", "b episodes", "b episodes (smoothed)", "b eval mean"], colours["b"])


def test_runs_without_given_colours_take_the_palette_not_plotlys_pale_ones() -> None:
    fig = metric_lines({"a": [(1, 1.0)], "b": [(1, 2.0)]})
    assert [trace.line.color for trace in fig.data] == list(RUN_PALETTE[:2])


# ------------------------------------------------------------------------------------------------ baselines
def test_score_chart_draws_the_reference_scores_as_labelled_lines() -> None:
    fig = score_chart({"a": [(100, -21.0)]}, baselines={"random": -20.7, "human": 14.6, "twm": 18.8})
    assert [shape.y0 for shape in fig.layout.shapes] == [-20.7, 14.6, 18.8]
    assert all(shape.y0 == shape.y1 and shape.xref == "x domain" for shape in fig.layout.shapes)
    labels = [annotation.text for annotation in fig.layout.annotations]
    assert labels == ["random -20.7", "human 14.6", "TWM (paper) 18.8"]
    assert len({shape.line.dash for shape in fig.layout.shapes}) == 3  # told apart without colour too
    assert [BASELINE_STYLES[key][0] for key in ("random", "human", "twm")] == ["random", "human", "TWM (paper)"]


def test_score_chart_without_baselines_has_no_lines() -> None:
    assert not score_chart({"a": [(100, 3.0)]}).layout.shapes
    assert not score_chart({"a": [(100, 3.0)]}, baselines={"random": None}).layout.shapes  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------------ stage and ETA
@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (40, "40 s"), (59.4, "59 s"), (59.6, "1 min"), (180, "3 min"), (720, "12 min"),
    (3599, "1 h 00 min"), (3900, "1 h 05 min"), (86_399, "1 d 0 h"), (90_000, "1 d 1 h"),
    (None, None), (-5, None), (math.nan, None), (math.inf, None),
])
def test_format_duration_is_humane_and_says_nothing_for_no_number(seconds: float | None, text: str | None) -> None:
    assert format_duration(seconds) == text


LIVE = {"stage": "pretrain/dyn", "stage_done": 1200, "stage_total": 5000, "stage_unit": "frames",
        "stage_started_at": 1000.0, "eta_s": 180, "run_eta_s": 720}


def test_stage_progress_gives_the_stage_its_fraction_and_both_etas() -> None:
    label, fraction, eta = stage_progress(LIVE, now=1300.0) or ("", None, None)
    assert label == "stage `pretrain/dyn` · 1,200 / 5,000 frames · 5 min in"
    assert fraction == pytest.approx(0.24)
    assert eta == "ETA 3 min (stage) · 12 min (run)"


def test_stage_progress_leaves_out_what_is_null() -> None:
    unknown = {**LIVE, "stage_total": None, "eta_s": None, "run_eta_s": None, "stage_started_at": None}
    assert stage_progress(unknown) == ("stage `pretrain/dyn` · 1,200 frames so far", None, None)
    only_run = stage_progress({**LIVE, "eta_s": None}, now=1000.0)
    assert only_run is not None and only_run[2] == "ETA 12 min (run)"
    assert stage_progress({**LIVE, "stage_done": None, "stage_total": None}, now=1000.0) == (
        "stage `pretrain/dyn` · 0 s in", None, "ETA 3 min (stage) · 12 min (run)")
    assert stage_progress({**LIVE, "stage_total": 0}, now=1000.0)[1] is None  # type: ignore[index]
    assert stage_progress({"stage": None, "eta_s": 5}) is None  # a run older than the fields: nothing at all
    assert stage_progress({}) is None


def test_stage_progress_clamps_the_fraction() -> None:
    assert stage_progress({**LIVE, "stage_done": 6000}, now=1000.0)[1] == 1.0  # type: ignore[index]


def test_job_stage_and_eta_labels() -> None:
    from frontend.widgets import eta_label, stage_label

    assert stage_label({"stage": "pretrain/dyn", "stage_fraction": 0.4}) == "pretrain/dyn 40%"
    assert stage_label({"stage": "eval", "stage_fraction": None}) == "eval"
    assert stage_label({"stage": None}) == ""
    assert eta_label({"eta_s": 180, "run_eta_s": 3900}) == "3 min · run 1 h 05 min"
    assert eta_label({"eta_s": None, "run_eta_s": 40}) == "run 40 s"
    assert eta_label({"eta_s": -1, "run_eta_s": None}) == ""
