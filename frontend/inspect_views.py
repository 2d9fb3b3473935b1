"""Pure helpers of the inspection pages (Imagine, Attention, Play): decode frames, export GIFs, build figures.

No Streamlit calls and no torch: every function takes the JSON of a backend response (or a piece of it) and returns
plain values, PIL images, bytes or plotly figures, so the pages stay thin and these stay unit-testable.

Conventions of the `/imagine` response (see `backend/schemas/inspect.py`): a rollout of horizon H has H+1 frames and
latents (index 0 is the start's reconstruction) and H actions, rewards, discounts, where entry t is the transition
from step t to t+1. The page shows frame t (t >= 1) with the action a_{t-1} that led to it and the r̂_{t-1}, γ̂_{t-1}
predicted for that transition, as the reference annotates imagined frames (method.md §6.2, paper Fig. 5).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.subplots import make_subplots

Response = Mapping[str, Any]

# Token colours of the reference viewer (method.md §6.1, paper Fig. 6): z blue, a red, r green.
MODALITY_COLOURS = {"z": "#1f77b4", "a": "#d62728", "r": "#2ca02c"}
MAX_HORIZON = 200  # backend/schemas/inspect.py MAX_HORIZON


# ------------------------------------------------------------------------------------------------- frames
def decode_png(data: str) -> Image.Image:
    """A base64 PNG (as the backend sends frames) → a PIL image."""
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def frame_array(data: str) -> np.ndarray:
    """A base64 PNG frame → a (64, 64) uint8 array."""
    return np.asarray(decode_png(data).convert("L"))


def upscale(image: Image.Image, factor: int = 4) -> Image.Image:
    """Nearest-neighbour upscaling, so 64×64 Atari frames stay crisp when shown large."""
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def step_annotation(rollout: Response, t: int) -> str:
    """The caption of frame t: the action that led to it and the predicted reward and discount (Fig. 5)."""
    if t == 0:
        return "start (reconstruction of the real frame)"
    i = t - 1
    text = f"a = {rollout['action_names'][i]} · r̂ = {rollout['rewards'][i]:+.3f} · γ̂ = {rollout['discounts'][i]:.3f}"
    return text + (" · done" if rollout["dones"][i] else "")


def real_annotation(rollout: Response, t: int) -> str | None:
    """The caption of the real frame t under the same actions, or None when the real episode ended before t."""
    real = rollout.get("real")
    if not real or t >= len(real["frames"]):
        return None
    if t == 0:
        return "real start"
    return f"r = {real['rewards'][t - 1]:+.1f} (tanh {real['rewards_transformed'][t - 1]:+.3f})"


def _gif_caption(rollout: Response, t: int) -> str:
    if t == 0:
        return f"t=0 start  step {rollout['checkpoint_step']}"
    i = t - 1  # ASCII only: the default font has no combining circumflex
    return f"t={t} {rollout['action_names'][i]} r={rollout['rewards'][i]:+.2f} g={rollout['discounts'][i]:.2f}"


def gif_frame(rollout: Response, t: int, scale: int = 3) -> Image.Image:
    """Frame t of the export: imagined (| real, black once the real episode ended) with a caption strip below."""
    imagined = upscale(decode_png(rollout["frames"][t]).convert("L"), scale)
    panels = [imagined]
    real = rollout.get("real")
    if real:
        frames = real["frames"]
        panels.append(upscale(decode_png(frames[t]).convert("L"), scale) if t < len(frames)
                      else Image.new("L", imagined.size, 0))
    gap, strip = 4, 16
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("L", (width, imagined.height + strip), 0)
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + gap
    ImageDraw.Draw(canvas).text((2, imagined.height + 2), _gif_caption(rollout, t), fill=255,
                                font=ImageFont.load_default(11))
    return canvas


def rollout_gif(rollout: Response, scale: int = 3, duration_ms: int = 250) -> bytes:
    """An animated GIF of the rollout: H+1 frames (imagined | real), looping."""
    frames = [gif_frame(rollout, t, scale) for t in range(len(rollout["frames"]))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


def rollout_json(rollout: Response) -> bytes:
    """The rollout response as pretty JSON bytes (the download of the Imagine page)."""
    return json.dumps(rollout, indent=1).encode()


# ------------------------------------------------------------------------------------------------- requests
def checkpoint_name(checkpoint: int | str) -> str:
    """`latest checkpoint` or `step 200`: a checkpoint as the pickers' value names it."""
    return "latest checkpoint" if checkpoint == "latest" else f"step {checkpoint}"


def start_body(kind: str, policy_steps: int = 0, replay_index: int = 0) -> dict[str, Any]:
    """The `start` of an inspect request: a real reset plus k policy steps, or a replay-buffer row."""
    if kind == "replay":
        return {"kind": "replay", "index": int(replay_index)}
    return {"kind": "reset", "policy_steps": int(policy_steps)}


def parse_actions(text: str, meanings: Sequence[str] | None = None) -> list[int]:
    """Comma-separated action indices or names (case-insensitive, e.g. `0, 2, RIGHT`) → action indices.

    Raises ValueError with a message fit for the user when an entry is unknown or the sequence is empty.
    """
    names = {m.upper(): i for i, m in enumerate(meanings or [])}
    actions = []
    for raw in text.replace(";", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        if item.lstrip("-").isdigit():
            index = int(item)
            if meanings is not None and not 0 <= index < len(meanings):
                raise ValueError(f"action {index} is out of range: this game has actions 0..{len(meanings) - 1}")
            actions.append(index)
        elif item.upper() in names:
            actions.append(names[item.upper()])
        else:
            known = ", ".join(meanings) if meanings else "unknown until a rollout was fetched: use indices"
            raise ValueError(f"unknown action {item!r} (actions: {known})")
    if not actions:
        raise ValueError("the action sequence is empty: give comma-separated indices or names, e.g. `0, 2, RIGHT`")
    if len(actions) > MAX_HORIZON:
        raise ValueError(f"at most {MAX_HORIZON} actions, got {len(actions)}")
    return actions


def needs_names(text: str) -> bool:
    """Whether an action sequence names actions (so their meanings must be known to parse it)."""
    return any(item.strip() and not item.strip().lstrip("-").isdigit() for item in text.replace(";", ",").split(","))


# ------------------------------------------------------------------------------------------------- figures
def latent_figure(latent: Sequence[Sequence[float]], title: str = "") -> go.Figure:
    """The C×K grid of one latent z (one-hot per categorical row), as a heatmap with categoricals on y."""
    z = np.asarray(latent, dtype=float)  # (C, K)
    fig = go.Figure(go.Heatmap(z=z.tolist(), colorscale="Greys", reversescale=True, zmin=0, zmax=1, showscale=False,
                               hovertemplate="categorical %{y}, class %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=title or f"latent z ({z.shape[0]} × {z.shape[1]})", height=320,
                      margin=dict(l=40, r=10, t=40, b=30))
    fig.update_xaxes(title="class", constrain="domain")
    fig.update_yaxes(title="categorical", autorange="reversed", scaleanchor="x")
    return fig


def frame_diff_figure(rollout: Response, current: int | None = None) -> go.Figure:
    """Mean |imagined − real| per frame over the horizon (needs `compare_real`), with the current step marked."""
    diffs = (rollout.get("real") or {}).get("frame_diffs", [])
    fig = go.Figure(go.Scatter(x=list(range(len(diffs))), y=diffs, mode="lines+markers", name="|imagined − real|"))
    if current is not None:
        fig.add_vline(x=current, line_dash="dot", line_color="#888")
    fig.update_layout(title="Per-frame difference, imagined vs. real", height=280, margin=dict(l=40, r=10, t=40, b=30),
                      xaxis_title="step", yaxis_title="mean |Δ| (pixels in [0, 1])", yaxis_rangemode="tozero",
                      xaxis_range=[-0.5, len(rollout["frames"]) - 0.5])
    return fig


def prediction_figure(rollout: Response, current: int | None = None) -> go.Figure:
    """Predicted rewards r̂ and discounts γ̂ over the horizon, plotted at the frame they lead to (t = 1..H)."""
    steps = list(range(1, len(rollout["rewards"]) + 1))
    fig = go.Figure([go.Bar(x=steps, y=rollout["rewards"], name="r̂"),
                     go.Scatter(x=steps, y=rollout["discounts"], name="γ̂", mode="lines+markers")])
    if current is not None:
        fig.add_vline(x=current, line_dash="dot", line_color="#888")
    fig.update_layout(title="Predicted reward and discount", height=280, margin=dict(l=40, r=10, t=40, b=30),
                      xaxis_title="step", xaxis_range=[-0.5, len(rollout["frames"]) - 0.5])
    return fig


def token_label(label: Mapping[str, Any]) -> str:
    """`z-2`, `a-2`, `r-2`, …, `z0`, `a0`: the modality and the step relative to the query's."""
    return f"{label['modality']}{label['relative_step']}"


def token_labels(labels: Sequence[Mapping[str, Any]]) -> list[str]:
    return [token_label(label) for label in labels]


def token_colours(labels: Sequence[Mapping[str, Any]]) -> list[str]:
    return [MODALITY_COLOURS[label["modality"]] for label in labels]


def _coloured_ticks(labels: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """x-axis settings whose tick labels carry the modality colours."""
    names = token_labels(labels)
    text = [f"<span style='color:{c}'><b>{n}</b></span>" for n, c in zip(names, token_colours(labels), strict=True)]
    return dict(tickmode="array", tickvals=names, ticktext=text, tickangle=-90, type="category")


def _weights(rows: Sequence[Sequence[float]], contrast: bool) -> np.ndarray:
    w = np.asarray(rows, dtype=float)
    return np.minimum(3.0 * w, 1.0) if contrast else w  # the reference viewer's intensity min(3·w, 1)


def attention_figure(response: Response, contrast: bool = False) -> go.Figure:
    """Head-averaged attention of the query step's action token: layers on y, key tokens on x (paper Fig. 6)."""
    names = token_labels(response["labels"])
    z = _weights(response["head_mean"], contrast)  # (L, S)
    layers = [f"layer {i}" for i in range(z.shape[0])]
    fig = go.Figure(go.Heatmap(z=z.tolist(), x=names, y=layers, colorscale="Viridis", zmin=0,
                               colorbar=dict(title="min(3w,1)" if contrast else "weight"),
                               hovertemplate="%{y}, key %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Attention of a{response['query_step']} (head mean)", height=120 + 40 * z.shape[0],
                      margin=dict(l=60, r=10, t=40, b=60))
    fig.update_xaxes(**_coloured_ticks(response["labels"]))
    return fig


def attention_heads_figure(response: Response, contrast: bool = False) -> go.Figure:
    """One heatmap per head (layers × key tokens), stacked, sharing the colour scale and the token axis."""
    names = token_labels(response["labels"])
    weights = _weights(response["weights"], contrast)  # (L, H, S)
    num_layers, num_heads, _ = weights.shape
    zmax = float(weights.max()) if weights.size else 1.0
    fig = make_subplots(rows=num_heads, cols=1, shared_xaxes=True, vertical_spacing=min(0.15, 0.5 / num_heads),
                        subplot_titles=[f"head {h}" for h in range(num_heads)])
    for h in range(num_heads):
        fig.add_trace(go.Heatmap(z=weights[:, h].tolist(), x=names, y=[f"layer {i}" for i in range(num_layers)],
                                 colorscale="Viridis", zmin=0, zmax=zmax, showscale=h == 0,
                                 hovertemplate=f"head {h}, " + "%{y}, key %{x}: %{z:.3f}<extra></extra>"),
                      row=h + 1, col=1)
    fig.update_layout(height=80 + num_heads * (40 + 30 * num_layers), margin=dict(l=60, r=10, t=40, b=60))
    fig.update_xaxes(**_coloured_ticks(response["labels"]))
    return fig


def layer_matrix_figure(response: Response) -> go.Figure | None:
    """The chosen layer's full per-head matrix over the step's new query tokens, or None when not requested."""
    matrix = response.get("layer_matrix")
    if not matrix:
        return None
    names = token_labels(response["labels"])
    queries = token_labels(response.get("query_labels") or [])
    num_heads = len(matrix)
    zmax = max((w for rows in matrix for row in rows for w in row), default=1.0)  # weights are small: use the range
    fig = make_subplots(rows=1, cols=num_heads, shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"head {h}" for h in range(num_heads)])
    for h, rows in enumerate(matrix):
        y = queries if len(queries) == len(rows) else list(range(len(rows)))
        fig.add_trace(go.Heatmap(z=rows, x=names, y=y, colorscale="Viridis", zmin=0, zmax=zmax, showscale=h == 0,
                                 hovertemplate="query %{y}, key %{x}: %{z:.3f}<extra></extra>"), row=1, col=h + 1)
    fig.update_layout(title=f"Layer {response['layer']}: queries × keys per head", height=260,
                      margin=dict(l=60, r=10, t=60, b=60))
    fig.update_xaxes(**_coloured_ticks(response["labels"]))
    return fig
