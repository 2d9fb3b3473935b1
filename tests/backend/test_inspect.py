"""Contract tests of the inspect endpoints (imagine, attention) and the model registry, on the real debug run."""

from __future__ import annotations

import base64
import io
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.main import create_app
from backend.registry import ModelRegistry, RunNotFoundError
from backend.settings import Settings
from twm_core.checkpoint import CheckpointNotFoundError
from twm_core.config import TWMConfig
from twm_core.envs import make_env
from twm_core.models.dynamics import token_labels
from twm_core.replay import ReplayBuffer
from twm_core.run_dir import RunDir, read_json


@pytest.fixture(scope="module")
def settings(debug_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    db = tmp_path_factory.mktemp("inspect-db") / "jobs.db"  # keep the shared run's parent untouched
    return Settings(runs_dir=debug_run.parent, db_path=db, device="cpu")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def cfg(debug_run: Path) -> TWMConfig:
    data = read_json(RunDir(debug_run).config_path)
    assert data is not None
    return TWMConfig.from_dict(data)


def post(client: TestClient, run_id: str, endpoint: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post(f"/api/runs/{run_id}/{endpoint}", json=body)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return response.json()


def png(data: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


# ------------------------------------------------------------------------------------------------ imagine
def test_imagine_from_reset_with_policy(client: TestClient, debug_run: Path, cfg: TWMConfig) -> None:
    horizon = 6
    body = post(client, debug_run.name, "imagine", {"checkpoint": 200, "seed": 3, "horizon": horizon,
                                                    "start": {"kind": "reset", "policy_steps": 2}})
    assert body["checkpoint_step"] == 200 and body["policy"] is True and body["real"] is None
    assert len(body["frames"]) == horizon + 1
    assert all(png(f).shape == (64, 64) for f in [*body["frames"], body["start_frame"]])
    assert len(body["start_policy_actions"]) == 2
    c, k = cfg.obs.z_categoricals, cfg.obs.z_categories
    latents = np.array(body["latents"])
    assert body["latent_shape"] == [c, k] and latents.shape == (horizon + 1, c, k)
    assert ((latents == 0) | (latents == 1)).all() and (latents.sum(-1) == 1).all() and latents.max() < k
    assert (np.array(body["latent_indices"]) == latents.argmax(-1)).all()
    for key in ("actions", "action_names", "rewards", "discounts", "weights", "dones"):
        assert len(body[key]) == horizon, key
    assert all(math.isfinite(r) for r in body["rewards"])
    assert all(0.0 <= g <= 1.0 for g in body["discounts"])
    meanings = body["action_meanings"]
    assert meanings[0] == "NOOP" and all(0 <= a < len(meanings) for a in body["actions"])
    assert body["action_names"] == [meanings[a] for a in body["actions"]]


def test_compare_real_matches_a_fresh_env(client: TestClient, debug_run: Path, cfg: TWMConfig) -> None:
    seed, horizon = 5, 8
    body = post(client, debug_run.name, "imagine", {"seed": seed, "horizon": horizon, "compare_real": True,
                                                    "start": {"kind": "reset", "policy_steps": 3}})
    real = body["real"]
    # Replay it ourselves in a fresh env: the service's snapshot/restore must reproduce the same emulator states.
    env = make_env(cfg.env, seed=seed, eval=True)
    obs, _ = env.reset()
    for a in body["start_policy_actions"]:
        obs, *_ = env.step(a)
    expected, rewards = [np.asarray(obs)[-1]], []
    for a in body["actions"][: len(real["dones"])]:
        obs, r, *_ = env.step(a)
        expected.append(np.asarray(obs)[-1])
        rewards.append(float(r))
    env.close()
    assert png(body["start_frame"]).tolist() == expected[0].tolist()
    assert [png(f).tolist() for f in real["frames"]] == [f.tolist() for f in expected]
    assert real["rewards"] == rewards
    assert len(real["frame_diffs"]) == len(real["frames"]) == len(real["dones"]) + 1
    for t, diff in enumerate(real["frame_diffs"]):
        assert 0.0 <= diff <= 1.0
        ours = np.abs(png(body["frames"][t]) / 255.0 - expected[t] / 255.0).mean()
        assert abs(diff - ours) <= 1 / 255  # the service compares before quantising to uint8


def test_given_actions_are_echoed_and_replayed(client: TestClient, debug_run: Path) -> None:
    actions = [0, 1, 2, 3, 2, 1]
    body = post(client, debug_run.name, "imagine", {"horizon": 6, "actions": actions, "compare_real": True})
    assert body["actions"] == actions and body["policy"] is False
    assert body["start_policy_actions"] == [] and len(body["real"]["frames"]) == 7


def test_same_seed_same_response(client: TestClient, debug_run: Path) -> None:
    request = {"seed": 11, "horizon": 10, "compare_real": True, "start": {"kind": "reset", "policy_steps": 2}}
    first = post(client, debug_run.name, "imagine", request)
    assert post(client, debug_run.name, "imagine", request) == first


def test_replay_start_begins_at_the_buffer_frame(client: TestClient, debug_run: Path, cfg: TWMConfig) -> None:
    index = 57
    body = post(client, debug_run.name, "imagine", {"checkpoint": 100, "horizon": 4,
                                                    "start": {"kind": "replay", "index": index}})
    buffer = ReplayBuffer.load(RunDir(debug_run).replay_dir, capacity=100, upto=100, frame_stack=cfg.env.frame_stack)
    assert png(body["start_frame"]).tolist() == buffer.get_obs(index)[-1].numpy().tolist()
    assert len(body["frames"]) == 5 and body["checkpoint_step"] == 100


# ---------------------------------------------------------------------------------------------- attention
def test_token_labels() -> None:
    labels = token_labels(8, 3)
    assert [t.modality for t in labels] == ["z", "a", "r", "z", "a", "r", "z", "a"]
    assert [t.relative_step for t in labels] == [-2, -2, -2, -1, -1, -1, 0, 0]
    assert [t.index for t in labels] == list(range(8))
    labels = token_labels(6, 2, last_step=4, first_index=10)
    assert [t.modality for t in labels] == ["z", "a"] * 3
    assert [t.step for t in labels] == [2, 2, 3, 3, 4, 4] and labels[0].index == 10
    for bad in ((7, 3), (1, 3), (8, 4)):
        with pytest.raises(ValueError):
            token_labels(*bad)


@pytest.mark.parametrize("query_step", [0, 12])  # 12 > memory_length (8): the memory window is full
def test_attention_rows_and_labels(client: TestClient, debug_run: Path, cfg: TWMConfig, query_step: int) -> None:
    start = {"kind": "reset", "policy_steps": 1}
    body = post(client, debug_run.name, "attention", {"seed": 2, "query_step": query_step, "layer": 1, "start": start})
    L, H, m = cfg.dyn.num_layers, cfg.dyn.num_heads, cfg.dyn.tokens_per_step
    weights = np.array(body["weights"])
    num_keys = min(2 + m * (query_step + 1), cfg.dyn.memory_length * m + 2 + m)
    assert weights.shape == (L, H, num_keys) == (body["num_layers"], body["num_heads"], len(body["labels"]))
    assert np.allclose(weights.sum(-1), 1.0, atol=1e-4) and (weights >= 0).all()
    assert np.allclose(np.array(body["head_mean"]), weights.mean(1), atol=1e-6)
    labels = body["labels"]
    assert [t["modality"] for t in labels[-2:]] == ["z", "a"] and labels[-1]["relative_step"] == 0
    assert all(t["modality"] == "zar"[i % 3] for i, t in enumerate(labels))
    assert labels[-1]["index"] == 2 + m * (query_step + 1) - 1 and labels[-1]["step"] == query_step
    matrix = np.array(body["layer_matrix"])
    assert matrix.shape == (H, m, num_keys) and np.allclose(matrix.sum(-1), 1.0, atol=1e-4)
    assert np.allclose(matrix[:, -1], weights[1], atol=1e-6)
    assert [t["modality"] for t in body["query_labels"]] == ["r", "z", "a"]
    assert png(body["frame"]).shape == (64, 64)
    # the same seed and start imagine the same steps as the imagine endpoint
    rollout = post(client, debug_run.name, "imagine", {"seed": 2, "horizon": query_step + 1, "start": start})
    assert body["actions"] == rollout["actions"]
    assert body["reward"] == pytest.approx(rollout["rewards"][query_step], abs=1e-6)


def test_attention_without_layer_has_no_matrix(client: TestClient, debug_run: Path) -> None:
    body = post(client, debug_run.name, "attention", {"query_step": 2, "start": {"kind": "replay", "index": 10}})
    assert body["layer_matrix"] is None and body["query_labels"] is None


# -------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("endpoint", "body"), [
    ("imagine", {"actions": [0, 99], "horizon": 2}),
    ("imagine", {"actions": [0, 1, 2], "horizon": 2}),
    ("imagine", {"horizon": 0}),
    ("imagine", {"horizon": 201}),
    ("imagine", {"start": {"kind": "replay", "index": 10**6}}),
    ("imagine", {"start": {"kind": "replay", "index": 5}, "compare_real": True}),
    ("imagine", {"start": {"kind": "teleport"}}),
    ("imagine", {"checkpoint": "newest"}),
    ("attention", {"query_step": 200}),
    ("attention", {"query_step": 3, "actions": [0, 1]}),
    ("attention", {"layer": 7}),
])
def test_invalid_requests_are_422(client: TestClient, debug_run: Path, endpoint: str, body: dict[str, Any]) -> None:
    assert "detail" in post(client, debug_run.name, endpoint, body, status=422)


def test_unknown_run_or_checkpoint_is_404(client: TestClient, debug_run: Path) -> None:
    assert "no run" in post(client, "no-such-run", "imagine", {}, status=404)["detail"]
    detail = post(client, debug_run.name, "attention", {"checkpoint": 150}, status=404)["detail"]
    assert "100, 200" in detail


# ------------------------------------------------------------------------------------------------ registry
def test_registry_caches_and_evicts(settings: Settings, debug_run: Path) -> None:
    registry = ModelRegistry(settings.model_copy(update={"max_loaded_models": 1}))
    first = registry.get(debug_run.name, 100)
    assert registry.get(debug_run.name, 100) is first and not first.world_model.training
    latest = registry.get(debug_run.name, "latest")
    assert latest.step == 200 and registry.get(debug_run.name, 200) is latest
    assert registry.cached_keys() == [(debug_run.name, 200)]
    assert registry.get(debug_run.name, 100) is not first  # evicted, loaded again
    with pytest.raises(RunNotFoundError):
        registry.get("../etc")
    with pytest.raises(CheckpointNotFoundError):
        registry.get(debug_run.name, 7)


def test_registry_loads_once_under_concurrency(settings: Settings, debug_run: Path) -> None:
    registry = ModelRegistry(settings)
    loads, load, count_lock = [], registry._load, threading.Lock()

    def counting_load(*args: Any) -> Any:
        with count_lock:
            loads.append(args)
        return load(*args)

    registry._load = counting_load  # type: ignore[method-assign]
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: registry.get(debug_run.name, 200), range(8)))
    assert len(loads) == 1 and all(m is models[0] for m in models)
