"""Unit tests of the benchmark-report figures (`frontend.charts`) and tables (`frontend.sweep_views`), and of the
seed-range parser (`frontend.forms`): a hand-made report dict in, no backend."""

from __future__ import annotations

import copy
from typing import Any

import plotly.graph_objects as go
import pytest

from frontend import sweep_views as views
from frontend.charts import METHOD_COLOURS, OURS_TICK, aggregate_figure, method_order, profile_figure
from frontend.forms import format_seeds, parse_seeds


def estimate(value: float, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"value": value, "ci_low": low, "ci_high": high}


def paper_only(value: float) -> dict[str, dict[str, Any]]:
    return {metric: estimate(value) for metric in ("mean", "median", "iqm", "optimality_gap")}


TAUS = [0.0, 0.5, 1.0, 1.5, 2.0]
REPORT: dict[str, Any] = {
    "games": [
        {"game": "Pong", "runs": [{"run_id": "pong-0", "seed": 0, "score": 18.0, "hns": 1.10, "episodes": 100},
                                  {"run_id": "pong-1", "seed": 1, "score": 20.0, "hns": 1.16, "episodes": 100}],
         "mean_score": 19.0, "hns": 1.13,
         "paper": {"random": -20.7, "human": 14.6, "TWM": 18.8, "DER": -19.3, "CURL": -16.5, "DrQ(eps)": -16.5,
                   "SPR": -5.4, "SimPLe": 12.8},
         "paper_hns": {"TWM": 1.119, "DER": 0.040, "CURL": 0.119, "DrQ(eps)": 0.119, "SPR": 0.433, "SimPLe": 0.949}},
        {"game": "Catch", "runs": [{"run_id": "catch-0", "seed": 0, "score": 0.8, "hns": None, "episodes": 10}],
         "mean_score": 0.8, "hns": None, "paper": None, "paper_hns": None},
    ],
    "aggregates": {
        # Report order differs from the figure's on purpose: ours must come first anyway.
        "TWM (paper)": {"mean": estimate(0.956, 0.9, 1.0), "median": estimate(0.505, 0.4, 0.6),
                        "iqm": estimate(0.459, 0.4, 0.5), "optimality_gap": estimate(0.513, 0.5, 0.55)},
        "ours": {"mean": estimate(1.13, 1.10, 1.16), "median": estimate(1.13, 1.10, 1.16),
                 "iqm": estimate(1.13, 1.10, 1.16), "optimality_gap": estimate(0.0, 0.0, 0.0)},
        "DER": paper_only(0.285),
        "SPR": paper_only(0.616),
    },
    "profile": {
        "taus": TAUS,
        "ours": {"fraction": [1.0, 1.0, 1.0, 0.0, 0.0], "ci_low": [1.0, 1.0, 0.5, 0.0, 0.0],
                 "ci_high": [1.0, 1.0, 1.0, 0.5, 0.0]},
        "TWM (paper)": {"fraction": [1.0, 0.6, 0.3, 0.1, 0.0], "ci_low": [0.9, 0.5, 0.2, 0.0, 0.0],
                        "ci_high": [1.0, 0.7, 0.4, 0.2, 0.1]},
        "DER": {"fraction": [0.9, 0.3, 0.1, 0.0, 0.0], "ci_low": None, "ci_high": None},
        "SPR": {"fraction": [1.0, 0.5, 0.2, 0.1, 0.0], "ci_low": None, "ci_high": None},
    },
    "meta": {"num_runs": 3, "num_games": 2, "games_missing": ["Boxing"], "reps": 2000, "confidence": 0.95,
             "seed": 0, "note": "paper baselines from Robine et al. (2023), Table 1"},
}
PANELS = ["Median", "IQM", "Mean", "Optimality Gap"]


def traces_by_panel(fig: go.Figure) -> dict[str, list[Any]]:
    """The traces of each subplot, by panel title (subplot i draws on x axis `x`, `x2`, ...)."""
    axes = ["x", "x2", "x3", "x4"]
    return {title: [trace for trace in fig.data if trace.xaxis == axis]
            for title, axis in zip(PANELS, axes, strict=True)}


# ------------------------------------------------------------------------------------------------ aggregates
def test_aggregate_figure_has_four_panels_with_one_trace_per_method() -> None:
    fig = aggregate_figure(REPORT)
    assert [annotation.text for annotation in fig.layout.annotations] == PANELS
    assert len(fig.data) == 4 * 4  # 4 methods × 4 panels
    for title, traces in traces_by_panel(fig).items():
        # Ours on top: categories run bottom-up, so ours is the last of the category array.
        assert [trace.name for trace in traces] == ["Ours", "TWM (paper)", "DER", "SPR"], title
    assert list(fig.layout.yaxis.categoryarray) == ["SPR", "DER", "TWM (paper)", "Ours"]
    assert "<b>Ours</b>" in fig.layout.yaxis.ticktext
    assert fig.layout.title.text == "Aggregate metrics (95% CIs)"
    # Median panel values are the report's.
    median = {trace.name: trace.x[0] for trace in traces_by_panel(fig)["Median"]}
    assert median == {"Ours": 1.13, "TWM (paper)": 0.505, "DER": 0.285, "SPR": 0.616}


def test_aggregate_figure_draws_error_bars_only_where_there_are_cis() -> None:
    fig = aggregate_figure(REPORT)
    for trace in fig.data:
        if trace.name in ("Ours", "TWM (paper)"):
            assert trace.error_x.array is not None and trace.error_x.arrayminus is not None, trace.name
            assert trace.error_x.symmetric is False
        else:
            assert trace.error_x.array is None, trace.name
    iqm = {trace.name: trace for trace in traces_by_panel(fig)["IQM"]}
    assert iqm["TWM (paper)"].error_x.array[0] == pytest.approx(0.5 - 0.459)
    assert iqm["TWM (paper)"].error_x.arrayminus[0] == pytest.approx(0.459 - 0.4)


def test_aggregate_figure_highlights_ours() -> None:
    fig = aggregate_figure(REPORT)
    iqm = {trace.name: trace for trace in traces_by_panel(fig)["IQM"]}
    ours, twm = iqm["Ours"], iqm["TWM (paper)"]
    assert ours.error_x.thickness > twm.error_x.thickness
    assert ours.marker.size > twm.marker.size
    assert ours.error_x.color.startswith("rgba(214, 39, 40")  # METHOD_COLOURS["ours"], #d62728
    assert ours.marker.color == OURS_TICK and twm.marker.color == "black"  # the estimate's tick
    # Points without a CI keep the method's colour on the marker itself.
    assert iqm["DER"].marker.color == METHOD_COLOURS["DER"] and iqm["DER"].marker.symbol == "circle"


def test_aggregate_figure_skips_missing_values_and_half_cis() -> None:
    report = copy.deepcopy(REPORT)
    report["aggregates"]["DER"]["iqm"] = estimate(None)  # type: ignore[arg-type]
    report["aggregates"]["SPR"]["mean"] = estimate(0.6, 0.5, None)  # one bound only: no interval
    fig = aggregate_figure(report)
    panels = traces_by_panel(fig)
    assert "DER" not in [trace.name for trace in panels["IQM"]]
    (spr,) = [trace for trace in panels["Mean"] if trace.name == "SPR"]
    assert spr.error_x.array is None
    assert len(fig.data) == 15


def test_aggregate_figure_without_aggregates_says_so() -> None:
    fig = aggregate_figure({"aggregates": {}, "meta": {}})
    assert not fig.data
    assert fig.layout.annotations[-1].text == "no aggregate scores"


# ------------------------------------------------------------------------------------------------ profile
def test_profile_figure_draws_bands_for_methods_with_cis_and_lines_for_all() -> None:
    fig = profile_figure(REPORT)
    assert [trace.name for trace in fig.data] == ["Ours CI", "Ours", "TWM (paper) CI", "TWM (paper)", "DER", "SPR"]
    bands = [trace for trace in fig.data if trace.fill == "toself"]
    assert [band.name for band in bands] == ["Ours CI", "TWM (paper) CI"]
    ours_band = bands[0]
    assert list(ours_band.x) == TAUS + TAUS[::-1]
    profile = REPORT["profile"]["ours"]
    assert list(ours_band.y) == profile["ci_high"] + profile["ci_low"][::-1]
    assert not ours_band.showlegend
    lines = {trace.name: trace for trace in fig.data if trace.fill != "toself"}
    assert list(lines["DER"].x) == TAUS and list(lines["DER"].y) == REPORT["profile"]["DER"]["fraction"]
    assert lines["Ours"].line.width > lines["TWM (paper)"].line.width  # ours highlighted
    assert lines["Ours"].line.color == METHOD_COLOURS["ours"]
    assert fig.layout.xaxis.title.text == "Human Normalized Score (τ)"
    assert fig.layout.yaxis.title.text == "Fraction of runs with score > τ"


def test_profile_figure_without_profile_says_so() -> None:
    fig = profile_figure({"profile": {}})
    assert not fig.data and fig.layout.annotations[0].text == "no profile"


def test_method_order_puts_ours_first_then_the_paper_order_then_others() -> None:
    assert method_order(["SPR", "new", "ours", "DER", "TWM (paper)"]) == ["ours", "TWM (paper)", "DER", "SPR", "new"]


# ------------------------------------------------------------------------------------------------ tables
def test_game_rows_put_ours_next_to_the_paper() -> None:
    pong, catch = views.game_rows(REPORT)
    assert pong["game"] == "Pong" and pong["runs"] == 2
    assert (pong["ours"], pong["ours HNS"], pong["TWM (paper)"], pong["TWM HNS"]) == (19.0, 1.13, 18.8, 1.119)
    assert (pong["DER"], pong["SimPLe"], pong["random"], pong["human"]) == (-19.3, 12.8, -20.7, 14.6)
    assert views.game_rows(REPORT, paper_values="hns")[0]["DER"] == 0.040
    assert catch["ours"] == 0.8 and catch["TWM (paper)"] is None and catch["DER"] is None  # not a paper game


def test_aggregate_and_run_rows() -> None:
    rows = views.aggregate_rows(REPORT)
    assert [row["method"] for row in rows] == ["Ours", "TWM (paper)", "DER", "SPR"]
    assert rows[1]["IQM"] == "0.459 [0.400, 0.500]" and rows[2]["IQM"] == "0.285"
    assert [row["run"] for row in views.report_run_rows(REPORT)] == ["pong-0", "pong-1", "catch-0"]
    assert list(views.ours_estimates(REPORT)) == PANELS
    assert views.missing_games(REPORT["meta"]) == ["Boxing"]
    assert views.missing_games({"games_missing": 3}) == []


def test_sweep_rows_and_job_rows() -> None:
    job = {"job_id": "j1", "run_id": "r1", "game": "Pong", "seed": 1, "state": "running", "attempt": 2, "retries": 1,
           "error": None, "progress": {"step": 50, "total_steps": 200, "fraction": 0.25, "phase": "train"}}
    sweep = {"sweep_id": "s1", "name": "pong", "preset": "debug", "games": ["Pong", "Boxing"], "seeds": [0, 1, 2],
             "steps": 200, "device": "cpu", "executor": "local", "max_retries": 1, "created_at": 0.0,
             "state": "running", "progress": 0.5,
             "counts": {"queued": 2, "running": 1, "finished": 2, "failed": 1, "cancelled": 0},
             "jobs": [job, {**job, "job_id": "j0", "seed": 0, "state": "finished"},
                      {**job, "job_id": "b", "game": "Boxing", "seed": 2, "state": "failed", "error": "a\nb\nboom"}]}
    (row,) = views.sweep_rows([sweep])
    assert (row["state"], row["progress %"], row["jobs ended"], row["seeds"]) == ("running", 50.0, "3/6", "0-2")
    assert views.sweep_label(sweep) == "pong · running · 3/6 jobs ended" and views.is_live(sweep)
    rows = views.sweep_job_rows(sweep["jobs"])
    assert [(r["game"], r["seed"]) for r in rows] == [("Boxing", 2), ("Pong", 0), ("Pong", 1)]
    assert rows[2]["progress %"] == 25.0 and rows[2]["step"] == "50/200" and rows[2]["retries"] == 1
    assert rows[0]["error"] == "b ⏎ boom"


# ------------------------------------------------------------------------------------------------ seeds
@pytest.mark.parametrize(("text", "seeds"), [
    ("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0, 2,7", [0, 2, 7]), ("0-2 5", [0, 1, 2, 5]), (" 1-2, 2-3 ", [1, 2, 3]),
])
def test_parse_seeds(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(("text", "message"), [
    ("", "at least one"), ("a", "`a` is neither"), ("4-2", "runs backwards"), ("-1", "`-1` is neither"),
    ("0-1000", "at most 100"),
])
def test_parse_seeds_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


def test_format_seeds_compacts_ranges() -> None:
    assert format_seeds([4, 0, 1, 2, 7, 8]) == "0-2, 4, 7-8"
    assert format_seeds([]) == ""
