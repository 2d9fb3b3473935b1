"""Unit tests of the pure inspection helpers on small hand-made responses (no backend, no Streamlit)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from frontend import inspect_views as views


def png(value: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), value, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def rollout(horizon: int = 4, real_frames: int | None = None) -> dict[str, Any]:
    """An /imagine response of `horizon` steps; with `real_frames`, a real replay that ended after that many."""
    names = ["NOOP", "FIRE", "RIGHT"]
    actions = [t % 3 for t in range(horizon)]
    response: dict[str, Any] = {
        "checkpoint_step": 100, "seed": 0, "horizon": horizon, "action_meanings": names,
        "frames": [png(10 * t) for t in range(horizon + 1)], "latent_shape": [2, 3],
        "latents": [[[1, 0, 0], [0, 0, 1]]] * (horizon + 1), "actions": actions,
        "action_names": [names[a] for a in actions], "rewards": [0.1 * t for t in range(horizon)],
        "discounts": [0.99] * horizon, "dones": [False] * (horizon - 1) + [True], "real": None,
    }
    if real_frames is not None:
        n = real_frames
        response["real"] = {"frames": [png(200)] * n, "rewards": [1.0] * (n - 1),
                            "rewards_transformed": [0.76] * (n - 1), "dones": [False] * (n - 1),
                            "frame_diffs": [0.1] * n}
    return response


def attention(num_layers: int = 3, num_heads: int = 2, steps: int = 2) -> dict[str, Any]:
    labels = [{"modality": m, "relative_step": s, "step": s, "index": 0}
              for s in range(-steps, 0) for m in "zar"] + [{"modality": m, "relative_step": 0, "step": 0, "index": 0}
                                                          for m in "za"]
    num_keys = len(labels)
    row = [1.0 / num_keys] * num_keys
    return {"query_step": 2, "labels": labels, "num_layers": num_layers, "num_heads": num_heads,
            "weights": [[row] * num_heads] * num_layers, "head_mean": [row] * num_layers, "layer": 1,
            "layer_matrix": [[row] * 3] * num_heads, "query_labels": labels[-3:]}


@pytest.mark.parametrize("real_frames", [None, 5, 3])
def test_gif_has_one_frame_per_step(real_frames: int | None) -> None:
    data = rollout(horizon=4, real_frames=real_frames)
    gif = Image.open(io.BytesIO(views.rollout_gif(data, scale=2)))
    assert gif.format == "GIF" and gif.n_frames == 5
    panels = 1 if real_frames is None else 2
    assert gif.width == panels * 128 + (panels - 1) * 4
    # The real panel turns black once the real episode ended (after frame 2 when it has 3 frames).
    gif.seek(4)
    right = np.asarray(gif.convert("L"))[:128, 132:]
    if real_frames == 3:
        assert right.max() == 0
    elif real_frames == 5:
        assert right.min() > 150


def test_frames_decode_to_arrays_and_upscale_crisply() -> None:
    frame = views.frame_array(png(77))
    assert frame.shape == (64, 64) and frame.dtype == np.uint8 and (frame == 77).all()
    big = views.upscale(views.decode_png(png(77)), 4)
    assert big.size == (256, 256) and set(np.asarray(big).ravel()) == {77}


def test_annotations_name_the_action_reward_and_discount_leading_to_a_frame() -> None:
    data = rollout(horizon=4, real_frames=3)
    assert views.step_annotation(data, 0).startswith("start")
    assert views.step_annotation(data, 3) == "a = RIGHT · r̂ = +0.200 · γ̂ = 0.990"
    assert views.step_annotation(data, 4).endswith("· done")
    assert views.real_annotation(data, 2) == "r = +1.0 (tanh +0.760)"
    assert views.real_annotation(data, 3) is None
    assert json.loads(views.rollout_json(data))["rewards"] == data["rewards"]


def test_parse_actions_takes_indices_and_names() -> None:
    meanings = ["NOOP", "FIRE", "RIGHT"]
    assert views.parse_actions("0, 2,right ; Fire", meanings) == [0, 2, 2, 1]
    assert views.parse_actions("1,1", None) == [1, 1]
    assert views.needs_names("0, RIGHT") and not views.needs_names("0, 1")
    with pytest.raises(ValueError, match="unknown action 'JUMP'"):
        views.parse_actions("0, JUMP", meanings)
    with pytest.raises(ValueError, match="out of range"):
        views.parse_actions("3", meanings)
    with pytest.raises(ValueError, match="empty"):
        views.parse_actions(" , ", meanings)
    assert views.start_body("replay", 5, 9) == {"kind": "replay", "index": 9}
    assert views.start_body("reset", 5, 9) == {"kind": "reset", "policy_steps": 5}


def test_token_labels_and_colours_follow_the_paper() -> None:
    labels = attention(steps=2)["labels"]
    assert views.token_labels(labels) == ["z-2", "a-2", "r-2", "z-1", "a-1", "r-1", "z0", "a0"]
    assert views.token_colours(labels)[:3] == ["#1f77b4", "#d62728", "#2ca02c"]  # z blue, a red, r green


def test_attention_figures_have_layers_by_tokens() -> None:
    response = attention(num_layers=3, num_heads=2, steps=2)
    fig = views.attention_figure(response)
    heatmap = fig.data[0]
    assert np.asarray(heatmap.z).shape == (3, 8) and list(heatmap.x)[-2:] == ["z0", "a0"]
    assert list(heatmap.y) == ["layer 0", "layer 1", "layer 2"]
    assert "#d62728" in fig.layout.xaxis.ticktext[-1]
    contrast = views.attention_figure(response, contrast=True).data[0]
    assert np.allclose(contrast.z, np.minimum(3 * np.asarray(heatmap.z), 1))

    heads = views.attention_heads_figure(response)
    assert len(heads.data) == 2 and all(np.asarray(t.z).shape == (3, 8) for t in heads.data)
    matrix = views.layer_matrix_figure(response)
    assert matrix is not None and len(matrix.data) == 2 and list(matrix.data[0].y) == ["r-1", "z0", "a0"]
    assert views.layer_matrix_figure({**response, "layer_matrix": None}) is None


def test_latent_and_frame_diff_figures() -> None:
    data = rollout(horizon=4, real_frames=3)
    latent = views.latent_figure(data["latents"][1])
    assert np.asarray(latent.data[0].z).shape == (2, 3)
    diff = views.frame_diff_figure(data, current=2)
    assert list(diff.data[0].y) == [0.1] * 3 and diff.layout.shapes[0].x0 == 2
    predictions = views.prediction_figure(data)
    assert list(predictions.data[0].x) == [1, 2, 3, 4]
