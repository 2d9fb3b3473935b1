"""`GET/POST /api/demo` on a private backend over an empty runs dir: the demo installs once, shows up in `/api/runs`,
and its checkpoint serves imagine, attention and a dream session like any run; failures are 409s, never 500s."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings
from twm_core import demo


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


def test_post_installs_the_demo_once_and_it_serves_like_any_run(client: TestClient) -> None:
    before = client.get("/api/demo").json()
    manifest = demo.read_manifest()
    step = manifest["checkpoint_step"]
    assert (before["available"], before["installed"]) == (True, False)
    assert before["facts"]["final_score"] == manifest["final_score"] and before["problem"] is None
    assert client.get("/api/runs").json()["runs"] == []

    first = client.post("/api/demo")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["run_id"], body["installed"], body["installed_now"]) == (demo.DEMO_RUN_ID, True, True)
    assert body["facts"]["checkpoint_step"] == step
    assert body["links"]["imagine"] == f"imagine?run={demo.DEMO_RUN_ID}&ckpt={step}"
    again = client.post("/api/demo").json()
    assert (again["installed"], again["installed_now"]) == (True, False)
    assert client.get("/api/demo").json()["installed"] is True

    [run] = client.get("/api/runs").json()["runs"]
    assert (run["run_id"], run["game"], run["state"], run["num_checkpoints"]) == (demo.DEMO_RUN_ID, "Catch",
                                                                                  "finished", 1)
    assert run["damaged"] is None
    checkpoints = client.get(f"/api/runs/{demo.DEMO_RUN_ID}/checkpoints").json()["checkpoints"]
    assert [c["step"] for c in checkpoints] == [step]

    rollout = client.post(f"/api/runs/{demo.DEMO_RUN_ID}/imagine",
                          json={"checkpoint": step, "seed": 0, "horizon": 8, "compare_real": True})
    assert rollout.status_code == 200, rollout.text
    assert rollout.json()["checkpoint_step"] == step and len(rollout.json()["frames"]) == 9
    attention = client.post(f"/api/runs/{demo.DEMO_RUN_ID}/attention", json={"checkpoint": step, "query_step": 3})
    assert attention.status_code == 200, attention.text
    session = client.post("/api/sessions", json={"run_id": demo.DEMO_RUN_ID, "checkpoint": step, "steps": 4})
    assert session.status_code == 201, session.text


def test_a_users_run_of_that_name_is_a_409(client: TestClient, make_settings: Callable[..., Settings]) -> None:
    mine = make_settings().runs_dir / demo.DEMO_RUN_ID
    mine.mkdir(parents=True)
    (mine / "config.json").write_text("{}")
    response = client.post("/api/demo")
    assert response.status_code == 409 and "is not the demo" in response.json()["detail"]
    assert sorted(p.name for p in mine.iterdir()) == ["config.json"]  # untouched


def test_a_damaged_shipped_demo_is_a_409_without_paths(client: TestClient, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = Path(shutil.copytree(demo.DEFAULT_DIR, tmp_path / "shipped"))
    manifest = demo.read_manifest(shipped)
    (shipped / "ckpt" / f"snap_{manifest['checkpoint_step']:09d}.pt").write_bytes(b"not a model")
    monkeypatch.setattr(demo, "DEFAULT_DIR", shipped)
    response = client.post("/api/demo")
    assert response.status_code == 409, response.text
    assert "damaged" in response.json()["detail"] and str(tmp_path) not in response.text
    assert client.get("/api/runs").json()["runs"] == []
    (shipped / demo.MANIFEST).unlink()
    status = client.get("/api/demo").json()
    assert status["available"] is False and status["facts"] is None and "manifest" in status["problem"]
