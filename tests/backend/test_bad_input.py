"""Bad input never yields a 5xx: each request below gets a 4xx with a JSON `detail`, and never a traceback.

The app serves a copy of the `debug_run` fixture (`good`) and two broken copies: `corrupt` (latest checkpoint
overwritten with garbage) and `misfit` (latest checkpoint a loadable file whose weights do not fit the model). Jobs
run `/bin/false` instead of the trainer, so a request that wrongly got through would start nothing heavy; the last
test checks that none did.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from httpx import Response

from backend.main import create_app
from backend.schemas.inspect import MAX_HORIZON
from backend.settings import Settings

GOOD, CORRUPT, MISFIT = "good", "corrupt", "misfit"
JOB = {"game": "Catch", "preset": "debug", "seed": 0, "steps": 110, "device": "cpu"}
BIG = 2**64  # past SQLite's (and torch's) 64-bit integers


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory, debug_run: Path) -> Path:
    root = tmp_path_factory.mktemp("bad-input-runs")
    for name in (GOOD, CORRUPT, MISFIT):
        shutil.copytree(debug_run, root / name, ignore=shutil.ignore_patterns("replay"))
    latest = sorted((root / CORRUPT / "ckpt").glob("step_*.pt"))[-1]
    latest.write_bytes(b"garbage, not a checkpoint\n" * 100)
    latest = sorted((root / MISFIT / "ckpt").glob("step_*.pt"))[-1]
    state = torch.load(latest, weights_only=True)
    state["world_model"] = {"no.such.weight": torch.zeros(1)}
    torch.save(state, latest)
    return root


@pytest.fixture(scope="module")
def client(runs_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("bad-input-db") / "jobs.db"
    settings = Settings(runs_dir=runs_root, db_path=db, device="cpu", python_executable="/bin/false")
    # raise_server_exceptions=False: a 500 must show up as a failed status assertion, with its body.
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_client_error(response: Response, status: int | None = None) -> None:
    """A 4xx (exactly `status` when given) with a JSON `detail` and no traceback."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert "detail" in response.json(), response.text
    assert "Traceback" not in response.text and 'File "' not in response.text


# ------------------------------------------------------------------------------------------------ jobs
@pytest.mark.parametrize("changes", [
    {"game": "NoSuchGame"}, {"game": ""}, {"game": "../../etc"}, {"preset": "no-such-preset"},
    {"overrides": {"no.such.key": 1}}, {"overrides": {"": 1}}, {"overrides": {"replay": 5}},
    {"overrides": {"train": {"total_steps": 5}}},  # a whole section, not a field
    {"overrides": {"replay.prefill": "many"}}, {"overrides": {"replay.prefill": [1]}},
    {"overrides": {"replay.prefill": {"a": 1}}}, {"overrides": {"replay.prefill": 1.5}},
    {"overrides": {"replay.prefill": -5}}, {"overrides": {"replay.prefill": "1e400"}},  # int overflow
    {"overrides": {"env.game": 5}}, {"overrides": {"env.game": "NoSuchGame"}},
    {"overrides": {"seed": BIG}}, {"seed": BIG}, {"seed": -1}, {"steps": 0}, {"steps": BIG}, {"device": "tpu"},
    {"seed": "abc"}, {"steps": "ten"}, {"overrides": [1, 2]}, {"overrides": "replay.prefill=5"}, {"game": 5},
    {"gmae": "Catch"},
], ids=repr)
def test_bad_job_requests(client: TestClient, changes: dict[str, Any]) -> None:
    assert_client_error(client.post("/api/jobs", json={**JOB, **changes}), 422)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", b'"Catch"', b'{"game": "Catch",}', b"\xff\xfe"],
                         ids=repr)
def test_malformed_job_bodies(client: TestClient, raw: bytes) -> None:
    assert_client_error(client.post("/api/jobs", content=raw, headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize("job_id", ["0123456789ab", "nope", "..%2F..", "a%5Cb", "%27%3B--"])
@pytest.mark.parametrize("action", ["", "/cancel", "/resume"])
def test_unknown_job_ids(client: TestClient, job_id: str, action: str) -> None:
    method = "GET" if action == "" else "POST"
    assert_client_error(client.request(method, f"/api/jobs/{job_id}{action}"), 404)


# ------------------------------------------------------------------------------------------------ sweeps
SWEEP = {"games": ["Catch"], "seeds": "0-1", "preset": "debug", "steps": 110, "device": "cpu"}


@pytest.mark.parametrize("changes", [
    {"games": ["NoSuchGame"]}, {"games": []}, {"games": ""}, {"games": "Catch,NoSuchGame"}, {"games": 5},
    {"games": [5]}, {"games": ["../../etc"]}, {"seeds": "x"}, {"seeds": "5-1"}, {"seeds": "-3"}, {"seeds": []},
    {"seeds": [-1]}, {"seeds": [BIG]}, {"seeds": "0-99999999999999999999"}, {"seeds": "0-1000"}, {"seeds": 3},
    {"games": "atari100k", "seeds": "0-99"},  # 2600 runs: over the limit of one sweep
    {"preset": "no-such-preset"}, {"overrides": {"no.such.key": 1}}, {"overrides": {"replay": 5}},
    {"steps": 0}, {"steps": BIG}, {"device": "tpu"}, {"device": "cuda:0"}, {"max_retries": -1},
    {"max_retries": 11}, {"name": "x" * 201}, {"gmaes": ["Catch"]},
], ids=repr)
def test_bad_sweep_requests(client: TestClient, changes: dict[str, Any]) -> None:
    assert_client_error(client.post("/api/sweeps", json={**SWEEP, **changes}), 422)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", b'"Catch"'], ids=repr)
def test_malformed_sweep_bodies(client: TestClient, raw: bytes) -> None:
    assert_client_error(client.post("/api/sweeps", content=raw, headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize("path", ["/api/sweeps/nope", "/api/sweeps/nope/report", "/api/sweeps/..%2F../report",
                                  "/api/report?runs=nope", "/api/report?runs=good,..", "/api/report?runs=%2Fetc"])
def test_unknown_sweeps_and_report_runs(client: TestClient, path: str) -> None:
    assert_client_error(client.get(path), 404)
    if path.startswith("/api/sweeps/") and not path.endswith("report"):
        assert_client_error(client.post(f"{path}/cancel"), 404)


@pytest.mark.parametrize("query", ["", "?runs=", "?runs=,,", "?runs=good&reps=5", "?runs=good&reps=abc",
                                   "?runs=good&seed=x", f"?runs={','.join(['good'] * 1001)}"])
def test_bad_report_queries(client: TestClient, query: str) -> None:
    assert_client_error(client.get(f"/api/report{query}"), 422)


# ------------------------------------------------------------------------------------------------ runs
RUN_GETS = ["", "/metrics", "/scores", "/checkpoints", "/events"]


@pytest.mark.parametrize("run_id", ["no-such-run", "..", "%2E%2E", "..%2F..", "..%2F..%2Fetc%2Fpasswd", "%2Fetc",
                                    "a%5Cb", "..%5C..", "good%00", "good%2F..%2Fgood", ".hidden"])
def test_unknown_and_traversing_run_ids(client: TestClient, run_id: str) -> None:
    for suffix in RUN_GETS:
        assert_client_error(client.get(f"/api/runs/{run_id}{suffix}"), 404)
    for endpoint in ("imagine", "attention"):
        assert_client_error(client.post(f"/api/runs/{run_id}/{endpoint}", json={}), 404)


@pytest.mark.parametrize("query", ["offset=-1", "offset=x", "max_points=0", "max_points=1000000", "after_step=1.5",
                                   "after_step=abc"])
def test_bad_metric_queries(client: TestClient, query: str) -> None:
    assert_client_error(client.get(f"/api/runs/{GOOD}/metrics?{query}"), 422)


def test_bad_score_kind_and_event_query(client: TestClient) -> None:
    assert_client_error(client.get(f"/api/runs/{GOOD}/scores?kind=zzz"), 422)
    assert_client_error(client.get(f"/api/runs/{GOOD}/events?after_step=x"), 422)


# ------------------------------------------------------------------------------------------------ inspect
@pytest.mark.parametrize(("endpoint", "body"), [
    ("imagine", {"horizon": 0}), ("imagine", {"horizon": -3}), ("imagine", {"horizon": MAX_HORIZON + 1}),
    ("imagine", {"horizon": "ten"}), ("imagine", {"actions": ["left"]}), ("imagine", {"actions": {"0": 1}}),
    ("imagine", {"compare_real": "maybe"}), ("imagine", {"horizon": 2, "actions": [0, 1], "extra": 1}),
    ("attention", {"query_step": -1}), ("attention", {"query_step": MAX_HORIZON}), ("attention", {"layer": -1}),
    ("attention", {"query_step": "three"}), ("attention", {"seed": -1}), ("attention", {"seed": BIG}),
    ("imagine", {"checkpoint": "best"}), ("imagine", {"checkpoint": -1}), ("imagine", {"start": {"kind": "nope"}}),
    ("imagine", {"start": {"kind": "replay"}}), ("imagine", {"start": {"kind": "reset", "policy_steps": -1}}),
    ("imagine", {"start": [1]}), ("attention", []), ("attention", "query_step"),
], ids=repr)
def test_bad_inspect_bodies(client: TestClient, endpoint: str, body: Any) -> None:
    assert_client_error(client.post(f"/api/runs/{GOOD}/{endpoint}", json=body), 422)


@pytest.mark.parametrize("endpoint", ["imagine", "attention"])
def test_malformed_inspect_bodies(client: TestClient, endpoint: str) -> None:
    response = client.post(f"/api/runs/{GOOD}/{endpoint}", content=b'{"horizon": ',
                           headers={"content-type": "application/json"})
    assert_client_error(response, 422)


@pytest.mark.parametrize("step", [999, 1, BIG])
def test_unknown_checkpoint_step(client: TestClient, step: int) -> None:
    for endpoint in ("imagine", "attention"):
        response = client.post(f"/api/runs/{GOOD}/{endpoint}", json={"checkpoint": step})
        assert_client_error(response, 404)
        assert "no checkpoint at step" in response.json()["detail"]


@pytest.mark.parametrize("run_id", [CORRUPT, MISFIT])
def test_broken_checkpoint_is_409_and_the_run_still_lists(client: TestClient, run_id: str) -> None:
    for endpoint, body in (("imagine", {"horizon": 2}), ("attention", {"query_step": 0})):
        response = client.post(f"/api/runs/{run_id}/{endpoint}", json=body)
        assert_client_error(response, 409)
        assert "checkpoint cannot be loaded" in response.json()["detail"]
    # Listing a run reads no checkpoint contents: a broken file is still listed, with its size.
    detail = client.get(f"/api/runs/{run_id}")
    assert detail.status_code == 200, detail.text
    checkpoints = client.get(f"/api/runs/{run_id}/checkpoints")
    assert checkpoints.status_code == 200, checkpoints.text
    assert [c["step"] for c in checkpoints.json()["checkpoints"]] == [c["step"] for c in detail.json()["checkpoints"]]


# ------------------------------------------------------------------------------------------------ server errors
def test_unhandled_errors_carry_no_traceback(tmp_path: Path) -> None:
    app = create_app(Settings(runs_dir=tmp_path, device="cpu"))

    @app.get("/api/_test/chatty")
    def chatty() -> None:
        raise RuntimeError("worker died\nTraceback (most recent call last):\n  File \"x.py\", line 1\nValueError")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/api/_test/chatty")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error: RuntimeError: worker died"}


def test_no_bad_request_started_a_job(client: TestClient) -> None:
    assert client.get("/api/jobs").json() == {"jobs": []}
    assert client.get("/api/sweeps").json() == {"sweeps": []}
