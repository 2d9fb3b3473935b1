"""Pure helpers of the Inspector page: branches of a dream, their recipes in the URL, and the viewer's data.

A branch is a backend dream session plus how it was made from the main dream, as a recipe that fits in a URL:
`s5a2` = fork at step 5 with action 2, `s5c3k11` = fork at step 5 with categorical 3 set to class 11. Sessions
expire on the backend; a recipe does not: the same seed and recipe give the same branch again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

_RECIPE = re.compile(r"^s(\d+)(?:a(\d+)|c(\d+)k(\d+))$")


def recipe(step: int, action: int | None = None, latent: tuple[int, int] | None = None) -> str:
    if latent is not None:
        return f"s{step}c{latent[0]}k{latent[1]}"
    if action is None:
        raise ValueError("a recipe needs an action or a latent edit")
    return f"s{step}a{action}"


def parse_recipe(text: str) -> dict[str, Any] | None:
    """The fork request of a recipe (`{"step", "action"}` or `{"step", "latent": [...]}`), None if malformed."""
    match = _RECIPE.match(text.strip())
    if match is None:
        return None
    step, action, cat, cls = match.groups()
    if action is not None:
        return {"step": int(step), "action": int(action)}
    return {"step": int(step), "latent": [{"categorical": int(cat), "category": int(cls)}]}


def recipe_label(text: str, meanings: Sequence[str]) -> str:
    fork = parse_recipe(text)
    if fork is None:
        return text
    if "action" in fork:
        name = meanings[fork["action"]] if fork["action"] < len(meanings) else str(fork["action"])
        return f"fork at step {fork['step']}: {name}"
    edit = fork["latent"][0]
    return f"fork at step {fork['step']}: z[{edit['categorical']}] = {edit['category']}"


def fork_body(text: str, horizon: int) -> dict[str, Any]:
    """The fork request of a recipe, continued with the policy to the main dream's horizon."""
    fork = parse_recipe(text)
    if fork is None:
        raise ValueError(f"not a branch recipe: {text!r}")
    taken = 1 if "action" in fork else 0
    return {**fork, "steps": max(0, horizon - fork["step"] - taken)}


def track(branch: dict[str, Any], meanings: Sequence[str]) -> dict[str, Any]:
    """One branch as the viewer's track: per point, frames, real frames, errors, predictions and latents."""
    points = branch["points"]
    return {
        "id": branch["id"], "label": branch["label"],
        "frames": [p["frame"] for p in points],
        "real": [None if p["real"] is None else p["real"]["frame"] for p in points],
        "errors": [p["errors"] for p in points],
        "actions": [None if p["action"] is None else meanings[p["action"]] for p in points],
        "rewards": [p["reward"] for p in points], "discounts": [p["discount"] for p in points],
        "dones": [p["done"] for p in points], "restarted": [p["restarted"] for p in points],
        "latents": [p["latent"] for p in points], "confidence": [p["confidence"] for p in points],
    }


def viewer_data(branches: Sequence[dict[str, Any]], meanings: Sequence[str], latent_shape: Sequence[int],
                step: int, selected: int = 0, compare: int | None = None, film: bool = False) -> dict[str, Any]:
    """The dream viewer's input; `version` changes whenever the frames do (the page re-decodes them then).
    With `film`, every track's imagined frame is shown side by side (a checkpoint film)."""
    version = "|".join(f"{b['id']}:{len(b['points'])}" for b in branches) + f"@{step}:{selected}:{compare}:{film}"
    return {"version": version, "tracks": [track(b, meanings) for b in branches], "meanings": list(meanings),
            "latent_shape": list(latent_shape), "step": int(step), "track": int(selected),
            "compare": compare, "fps": 8, "film": film}


def film_checkpoints(steps: Sequence[int], most: int = 8) -> list[int]:
    """Up to `most` checkpoint steps, oldest first, evenly spread and always with the first and the last."""
    ordered = sorted(set(steps))
    if len(ordered) <= most:
        return ordered
    picks = {ordered[round(i * (len(ordered) - 1) / (most - 1))] for i in range(most)}
    return sorted(picks)


def first_divergence(points: Sequence[dict[str, Any]], metric: str = "pixel", threshold: float = 0.05) -> int | None:
    """The first step whose error `metric` exceeds `threshold` (what the viewer marks), or None."""
    for p in points:
        errors = p.get("errors")
        if errors is not None and errors.get(metric) is not None and errors[metric] > threshold:
            return int(p["step"])
    return None


def token_hover(label: dict[str, Any], points: Sequence[dict[str, Any]], meanings: Sequence[str]) -> str:
    """What a key token stands for: the action taken, the reward predicted, or the latent of its step."""
    step, modality = int(label["step"]), label["modality"]
    nxt = points[step + 1] if 0 <= step + 1 < len(points) else None
    if step < 0:
        return f"{modality} of the real context step"
    if modality == "a":
        return f"a{step} = {meanings[nxt['action']]}" if nxt and nxt["action"] is not None else f"a{step}"
    if modality == "r":
        return f"r̂{step} = {nxt['reward']:+.3f}" if nxt and nxt["reward"] is not None else f"r{step}"
    point = points[step] if step < len(points) else None
    err = point and point.get("errors")
    return f"z{step}" + (f" (pixel error vs real {err['pixel']:.3f})" if err else "")


def with_token_hover(fig: go.Figure, labels: Sequence[dict[str, Any]], points: Sequence[dict[str, Any]],
                     meanings: Sequence[str], track_id: str | None = None) -> go.Figure:
    """Every heatmap of `fig` (one column per key token of `labels`) hovers with what its token stands for; with
    `track_id`, `layout.meta.dream_tokens` names each column's step and modality and the branch, so the dream viewer
    on the page shows a z token's frame beside the hover, from the frames it already holds (no request)."""
    hover = [token_hover(label, points, meanings) for label in labels]
    for trace in fig.data:
        if isinstance(trace, go.Heatmap):
            template = trace.hovertemplate or "key %{x}: %{z:.3f}<extra></extra>"
            trace.customdata = [hover] * len(trace.z)  # (rows, tokens): the same token text on every row
            if "%{customdata}" not in template:
                trace.hovertemplate = template.replace("key %{x}", "key %{x} · %{customdata}")
    if track_id is not None:
        fig.update_layout(meta={"dream_tokens": {"track": track_id, "steps": [int(lab["step"]) for lab in labels],
                                                 "modalities": [lab["modality"] for lab in labels]}})
    return fig


def overview_figure(reply: dict[str, Any], points: Sequence[dict[str, Any]], meanings: Sequence[str],
                    track_id: str | None = None) -> go.Figure:
    """One layer over the whole dream: query steps on y, every token fed on x (absolute steps), with hover text."""
    labels = reply["labels"]
    names = [f"{lab['modality']}{lab['step']}" for lab in labels]
    rows = [f"{reply['token']}{s}" for s in reply["steps"]]
    fig = go.Figure(go.Heatmap(z=reply["matrix"], x=list(range(len(names))), y=rows, colorscale="Viridis", zmin=0,
                               colorbar=dict(title="weight"),
                               hovertemplate="query %{y} → %{customdata}: %{z:.3f}<extra></extra>"))
    with_token_hover(fig, labels, points, meanings, track_id)
    head = "head mean" if reply["head"] is None else f"head {reply['head']}"
    fig.update_layout(title=f"Layer {reply['layer']} over the whole dream ({head}): each query's attention",
                      height=200 + 14 * len(rows), margin=dict(l=60, r=10, t=50, b=60))
    step = max(1, len(names) // 40)
    fig.update_xaxes(tickmode="array", tickvals=list(range(0, len(names), step)), ticktext=names[::step],
                     tickangle=-90)
    return fig
