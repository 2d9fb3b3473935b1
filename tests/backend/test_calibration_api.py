"""`GET /api/runs/{run_id}/calibration` on the real debug run: fields and their invariants, determinism per seed,
checkpoint selection, bounds, and the errors (unknown run or checkpoint 404, a run without replay data 422)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings


@pytest.fixture(scope="module")
def client(debug_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("calibration-db") / "jobs.db"
    with TestClient(create_app(Settings(runs_dir=debug_run.parent, db_path=db, device="cpu"))) as test_client:
        yield test_client


def get(client: TestClient, run_id: str, status: int = 200, **params: Any) -> Any:
    response = client.get(f"/api/runs/{run_id}/calibration", params=params)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return response.json()


def test_calibration_fields(client: TestClient, debug_run: Path) -> None:
    body = get(client, debug_run.name, windows=16, seed=1)
    s = body["summary"]
    assert body["run_id"] == debug_run.name and body["step"] == 200 and body["seed"] == 1
    assert body["latent"] == "sample" and 0 < body["discount_factor"] <= 1
    assert s["num_windows"] == 16 and s["num_steps"] == 16 * body["sequence_length"]
    assert sum(b["count"] for b in body["reward_bins"]) == s["num_steps"]
    assert sum(b["count"] for b in body["discount_bins"]) == s["num_steps"]
    assert sum(v["count"] for v in body["reward_values"]) <= s["num_steps"]
    assert s["reward_mae"] >= 0 and s["discount_brier"] >= 0
    assert s["terminal_auroc"] is None or 0 <= s["terminal_auroc"] <= 1
    points = body["points"]
    assert len(points["predicted_reward"]) == len(points["terminal"]) == s["num_steps"]
    assert sum(points["terminal"]) == s["num_terminals"]


def test_same_seed_same_answer(client: TestClient, debug_run: Path) -> None:
    first = get(client, debug_run.name, windows=8, seed=4)
    assert get(client, debug_run.name, windows=8, seed=4) == first
    assert get(client, debug_run.name, windows=8, seed=5) != first


def test_checkpoint_by_step(client: TestClient, debug_run: Path) -> None:
    assert get(client, debug_run.name, checkpoint=100, windows=4)["step"] == 100
    assert get(client, debug_run.name, checkpoint="latest", windows=4)["step"] == 200


def test_errors(client: TestClient, debug_run: Path) -> None:
    get(client, debug_run.name, 404, checkpoint=12345)
    get(client, "no-such-run", 404)
    get(client, debug_run.name, 422, windows=0)
    get(client, debug_run.name, 422, windows=2049)
    get(client, debug_run.name, 422, checkpoint="newest")
    get(client, debug_run.name, 422, seed=-1)


def test_run_without_replay_data(debug_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(debug_run, runs / "no-replay", ignore=shutil.ignore_patterns("replay"))
    settings = Settings(runs_dir=runs, db_path=tmp_path / "jobs.db", device="cpu")
    with TestClient(create_app(settings)) as client:
        detail = get(client, "no-replay", 422, windows=4)["detail"]
    assert "no replay data" in detail
