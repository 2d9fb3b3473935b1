"""HTTP-facing glue for dream sessions: starting one from a request's start, and turning points, futures and
attention into JSON-ready dicts (frames as base64 PNGs). The imagination itself is `twm_core.dream`."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.services import InvalidRequest, ReplayStart, ResetStart, StartSpec
from twm_core.agent import Agent
from twm_core.dream import (
    AttentionOverview,
    DreamError,
    DreamPoint,
    DreamSession,
    Futures,
    QueryAttention,
    StartCache,
    replay_start,
)
from twm_core.models.dynamics import TokenLabel


def png_base64(frame: np.ndarray) -> str:
    """A (64, 64) uint8 grayscale frame as a base64 PNG string."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unit_png(image: np.ndarray, scale: float = 1.0) -> str:
    """A float image in [0, scale] as a PNG (scaled to 0..255)."""
    return png_base64((np.clip(image / max(scale, 1e-12), 0.0, 1.0) * 255.0).round().astype(np.uint8))


def begin(agent: Agent, starts: StartCache, spec: StartSpec, seed: int, real: bool) -> DreamSession:
    """A session at point 0 of `spec`; `real` (reset starts only) steps the emulator alongside."""
    try:
        if isinstance(spec, ReplayStart):
            if real:
                raise InvalidRequest("a real comparison needs a reset start (a replay row has no emulator state)")
            start = replay_start(agent, spec.index)
        else:
            assert isinstance(spec, ResetStart)
            start = starts.reset_start(seed, spec.policy_steps)
        return DreamSession.begin(agent, start, seed, real=real)
    except DreamError as exc:
        raise InvalidRequest(str(exc)) from exc


def step_many(session: DreamSession, count: int, actions: list[int] | None) -> None:
    """`count` steps with the policy, or with `actions` (one per step)."""
    if actions is not None and len(actions) != count:
        raise InvalidRequest(f"got {len(actions)} actions for {count} steps")
    try:
        for t in range(count):
            session.step(None if actions is None else actions[t])
    except DreamError as exc:
        raise InvalidRequest(str(exc)) from exc


def latent_indices(agent: Agent, z: torch.Tensor) -> list[int]:
    """Class of each categorical of a one-hot latent. Shapes: z (..., Z) -> C ints"""
    return z.reshape(agent.world_model.dyn_model.z_shape).argmax(-1).tolist()


def point_dict(agent: Agent, p: DreamPoint) -> dict[str, Any]:
    meanings = agent.action_meanings()
    real = None
    if p.real is not None:
        real = {"frame": png_base64(p.real.frame), "latent": p.real.posterior.argmax(-1).tolist(),
                "reward": p.real.reward, "reward_transformed": p.real.reward_transformed, "done": p.real.done}
    errors = None if p.errors is None else {"latent_ce": p.errors.latent_ce, "reward": p.errors.reward,
                                            "discount": p.errors.discount, "pixel": p.errors.pixel}
    return {
        "step": p.step, "frame": png_base64(p.frame), "latent": latent_indices(agent, p.z),
        "confidence": None if p.prior is None else p.prior.max(-1).values.tolist(),
        "action": p.action, "action_name": None if p.action is None else meanings[p.action],
        "reward": p.reward, "discount": p.discount, "weight": p.weight, "done": p.done,
        "restarted": p.restarted, "edited": p.edited, "real": real, "errors": errors,
    }


def latent_dict(p: DreamPoint, z_shape: tuple[int, int]) -> dict[str, Any]:
    """Full probabilities of one point: the prior z was drawn from, and the real frame's posterior."""
    return {"step": p.step, "latent_shape": list(z_shape),
            "sample": p.z.reshape(z_shape).argmax(-1).tolist(),
            "prior": None if p.prior is None else p.prior.tolist(),
            "posterior": None if p.real is None else p.real.posterior.tolist()}


def futures_dict(f: Futures) -> dict[str, Any]:
    """Frames of every future, and per step the mean frame and the standard deviation (PNG scaled by its max)."""
    std_max = [float(s.max()) for s in f.std]
    return {"step": f.step, "seed": f.seed, "n": int(f.frames.shape[0]), "horizon": int(f.frames.shape[1]),
            "frames": [[png_base64(frame) for frame in row] for row in f.frames],
            "mean": [unit_png(m) for m in f.mean],
            "std": [unit_png(s, mx) for s, mx in zip(f.std, std_max, strict=True)],
            "std_max": std_max, "std_mean": [float(s.mean()) for s in f.std],
            "actions": f.actions.tolist(), "rewards": f.rewards.tolist(), "discounts": f.discounts.tolist(),
            "dones": f.dones.tolist(), "latents": f.latents.tolist()}


def labels_list(labels: list[TokenLabel]) -> list[dict[str, Any]]:
    return [{"modality": t.modality, "relative_step": t.relative_step, "step": t.step, "index": t.index}
            for t in labels]


def query_dict(q: QueryAttention) -> dict[str, Any]:
    return {"step": q.step, "token": q.modality, "weights": q.weights.tolist(),
            "head_mean": q.weights.mean(1).tolist(), "labels": labels_list(q.labels),
            "rollout": None if q.rollout is None else q.rollout.tolist(),
            "rollout_labels": None if q.rollout_labels is None else labels_list(q.rollout_labels)}


def overview_dict(o: AttentionOverview) -> dict[str, Any]:
    return {"layer": o.layer, "head": o.head, "token": o.modality, "steps": o.steps, "matrix": o.matrix.tolist(),
            "labels": labels_list(o.labels)}
