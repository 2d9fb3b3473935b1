"""The dream-session API on the real debug run: create, read, step, fork, futures, attention, latents, delete;
bounds (count, time to live, the inspect pool's 503) and concurrent sessions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings


@pytest.fixture(scope="module")
def settings(debug_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    db = tmp_path_factory.mktemp("sessions-db") / "jobs.db"
    return Settings(runs_dir=debug_run.parent, db_path=db, device="cpu")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def call(client: TestClient, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = client.request(method, f"/api/sessions{path}", **kwargs)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return response.json() if response.content else None


def create(client: TestClient, run: Path, **body: Any) -> dict[str, Any]:
    return call(client, "POST", "", 201, json={"run_id": run.name, **body})


def trace(points: list[dict[str, Any]]) -> list[tuple]:
    return [(p["step"], p["frame"], p["latent"], p["action"], p["reward"], p["discount"],
             None if p["real"] is None else p["real"]["frame"]) for p in points]


def test_create_read_step_and_delete(client: TestClient, debug_run: Path) -> None:
    s = create(client, debug_run, seed=3, steps=5, start={"kind": "reset", "policy_steps": 2})
    assert s["num_steps"] == 5 and len(s["points"]) == 6 and s["since"] == 0
    assert s["checkpoint_step"] == 200 and len(s["start_policy_actions"]) == 2
    first, last = s["points"][0], s["points"][-1]
    assert first["action"] is None and first["real"] is not None and first["errors"]["latent_ce"] is None
    assert last["errors"] is None or last["errors"]["latent_ce"] >= 0
    assert len(last["latent"]) == s["latent_shape"][0] and len(last["confidence"]) == s["latent_shape"][0]
    tail = call(client, "GET", f"/{s['id']}?since=3")
    assert tail["since"] == 3 and trace(tail["points"]) == trace(s["points"][3:])
    more = call(client, "POST", f"/{s['id']}/step", json={"count": 3})
    assert more["num_steps"] == 8 and [p["step"] for p in more["points"]] == [6, 7, 8]
    given = call(client, "POST", f"/{s['id']}/step", json={"actions": [1, 0]})
    assert [p["action"] for p in given["points"]] == [1, 0]
    assert any(e["id"] == s["id"] for e in call(client, "GET", ""))
    latent = call(client, "GET", f"/{s['id']}/points/4/latent")
    k = s["latent_shape"][1]
    assert len(latent["prior"]) == s["latent_shape"][0] and len(latent["prior"][0]) == k
    assert latent["posterior"] is not None
    call(client, "DELETE", f"/{s['id']}", 204)
    assert "no dream session" in call(client, "GET", f"/{s['id']}", 404)["detail"]
    call(client, "DELETE", f"/{s['id']}", 404)


def test_same_seed_same_points_and_fork_equals_a_replay(client: TestClient, debug_run: Path) -> None:
    a = create(client, debug_run, seed=7, steps=8)
    b = create(client, debug_run, seed=7, steps=8)
    assert trace(a["points"]) == trace(b["points"])
    fork = call(client, "POST", f"/{a['id']}/fork", 201, json={"step": 4, "action": 3, "steps": 2})
    assert fork["parent"] == a["id"] and fork["parent_step"] == 4 and fork["num_steps"] == 7
    assert trace(fork["points"][:5]) == trace(a["points"][:5]) and fork["points"][5]["action"] == 3
    actions = [p["action"] for p in fork["points"][1:6]]
    replay = create(client, debug_run, seed=7, actions=actions)
    replay = call(client, "POST", f"/{replay['id']}/step", json={"count": 2})
    again = call(client, "GET", f"/{replay['id']}")
    assert trace(again["points"]) == trace(fork["points"])
    assert trace(call(client, "GET", f"/{a['id']}")["points"]) == trace(a["points"]), "the parent changed"
    only_new = call(client, "POST", f"/{a['id']}/fork", 201, json={"step": 4, "action": 3, "steps": 2, "since": 5})
    assert only_new["since"] == 5 and trace(only_new["points"]) == trace(fork["points"][5:])
    edit = call(client, "POST", f"/{a['id']}/fork", 201, json={"step": 2, "latent": [
        {"categorical": 0, "category": (a["points"][2]["latent"][0] + 1) % a["latent_shape"][1]}]})
    assert edit["points"][2]["edited"] and edit["points"][2]["latent"][0] != a["points"][2]["latent"][0]


def test_futures_and_attention(client: TestClient, debug_run: Path) -> None:
    s = create(client, debug_run, seed=1, steps=10)
    f = call(client, "POST", f"/{s['id']}/futures", json={"n": 4, "horizon": 3, "step": 5})
    assert f["n"] == 4 and len(f["frames"]) == 4 and len(f["frames"][0]) == 3 and len(f["std"]) == 3
    assert f == call(client, "POST", f"/{s['id']}/futures", json={"n": 4, "horizon": 3, "step": 5})
    L, H = s["num_layers"], s["num_heads"]
    for token, step in (("z", 4), ("a", 4), ("r", 3)):
        q = call(client, "POST", f"/{s['id']}/attention", json={"step": step, "token": token, "rollout": True})
        assert len(q["weights"]) == L and len(q["weights"][0]) == H and len(q["weights"][0][0]) == len(q["labels"])
        own = [lab for lab in q["labels"] if lab["relative_step"] == 0 or lab["step"] == step]
        assert own and q["labels"][-1]["modality"] == "a"
        assert len(q["rollout"]) == L and len(q["rollout"][0]) == len(q["rollout_labels"])
    ov = call(client, "GET", f"/{s['id']}/attention/overview?layer=1&token=a")
    assert ov["steps"] == list(range(-1, 10)) and len(ov["matrix"]) == 11
    for body in ({"step": 10, "token": "a"}, {"step": 3, "token": "x"}):
        assert call(client, "POST", f"/{s['id']}/attention", 422, json=body)["detail"]
    assert call(client, "GET", f"/{s['id']}/attention/overview?layer=9", 422)["detail"]


@pytest.mark.parametrize(("path", "body", "status"), [
    ("", {"run_id": "no-such-run"}, 404),
    ("", {"run_id": "x" * 300}, 422),
    ("", {"run_id": "RUN", "actions": [99]}, 422),
    ("", {"run_id": "RUN", "start": {"kind": "replay", "index": 10**6}}, 422),
    ("", {"run_id": "RUN", "checkpoint": 150}, 404),
    ("/ffffffffffffffff/step", {}, 404),
    ("/../../etc/step", {}, 404),
])
def test_bad_requests(client: TestClient, debug_run: Path, path: str, body: dict, status: int) -> None:
    if body.get("run_id") == "RUN":
        body = {**body, "run_id": debug_run.name}
    assert call(client, "POST", path, status, json=body)["detail"]


def test_session_bounds_and_time_to_live(settings: Settings, debug_run: Path) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_sessions": 2, "session_ttl_seconds": 1.0}))) as c:
        ids = [create(c, debug_run, seed=i)["id"] for i in range(3)]
        live = {e["id"] for e in call(c, "GET", "")}
        assert live == set(ids[1:]), "the least recently used session was not evicted"
        time.sleep(1.3)
        call(c, "GET", f"/{ids[2]}", 404)
        assert call(c, "GET", "") == []


def test_pool_full_is_503_with_retry_after(settings: Settings, debug_run: Path) -> None:
    busy = settings.model_copy(update={"inspect_workers": 1, "inspect_queue": 0})
    with TestClient(create_app(busy)) as c:
        create(c, debug_run)  # the model is loaded
        started = threading.Event()

        def slow() -> int:
            started.set()
            return c.post("/api/sessions", json={"run_id": debug_run.name, "steps": 256}).status_code

        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(slow)
            started.wait()
            time.sleep(0.3)
            response = c.post("/api/sessions", json={"run_id": debug_run.name})
            assert future.result() == 201
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert "busy" in response.json()["detail"]
        assert c.get("/api/health").status_code == 200


def test_concurrent_sessions_are_independent(client: TestClient, debug_run: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda seed: create(client, debug_run, seed=seed % 2, steps=12), range(4)))
    assert trace(bodies[0]["points"]) == trace(bodies[2]["points"])
    assert trace(bodies[1]["points"]) == trace(bodies[3]["points"])
    assert trace(bodies[0]["points"]) != trace(bodies[1]["points"])
