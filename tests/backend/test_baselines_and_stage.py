"""Contract tests: `GET /api/games/{game}/baselines` (the reference scores of the Runs page's score chart) and the
stage progress fields of status.json passed through `GET /api/runs` and `GET /api/runs/{run_id}`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.schemas.runs import STAGE_FIELDS
from backend.settings import Settings
from twm_core.presets import make_config

SCORES = json.loads(resources.files("twm_core.data").joinpath("atari100k-scores.json").read_text())["games"]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def client(runs_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(runs_dir=runs_dir, device="cpu"))) as test_client:
        yield test_client


def make_run(runs_dir: Path, run_id: str, status: dict[str, Any]) -> None:
    run = runs_dir / run_id
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(make_config("debug", "Pong", seed=0).to_dict()))
    (run / "status.json").write_text(json.dumps(status))


# ------------------------------------------------------------------------------------------------ baselines
@pytest.mark.parametrize("game", ["Pong", "MsPacman", "Breakout"])
def test_baselines_are_the_data_files_numbers(client: TestClient, game: str) -> None:
    response = client.get(f"/api/games/{game}/baselines")
    assert response.status_code == 200, response.text
    expected = SCORES[game]
    assert response.json() == {"game": game, "random": expected["random"], "human": expected["human"],
                               "twm": expected["TWM"], "twm_runs": expected["TWM_runs"]}


def test_pong_baselines_by_value(client: TestClient) -> None:
    body = client.get("/api/games/Pong/baselines").json()
    assert (body["random"], body["human"], body["twm"]) == (-20.7, 14.6, 18.8)


@pytest.mark.parametrize("game", ["Catch", "NoSuchGame", "pong"])
def test_a_game_without_reference_scores_is_a_json_404(client: TestClient, game: str) -> None:
    response = client.get(f"/api/games/{game}/baselines")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert f"no reference scores for game {game!r}" in response.json()["detail"]


def test_baselines_are_in_the_openapi_schema(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/games/{game}/baselines"]["get"]
    assert set(operation["responses"]) >= {"200", "404"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("GameBaselines")


# ------------------------------------------------------------------------------------------------ stage progress
STAGE = {"stage": "pretrain/dyn", "stage_done": 1200, "stage_total": 5000, "stage_unit": "frames",
         "stage_started_at": 1_700_000_000.5, "eta_s": 180.0, "run_eta_s": 720.0}


def test_stage_fields_pass_through_the_listing_and_the_detail(client: TestClient, runs_dir: Path) -> None:
    make_run(runs_dir, "live", {"state": "pretrain", "pid": os.getpid(), "step": 0, "total_steps": 400,
                                "updated": time.time(), **STAGE})
    (summary,) = client.get("/api/runs").json()["runs"]
    assert {name: summary[name] for name in STAGE_FIELDS} == STAGE
    assert summary["state"] == "pretrain" and not summary["stale"]
    detail = client.get("/api/runs/live").json()
    assert {name: detail[name] for name in STAGE_FIELDS} == STAGE


def test_a_run_older_than_the_stage_fields_reads_them_as_null(client: TestClient, runs_dir: Path) -> None:
    make_run(runs_dir, "old", {"state": "finished", "step": 400, "total_steps": 400})
    (summary,) = client.get("/api/runs").json()["runs"]
    assert {name: summary[name] for name in STAGE_FIELDS} == dict.fromkeys(STAGE_FIELDS)


def test_null_and_wrongly_typed_stage_fields_read_as_null_and_never_fail_the_listing(client: TestClient,
                                                                                      runs_dir: Path) -> None:
    make_run(runs_dir, "unknown-total", {"state": "finished", **STAGE, "stage_total": None, "eta_s": None,
                                         "run_eta_s": None})
    make_run(runs_dir, "hand-edited", {"state": "finished", "stage": 3, "stage_done": "many", "stage_total": True,
                                       "stage_unit": ["frames"], "stage_started_at": "noon", "eta_s": {"s": 1},
                                       "run_eta_s": False})
    response = client.get("/api/runs")
    assert response.status_code == 200, response.text
    runs = {run["run_id"]: run for run in response.json()["runs"]}
    unknown = runs["unknown-total"]
    assert (unknown["stage"], unknown["stage_done"], unknown["stage_total"], unknown["eta_s"],
            unknown["run_eta_s"]) == ("pretrain/dyn", 1200, None, None, None)
    assert {name: runs["hand-edited"][name] for name in STAGE_FIELDS} == dict.fromkeys(STAGE_FIELDS)


def test_baselines_need_the_token_when_one_is_set(runs_dir: Path) -> None:
    with TestClient(create_app(Settings(runs_dir=runs_dir, device="cpu", api_token="s3cret"))) as guarded:
        assert guarded.get("/api/games/Pong/baselines").status_code == 401
        ok = guarded.get("/api/games/Pong/baselines", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["human"] == SCORES["Pong"]["human"]
