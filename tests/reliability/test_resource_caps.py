"""Resource caps of jobs submitted over HTTP (issue #12): bounds on steps, replay capacity and model size, and a
refusal when the estimated memory (`twm_core.resources.estimate_memory`) exceeds the machine's.

No job here trains: the backend's `python_executable` is `/bin/false`, so an accepted job's process exits at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from helpers import FAST_TRAIN

import backend.job_requests
import backend.jobs
from backend.main import create_app
from backend.settings import Settings
from twm_core.agent import Agent
from twm_core.presets import make_config
from twm_core.resources import MAX_LAYERS, count_parameters, estimate_memory, memory_breakdown, replay_bytes

GIB = 2**30


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(**{"runs_dir": tmp_path / "runs", "device": "cpu", "python_executable": "/bin/false",
                       "job_poll_seconds": 0.2, **changes})


def body(**changes: Any) -> dict[str, Any]:
    return {"game": "Catch", "preset": "debug", "seed": 0, "device": "cpu", **changes}


@pytest.fixture
def ram_8gib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine the defaults promise to serve: 8 GiB of RAM, whatever this one has."""
    monkeypatch.setattr(backend.job_requests, "_total_ram", lambda: 8 * GIB)


@pytest.mark.parametrize(("overrides", "fields"), [
    ({"replay.capacity": 1e9, "train.total_steps": 1e9}, ["train.total_steps", "replay.capacity"]),
    ({"dyn.embed_dim": 1e6}, ["dyn.embed_dim", "TWM_MAX_MODEL_PARAMS"]),
    ({"dyn.num_layers": 10**6}, ["dyn.num_layers", str(MAX_LAYERS)]),
    ({"dyn.embed_dim": 10**15}, ["dyn.embed_dim"]),  # past what even a meta tensor's size can hold
    ({"ac.batch_size": 10**7}, ["ac.batch_size", "RAM", "TWM_JOB_MEMORY_FRACTION"]),  # activations alone: terabytes
])
def test_measured_bodies_are_refused(tmp_path: Path, ram_8gib: None, overrides: dict[str, Any],
                                     fields: list[str]) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        for path, request in (("/api/jobs", body(preset="atari100k", overrides=overrides)),
                              ("/api/sweeps", {"games": "Catch", "seeds": "0", "preset": "atari100k",
                                               "device": "cpu", "overrides": overrides})):
            response = client.post(path, json=request)
            assert response.status_code == 422, (path, response.text)
            detail = response.json()["detail"]
            assert all(field in detail for field in fields), (fields, detail)
        assert client.get("/api/jobs").json() == {"jobs": []}


def test_steps_field_is_capped_too(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_job_steps=1000))) as client:
        response = client.post("/api/jobs", json=body(steps=2000, overrides={"replay.capacity": 2000}))
        assert response.status_code == 422 and "train.total_steps" in response.json()["detail"]
        assert "TWM_MAX_JOB_STEPS" in response.json()["detail"]


def test_paper_preset_is_accepted_on_8_gib(tmp_path: Path, ram_8gib: None) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/jobs", json=body(game="Pong", preset="atari100k"))
        assert response.status_code == 201, response.text
        job = response.json()
        client.post(f"/api/jobs/{job['job_id']}/cancel")  # /bin/false has likely ended it already
    assert job["preset"] == "atari100k"


def test_memory_over_the_fraction_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend.job_requests, "_total_ram", lambda: 4 * GIB)  # the paper's run wants ~4.6 GiB
    with TestClient(create_app(make_settings(tmp_path))) as client:
        response = client.post("/api/jobs", json=body(game="Pong", preset="atari100k"))
        assert response.status_code == 422, response.text
        assert "RAM" in response.json()["detail"] and "'atari100k'" in response.json()["detail"]
    # Unchecked when the fraction is unset.
    jobs = backend.jobs.JobManager(make_settings(tmp_path, job_memory_fraction=None))
    assert jobs.prepare("Pong", "atari100k", 0, device="cpu").row["preset"] == "atari100k"


def test_cuda_job_puts_the_model_on_the_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ram_8gib: None) -> None:
    """A CUDA job: the replay buffer counts against RAM, the model side against the GPU (faked here)."""
    jobs = backend.jobs.JobManager(make_settings(tmp_path))
    monkeypatch.setattr(backend.job_requests, "_device_memory", lambda device: ("cuda:0", 2 * GIB))
    with pytest.raises(backend.jobs.InvalidJob, match="cuda:0"):
        jobs.prepare("Pong", "atari100k", 0, device="cpu")
    monkeypatch.setattr(backend.job_requests, "_device_memory", lambda device: ("cuda:0", 8 * GIB))
    monkeypatch.setattr(backend.job_requests, "_total_ram", lambda: 1 * GIB)  # the replay's 410 MB fits in 0.8 GiB
    assert jobs.prepare("Pong", "atari100k", 0, device="cpu").row["preset"] == "atari100k"


def test_defaults_allow_the_debug_jobs_of_the_test_suite(tmp_path: Path) -> None:
    jobs = backend.jobs.JobManager(make_settings(tmp_path))
    for preset, game in (("debug", "Catch"), ("catch", "Catch"), ("debug", "Pong")):
        assert jobs.prepare(game, preset, 0, steps=110, device="cpu", overrides=FAST_TRAIN).row["preset"] == preset


def test_paper_estimate_is_sane() -> None:
    cfg = make_config("atari100k", "Pong")
    estimate = memory_breakdown(cfg)
    frames = 100_000 * 64 * 64
    assert frames < estimate.replay < frames * 1.01  # ≈ 410 MB: one uint8 frame per row plus a few bytes
    assert replay_bytes(cfg) == estimate.replay
    assert 15e6 < estimate.num_parameters < 30e6  # the paper's model: ~21.7M parameters
    assert estimate.parameters + estimate.optimizer == 16 * estimate.num_parameters
    assert 1 * GIB < estimate_memory(cfg) < 8 * 0.8 * GIB


def test_replay_estimate_matches_the_buffer() -> None:
    from twm_core.replay import ReplayBuffer

    cfg = make_config("debug", "Catch")
    buffer = ReplayBuffer(cfg.replay.capacity, cfg.env.frame_stack)
    parts = [*vars(buffer).values(), *vars(buffer._obs).values()]  # the rows, and the frame stacks
    tensors = [value for value in parts if isinstance(value, torch.Tensor)]
    assert replay_bytes(cfg) == sum(t.numel() * t.element_size() for t in tensors)


def test_parameter_count_matches_the_real_models() -> None:
    cfg = make_config("debug", "Catch")
    agent = Agent.build(cfg, num_actions=3)
    counts = count_parameters(cfg, num_actions=3)
    assert counts["obs_model"] == sum(p.numel() for p in agent.world_model.obs_model.parameters())
    assert counts["dyn_model"] == sum(p.numel() for p in agent.world_model.dyn_model.parameters())
    assert counts["actor_critic"] == sum(p.numel() for p in agent.actor_critic.parameters())
