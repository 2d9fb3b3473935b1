"""Bad model files hurt only the request that reads them: a checkpoint with NaN weights (what a diverged run saves)
is a 409 for imagine and sessions, not NaN frames or a 500; a truncated replay chunk makes a replay start a 422."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings
from twm_core.checkpoint import load_checkpoint, save_checkpoint
from twm_core.run_dir import RunDir


@pytest.fixture(scope="module")
def runs(debug_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model-files")
    diverged = root / "diverged"
    shutil.copytree(debug_run, diverged, ignore=shutil.ignore_patterns("ckpt"))
    state = load_checkpoint(debug_run / "ckpt" / "step_000000200.pt")
    weights = state["world_model"]
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_checkpoint(RunDir(diverged), 200, {k: v for k, v in state.items() if k not in ("format_version",)})
    truncated = root / "truncated-replay"
    shutil.copytree(debug_run, truncated)
    chunk = sorted((truncated / "replay").glob("chunk_*.npz"))[0]
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 3])
    return root


@pytest.fixture(scope="module")
def client(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(runs_dir=runs, db_path=tmp_path_factory.mktemp("db") / "jobs.db", device="cpu")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_nan_weights_are_a_409_everywhere(client: TestClient) -> None:
    for response in (client.post("/api/runs/diverged/imagine", json={"horizon": 3}),
                     client.post("/api/runs/diverged/attention", json={"query_step": 1}),
                     client.post("/api/sessions", json={"run_id": "diverged"}),
                     client.get("/api/runs/diverged/calibration")):
        assert response.status_code == 409, response.text
        detail = response.json()["detail"]
        assert "non-finite weights" in detail and "/tmp" not in detail


def test_truncated_replay_chunk_is_a_422_for_replay_starts_only(client: TestClient) -> None:
    replay = client.post("/api/runs/truncated-replay/imagine", json={"start": {"kind": "replay", "index": 3}})
    assert replay.status_code == 422 and "replay" in replay.json()["detail"]
    session = client.post("/api/sessions", json={"run_id": "truncated-replay",
                                                 "start": {"kind": "replay", "index": 3}})
    assert session.status_code == 422
    # a reset start needs no replay rows until an imagined done restarts from one: it still works
    assert client.post("/api/runs/truncated-replay/imagine", json={"horizon": 4}).status_code == 200
    assert client.get("/api/runs").status_code == 200
