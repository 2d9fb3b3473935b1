"""Checkpoint evaluations over HTTP, for real: a `twm eval --record` subprocess per request, its record read back."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings
from twm_core.agent import load_agent
from twm_core.checkpoint import resolve_checkpoint
from twm_core.checkpoint_evaluation import play, record_path
from twm_core.run_dir import RunDir

RUN = "pong-debug-run"


@pytest.fixture
def runs_dir(debug_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(debug_run, tmp_path / "runs" / RUN)  # the shared run stays untouched: evaluations write into it
    return tmp_path / "runs"


@pytest.fixture
def client(runs_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(runs_dir=runs_dir, device="cpu"))) as test_client:
        yield test_client


def wait_finished(client: TestClient, step: int, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = client.get(f"/api/runs/{RUN}/evaluations")
        assert listed.status_code == 200
        mine = [e for e in listed.json()["evaluations"] if e["step"] == step]
        if mine and mine[0]["state"] != "running":
            return mine[0]
        time.sleep(0.5)
    raise AssertionError(f"the evaluation of step {step} did not end in {timeout} s")


def test_evaluate_a_checkpoint_and_read_its_scores(client: TestClient, runs_dir: Path) -> None:
    started = client.post(f"/api/runs/{RUN}/checkpoints/100/evaluations", json={"episodes": 2, "seed": 3})
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "running"
    again = client.post(f"/api/runs/{RUN}/checkpoints/100/evaluations", json={"episodes": 2, "seed": 3})
    assert again.status_code == 409 and "detail" in again.json()
    other = client.post(f"/api/runs/{RUN}/checkpoints/200/evaluations", json={"episodes": 1})
    assert other.status_code == 409, "the default cap is one evaluation at a time"

    done = wait_finished(client, 100)
    assert done["state"] == "finished", done
    assert done["done"] == 2 and len(done["scores"]) == 2
    assert done["summary"]["score_mean"] == pytest.approx(sum(done["scores"]) / 2)
    assert "hns" in done["summary"]  # Pong has reference scores

    # The record is what this checkpoint's policy scores with these seeds, played here in-process.
    run_dir = RunDir(runs_dir / RUN)
    agent = load_agent(resolve_checkpoint(run_dir, 100), "cpu", run_dir=run_dir)
    assert [r.score for r in play(agent, 2, 3)] == done["scores"]


def test_bad_requests_are_4xx(client: TestClient) -> None:
    assert client.post(f"/api/runs/{RUN}/checkpoints/150/evaluations").status_code == 404
    assert client.post("/api/runs/nope/checkpoints/100/evaluations").status_code == 404
    for body in ({"episodes": 0}, {"episodes": 100_000}, {"seed": -1}, {"episodes": "many"}):
        response = client.post(f"/api/runs/{RUN}/checkpoints/100/evaluations", json=body)
        assert response.status_code == 422, body
    assert client.get(f"/api/runs/{RUN}/evaluations").json()["evaluations"] == []


def test_damaged_and_orphaned_records_are_listed_with_their_reason(client: TestClient, runs_dir: Path) -> None:
    run_dir = RunDir(runs_dir / RUN)
    damaged = record_path(run_dir, 100, 5, 1)
    damaged.parent.mkdir(parents=True)
    damaged.write_text("{not json")
    orphan = record_path(run_dir, 200, 5, 1)  # a 'running' record whose process is long gone
    orphan.write_text(json.dumps({"state": "running", "pid": 2**22 + 12345, "done": 1, "scores": [-21.0]}))
    (damaged.parent / "notes.txt").write_text("ignored")
    listed = client.get(f"/api/runs/{RUN}/evaluations")
    assert listed.status_code == 200
    states = {(e["step"], e["state"]) for e in listed.json()["evaluations"]}
    assert states == {(100, "damaged"), (200, "failed")}
    assert all(e["error"] for e in listed.json()["evaluations"])


def test_a_run_is_not_deleted_while_a_checkpoint_evaluation_runs(client: TestClient, runs_dir: Path) -> None:
    run_dir = RunDir(runs_dir / RUN)
    record = record_path(run_dir, 100, 5, 1)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"state": "running", "pid": os.getpid(), "done": 0}))  # a live process
    refused = client.delete(f"/api/runs/{RUN}")
    assert refused.status_code == 409 and "evaluations running" in refused.json()["detail"]
    record.write_text(json.dumps({"state": "finished", "pid": os.getpid(), "done": 5, "scores": [1.0] * 5}))
    assert client.delete(f"/api/runs/{RUN}").status_code == 204
