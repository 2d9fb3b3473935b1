"""Pure plotting helpers for the dashboard: metric rows in, plotly figures out (no Streamlit calls).

Points are `(env_step, value)` pairs; a *series* maps a trace name (a metric key, a run id, or both) to its points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

Point = tuple[float, float]
Series = Mapping[str, Sequence[Point]]

X_LABEL = "env step"


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


def metric_lines(series: Series, title: str = "", y_label: str = "", height: int = 300) -> go.Figure:
    """Line chart with one trace per series (a metric key, or a run when several runs overlay on one chart)."""
    fig = go.Figure()
    for name, points in series.items():
        steps, values = [p[0] for p in points], [p[1] for p in points]
        # A handful of points is unreadable as a bare line: show the markers too.
        mode = "lines+markers" if len(points) <= 30 else "lines"
        fig.add_trace(go.Scatter(x=steps, y=values, name=name, mode=mode))
    if not any(series.values()):
        _empty_note(fig)
    return _layout(fig, title, y_label, height)


def score_chart(episodes: Series, evals: Series | None = None, hns: Series | None = None,
                title: str = "Scores", height: int = 360) -> go.Figure:
    """Episode returns (markers) and evaluation means (lines), keyed by run id; human-normalized scores (HNS), when
    any run has them, as dashed lines on a secondary y axis."""
    evals, hns = evals or {}, hns or {}
    fig = go.Figure()
    for run_id, points in episodes.items():
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=f"{run_id} episodes",
                                 mode="markers", marker={"size": 5, "opacity": 0.6}))
    for run_id, points in evals.items():
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=f"{run_id} eval mean",
                                 mode="lines+markers"))
    has_hns = any(hns.values())
    for run_id, points in hns.items():
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=f"{run_id} HNS",
                                 mode="lines+markers", line={"dash": "dash"}, yaxis="y2"))
    if has_hns:
        fig.update_layout(yaxis2={"title": {"text": "human-normalized score"}, "overlaying": "y", "side": "right",
                                  "showgrid": False})
    if not any(episodes.values()) and not any(evals.values()) and not has_hns:
        _empty_note(fig, "no episodes or evaluations yet")
    return _layout(fig, title, "score", height)
