"""Pure plotting helpers for the dashboard: metric rows or a benchmark report in, plotly figures out (no Streamlit).

Points are `(env_step, value)` pairs; a *series* maps a trace name (a metric key, a run id, or both) to its points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

Point = tuple[float, float]
Series = Mapping[str, Sequence[Point]]

X_LABEL = "env step"

# Runs' colours: a fixed qualitative palette, each with a contrast ratio of at least 4:1 on Streamlit's white
# background (WCAG asks 3:1 of graphics), so no run is drawn in a pale yellow or cyan. Greys are left to the baselines.
RUN_PALETTE: tuple[str, ...] = ("#1f77b4", "#d62728", "#228833", "#9467bd", "#c05600", "#0f8b99", "#c2399a",
                                "#8b6d00", "#8c564b")
RAW_OPACITY = 0.25
"""Opacity of the raw curve drawn behind its smoothed one."""
# Reference scores of a game as horizontal lines on the score chart: (label, dash, colour) per `baselines` key.
BASELINE_STYLES: dict[str, tuple[str, str, str]] = {
    "random": ("random", "dot", "#7f7f7f"), "human": ("human", "dash", "#444444"),
    "twm": ("TWM (paper)", "dashdot", "#000000"),
}


def _number(value: Any) -> float | None:
    """`value` as a finite float, or None (missing, null, NaN, non-numeric)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def rows_to_points(rows: Iterable[Mapping[str, Any]], key: str) -> list[Point]:
    """The `(step, value)` points of `key` in metric rows `{step, key: value, ...}`, sorted by step."""
    points = []
    for row in rows:
        value, step = _number(row.get(key)), _number(row.get("step"))
        if value is not None and step is not None:
            points.append((step, value))
    return sorted(points, key=lambda point: point[0])


def trace_name(run_id: str, key: str, num_runs: int, num_keys: int) -> str:
    """The legend name of one run's metric: just the key for one run, just the run for one key, else both."""
    if num_runs <= 1:
        return key
    if num_keys <= 1:
        return run_id
    return f"{run_id} · {key}"


def overlay(rows_by_run: Mapping[str, Iterable[Mapping[str, Any]]], keys: Sequence[str]) -> dict[str, list[Point]]:
    """One series per (run, key) that has data, named with `trace_name`, for comparing runs on one chart."""
    series: dict[str, list[Point]] = {}
    for run_id, rows in rows_by_run.items():
        rows = list(rows)
        for key in keys:
            points = rows_to_points(rows, key)
            if points:
                series[trace_name(run_id, key, len(rows_by_run), len(keys))] = points
    return series


def run_colours(run_ids: Sequence[str]) -> dict[str, str]:
    """A colour per run: the i-th picked run gets the i-th palette colour, in every chart of the page (the palette
    repeats after `len(RUN_PALETTE)` runs)."""
    return {run_id: RUN_PALETTE[index % len(RUN_PALETTE)] for index, run_id in enumerate(run_ids)}


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with `weight` on the past, debiased so that the start
    is not pulled towards 0 (`weight=0` returns the values; a constant stays that constant)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    smoothed, last = [], 0.0
    for count, value in enumerate(values, start=1):
        last = weight * last + (1.0 - weight) * value
        smoothed.append(last / (1.0 - weight ** count))  # the debiasing: weights of the points seen sum to 1
    return smoothed


def smooth(points: Sequence[Point], weight: float) -> list[Point]:
    """`points` with their values smoothed by `ema` (steps unchanged)."""
    return list(zip((p[0] for p in points), ema([p[1] for p in points], weight), strict=True))


def _empty_note(fig: go.Figure, text: str = "no data yet") -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"color": "gray"})


def _layout(fig: go.Figure, title: str, y_label: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": title}, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      hovermode="x unified", legend={"orientation": "h", "yanchor": "bottom", "y": 1.0,
                                                     "xanchor": "right", "x": 1.0})
    # Only the primary y axis: a secondary one (HNS) keeps its own title.
    fig.update_layout(xaxis_title_text=X_LABEL, yaxis_title_text=y_label)
    return fig


def metric_lines(series: Series, title: str = "", y_label: str = "", height: int = 300,
                 colours: Mapping[str, str] | None = None, smoothing: float = 0.0) -> go.Figure:
    """Line chart with one trace per series (a metric key, or a run when several runs overlay on one chart).

    `colours` maps a series name to its colour (the others take `RUN_PALETTE` in order). With `smoothing` > 0 each
    series is drawn smoothed (`ema`), its raw curve faint behind it in the same colour (named `<name> (raw)`, off
    the legend).
    """
    colours = {**run_colours(list(series)), **(colours or {})}
    fig = go.Figure()
    for name, points in series.items():
        steps, values = [p[0] for p in points], [p[1] for p in points]
        # A handful of points is unreadable as a bare line: show the markers too.
        mode = "lines+markers" if len(points) <= 30 else "lines"
        colour = colours.get(name)
        if smoothing > 0:
            fig.add_trace(go.Scatter(x=steps, y=values, name=f"{name} (raw)", mode=mode, opacity=RAW_OPACITY,
                                     line={"color": colour}, marker={"color": colour}, legendgroup=name,
                                     showlegend=False, hoverinfo="skip"))
            values = ema(values, smoothing)
        fig.add_trace(go.Scatter(x=steps, y=values, name=name, mode=mode, line={"color": colour},
                                 marker={"color": colour}, legendgroup=name))
    if not any(series.values()):
        _empty_note(fig)
    return _layout(fig, title, y_label, height)


def score_chart(episodes: Series, evals: Series | None = None, hns: Series | None = None,
                title: str = "Scores", height: int = 360, colours: Mapping[str, str] | None = None,
                baselines: Mapping[str, float] | None = None, smoothing: float = 0.0) -> go.Figure:
    """Episode returns (markers) and evaluation means (lines), keyed by run id; human-normalized scores (HNS), when
    any run has them, as dashed lines on a secondary y axis.

    `colours` maps a run id to its colour (all of a run's traces share it). `baselines` holds the game's reference
    scores by `BASELINE_STYLES` key (`random`, `human`, `twm`), drawn as labelled horizontal lines. With
    `smoothing` > 0 the episode returns also get a smoothed line (`<run> episodes (smoothed)`).
    """
    evals, hns = evals or {}, hns or {}
    colours = {**run_colours(list(dict.fromkeys([*episodes, *evals, *hns]))), **(colours or {})}
    fig = go.Figure()
    for run_id, points in episodes.items():
        colour, steps = colours.get(run_id), [p[0] for p in points]
        fig.add_trace(go.Scatter(x=steps, y=[p[1] for p in points], name=f"{run_id} episodes", mode="markers",
                                 marker={"size": 5, "opacity": 0.35 if smoothing > 0 else 0.6, "color": colour}))
        if smoothing > 0 and points:
            fig.add_trace(go.Scatter(x=steps, y=ema([p[1] for p in points], smoothing), mode="lines",
                                     name=f"{run_id} episodes (smoothed)", line={"color": colour}))
    for run_id, points in evals.items():
        colour = colours.get(run_id)
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=f"{run_id} eval mean",
                                 mode="lines+markers", line={"color": colour}, marker={"color": colour}))
    has_hns = any(hns.values())
    for run_id, points in hns.items():
        colour = colours.get(run_id)
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=f"{run_id} HNS",
                                 mode="lines+markers", line={"dash": "dash", "color": colour},
                                 marker={"color": colour}, yaxis="y2"))
    if has_hns:
        fig.update_layout(yaxis2={"title": {"text": "human-normalized score"}, "overlaying": "y", "side": "right",
                                  "showgrid": False})
    for key, (label, dash, colour) in BASELINE_STYLES.items():
        value = _number((baselines or {}).get(key))
        if value is not None:
            fig.add_hline(y=value, line={"dash": dash, "color": colour, "width": 1.5}, annotation_text=f"{label} "
                          f"{value:g}", annotation_position="top left", annotation_font={"color": colour})
    if not any(episodes.values()) and not any(evals.values()) and not has_hns:
        _empty_note(fig, "no episodes or evaluations yet")
    return _layout(fig, title, "score", height)


# ------------------------------------------------------------------------------------------------ benchmark report
# A report (`GET /api/sweeps/{id}/report`, `GET /api/report`) compares our runs with the paper's baselines on
# human-normalized scores: `aggregates[method][metric] = {value, ci_low, ci_high}` and the performance profile
# `profile[method] = {fraction, ci_low, ci_high}` over `profile["taus"]`. Methods without runs of their own (the
# paper's per-game tables) come without CIs.
OURS = "ours"
METHOD_COLOURS = {OURS: "#d62728", "TWM (paper)": "#1f77b4", "DER": "#7f7f7f", "CURL": "#bcbd22",
                  "DrQ(eps)": "#9467bd", "SPR": "#2ca02c", "SimPLe": "#8c564b"}
OTHER_COLOURS = ["#17becf", "#e377c2", "#ff7f0e", "#aec7e8"]
OURS_TICK = "#8b0000"  # dark red: our point estimate on top of our (red) interval
# Paper Fig. 3 panel order.
AGGREGATE_PANELS = [("median", "Median"), ("iqm", "IQM"), ("mean", "Mean"), ("optimality_gap", "Optimality Gap")]
HNS_LABEL = "Human Normalized Score"


def method_order(methods: Iterable[str]) -> list[str]:
    """Ours first, then the paper's methods in the order of `METHOD_COLOURS`, then any other in the given order."""
    known = list(METHOD_COLOURS)
    methods = list(methods)
    return sorted(methods, key=lambda m: (known.index(m) if m in known else len(known), methods.index(m)))


def method_label(method: str) -> str:
    return "Ours" if method == OURS else method


def method_colour(method: str, index: int = 0) -> str:
    """A fixed colour per known method (the same in every figure); others cycle through a spare palette."""
    return METHOD_COLOURS.get(method, OTHER_COLOURS[index % len(OTHER_COLOURS)])


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def confidence_interval(estimate: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """`(ci_low, ci_high)` of an estimate `{value, ci_low, ci_high}`, or None when either bound is missing."""
    if not estimate:
        return None
    low, high = _number(estimate.get("ci_low")), _number(estimate.get("ci_high"))
    return None if low is None or high is None else (low, high)


def _interval_trace(method: str, index: int, estimate: Mapping[str, Any], show_legend: bool) -> go.Scatter | None:
    """One method's point estimate, with its CI as a thick horizontal bar when it has one (a plain point if not)."""
    value = _number(estimate.get("value"))
    if value is None:
        return None
    ours, colour, interval = method == OURS, method_colour(method, index), confidence_interval(estimate)
    error_x = None
    if interval is not None:
        error_x = {"type": "data", "symmetric": False, "array": [interval[1] - value],
                   "arrayminus": [value - interval[0]], "color": _rgba(colour, 0.6 if ours else 0.55),
                   "thickness": 14 if ours else 9, "width": 0}
    # With a CI the estimate is a vertical tick across the bar (as in the paper); without one, a dot.
    tick = OURS_TICK if ours else "black"  # ours stays visible (and red) even when its CI is a single point
    marker = ({"symbol": "line-ns-open", "size": 22 if ours else 16, "color": tick,
               "line": {"width": 4 if ours else 2, "color": tick}}
              if interval is not None else
              {"symbol": "diamond" if ours else "circle", "size": 13 if ours else 9, "color": colour,
               "line": {"width": 1, "color": "black"}})
    ci = f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval is not None else "no CI"
    return go.Scatter(x=[value], y=[method_label(method)], mode="markers", name=method_label(method),
                      legendgroup=method, showlegend=show_legend, marker=marker, error_x=error_x,
                      hovertemplate=f"{method_label(method)}: %{{x:.3f}} {ci}<extra></extra>")


def aggregate_figure(report: Mapping[str, Any], height: int = 340) -> go.Figure:
    """Paper Fig. 3: Median, IQM, Mean and Optimality Gap of the human-normalized scores, one interval per method."""
    aggregates: Mapping[str, Mapping[str, Any]] = report.get("aggregates") or {}
    methods = method_order(aggregates)
    fig = make_subplots(rows=1, cols=len(AGGREGATE_PANELS), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[title for _, title in AGGREGATE_PANELS])
    for column, (metric, _) in enumerate(AGGREGATE_PANELS, start=1):
        for index, method in enumerate(methods):
            trace = _interval_trace(method, index, aggregates[method].get(metric) or {}, show_legend=False)
            if trace is not None:
                fig.add_trace(trace, row=1, col=column)
        fig.update_xaxes(title_text=HNS_LABEL if column == 1 else None, zeroline=False, row=1, col=column)
    labels = [method_label(method) for method in methods]
    # Categories run bottom-up: reverse them so ours sits on top; bold its tick label.
    fig.update_yaxes(categoryorder="array", categoryarray=labels[::-1], tickvals=labels,
                     ticktext=[f"<b>{label}</b>" if method == OURS else label
                               for method, label in zip(methods, labels, strict=True)])
    confidence = (report.get("meta") or {}).get("confidence")
    title = "Aggregate metrics" + (f" ({100 * confidence:.0f}% CIs)" if confidence else "")
    fig.update_layout(title={"text": title}, height=height, showlegend=False,
                      margin={"l": 10, "r": 10, "t": 60, "b": 10})
    if not fig.data:
        _empty_note(fig, "no aggregate scores")
    return fig


def profile_figure(report: Mapping[str, Any], height: int = 420) -> go.Figure:
    """Paper Fig. 4: the fraction of runs with a human-normalized score above τ, with CI bands where there are CIs."""
    profile: Mapping[str, Any] = report.get("profile") or {}
    taus = list(profile.get("taus") or [])
    fig = go.Figure()
    for index, method in enumerate(method_order(key for key in profile if key != "taus")):
        entry, ours = profile[method], method == OURS
        colour, label = method_colour(method, index), method_label(method)
        low, high = entry.get("ci_low"), entry.get("ci_high")
        if low is not None and high is not None:
            # The band is one closed polygon: upper bound left to right, then the lower bound back.
            fig.add_trace(go.Scatter(x=taus + taus[::-1], y=list(high) + list(low)[::-1], fill="toself",
                                     fillcolor=_rgba(colour, 0.25 if ours else 0.15), line={"width": 0},
                                     mode="lines", name=f"{label} CI", legendgroup=method, showlegend=False,
                                     hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=taus, y=list(entry["fraction"]), mode="lines", name=label, legendgroup=method,
                                 line={"color": colour, "width": 4 if ours else 2}))
    fig.update_layout(title={"text": "Performance profile"}, height=height, hovermode="x unified",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title_text=f"{HNS_LABEL} (τ)", yaxis_title_text="Fraction of runs with score > τ",
                      yaxis_range=[0, 1.02])
    if not fig.data:
        _empty_note(fig, "no profile")
    return fig
