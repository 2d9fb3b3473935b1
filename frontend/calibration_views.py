"""Pure plotly figures of the Calibration page: reliability of predicted rewards and discounts per checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

Reply = Mapping[str, Any]


def _diagonal(fig: go.Figure, low: float, high: float) -> None:
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="perfect",
                             line=dict(color="#999", dash="dot")))


def reward_figure(replies: Sequence[Reply]) -> go.Figure:
    """Mean real reward against mean predicted reward, per bin of r̂ (marker size ~ count), one line a checkpoint."""
    fig = go.Figure()
    _diagonal(fig, -1.0, 1.0)
    for reply in replies:
        bins = [b for b in reply["reward_bins"] if b["count"] > 0]
        most = max((b["count"] for b in bins), default=1)
        sizes = [6 + 14 * (b["count"] / most) ** 0.5 for b in bins]  # area ~ count
        fig.add_trace(go.Scatter(
            x=[b["mean_predicted"] for b in bins], y=[b["mean_real"] for b in bins], mode="lines+markers",
            name=f"step {reply['step']}", marker=dict(size=sizes),
            customdata=[b["count"] for b in bins],
            hovertemplate="r̂ %{x:.3f} → real %{y:.3f} (%{customdata} steps)<extra></extra>"))
    fig.update_layout(title="Reward: mean real r against mean predicted r̂ (bins of r̂)", height=380,
                      xaxis_title="predicted reward r̂", yaxis_title="real reward (tanh)",
                      margin=dict(l=60, r=10, t=50, b=50))
    return fig


def discount_figure(replies: Sequence[Reply]) -> go.Figure:
    """Reliability diagram of the discount: observed share of non-terminal steps against γ̂/γ per bin."""
    fig = go.Figure()
    _diagonal(fig, 0.0, 1.0)
    for reply in replies:
        bins = [b for b in reply["discount_bins"] if b["count"] > 0]
        fig.add_trace(go.Scatter(
            x=[b["mean_predicted"] for b in bins], y=[b["observed_continue"] for b in bins], mode="lines+markers",
            name=f"step {reply['step']}", customdata=[b["count"] for b in bins],
            hovertemplate="γ̂/γ %{x:.3f} → continued %{y:.3f} (%{customdata} steps)<extra></extra>"))
    fig.update_layout(title="Discount: observed continuation against predicted γ̂/γ", height=380,
                      xaxis_title="predicted γ̂ / γ", yaxis_title="share of steps that did not terminate",
                      margin=dict(l=60, r=10, t=50, b=50))
    return fig


def summary_rows(replies: Sequence[Reply]) -> list[dict[str, Any]]:
    def num(x: float | None, digits: int = 3) -> str:
        return "—" if x is None else f"{x:.{digits}f}"

    return [{"checkpoint": r["step"], "reward MAE": num(r["summary"]["reward_mae"]),
             "reward corr.": num(r["summary"]["reward_correlation"]),
             "discount Brier": num(r["summary"]["discount_brier"], 4),
             "terminal AUROC": num(r["summary"]["terminal_auroc"]),
             "steps": r["summary"]["num_steps"], "terminals": r["summary"]["num_terminals"]} for r in replies]
