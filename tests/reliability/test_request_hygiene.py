"""Request hygiene and network defaults (issue #12): hostile input gets a short JSON 4xx, never a 500.

- JSON that Python reads but JSON lacks (NaN, ±Infinity, 1e400) and lone surrogates: 422 naming the field, on
  every POST route of the app (listed from its OpenAPI paths, so a new route is covered without editing this file);
- bodies over `TWM_MAX_BODY_BYTES`: 413, declared or streamed; a 422 never echoes more than an excerpt;
- ids past the file-name limit or outside the alphabet: 404;
- `Host` headers other than loopback names (DNS rebinding): 400, unless `TWM_ALLOWED_HOSTS` names them;
- `python -m backend` refuses a non-loopback address without a token; the dashboard never shows the token;
- the OpenAPI schema says what the API does (422 shapes, `start.kind`), and no answer names a server path.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import REPO_ROOT, free_port, running_server

from backend.__main__ import exposure_problem, is_loopback
from backend.errors import EXCERPT_CHARS
from backend.main import create_app
from backend.middleware import host_name
from backend.settings import Settings
from twm_core.run_dir import RUN_ID_MAX_LENGTH, valid_run_id

LOCAL = "http://localhost"
MIB = 1024 * 1024
IDS = {"run_id": "no-such-run", "job_id": "0123456789ab", "sweep_id": "0123456789ab"}


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    # python_executable=/bin/false: a request that wrongly got through starts nothing heavy.
    return Settings(**{"runs_dir": tmp_path / "runs", "device": "cpu", "python_executable": "/bin/false",
                       "allowed_hosts": (), **changes})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # raise_server_exceptions=False: a 500 must show up as a failed status assertion, with its body.
    with TestClient(create_app(make_settings(tmp_path)), base_url=LOCAL, raise_server_exceptions=False) as test:
        yield test


def post_routes(client: TestClient) -> list[str]:
    """Every POST path of the app, with its path parameters filled by well-formed unknown ids."""
    paths = [path for path, operations in client.app.openapi()["paths"].items() if "post" in operations]
    assert {"/api/jobs", "/api/sweeps", "/api/runs/{run_id}/imagine"} <= set(paths), paths
    return [re.sub(r"\{(\w+)\}", lambda m: IDS.get(m.group(1), "0123456789ab"), path) for path in paths]


def assert_json_error(response: httpx.Response, status: int) -> Any:
    """`status` with a JSON `detail`, no traceback, a small body; returns the detail."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert len(response.content) < 4000, len(response.content)
    assert "Traceback" not in response.text and 'File "' not in response.text
    return response.json()["detail"]


# ------------------------------------------------------------------------------------------------ strict JSON
BAD_VALUES = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e400": "1e400",
              "-1e400": "-1e400", "lone surrogate": '"\\ud800"', "surrogate in text": '"Pong\\udfff"'}


@pytest.mark.parametrize("raw", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_non_json_values_are_422_naming_the_field_on_every_post_route(client: TestClient, raw: str) -> None:
    bodies = {  # a top-level field, and deep inside a field typed Any (it passed validation before)
        ("body", "seed"): f'{{"game": "Catch", "seed": {raw}}}',
        ("body", "overrides", "train.lr", 1): f'{{"game": "Catch", "overrides": {{"train.lr": [1, {raw}]}}}}',
    }
    for path in post_routes(client):
        for loc, body in bodies.items():
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            detail = assert_json_error(response, 422)
            assert [tuple(item["loc"]) for item in detail] == [loc], (path, detail)
            assert detail[0]["type"] in ("finite_number", "string_unicode")


def test_lone_surrogate_in_a_key_is_422(client: TestClient) -> None:
    response = client.post("/api/jobs", content=b'{"game": "Catch", "overrides": {"\\ud800": 1}}',
                           headers={"content-type": "application/json"})
    detail = assert_json_error(response, 422)
    assert detail[0]["loc"][:2] == ["body", "overrides"] and detail[0]["type"] == "string_unicode"


def test_clean_json_still_reaches_the_routes(client: TestClient) -> None:
    # Strict JSON passes through untouched: the trainer's own check answers (here: unknown game).
    response = client.post("/api/jobs", json={"game": "NoSuchGame", "preset": "debug", "overrides": {"a.b": 1.5}})
    assert response.status_code == 422 and "NoSuchGame" in response.json()["detail"]
    response = client.post("/api/jobs", content=b"[" * 100_000, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500  # too deep for json.loads: FastAPI's answer, not ours, and no 500


# ------------------------------------------------------------------------------------------------ size
def test_large_invalid_body_gets_a_small_422(client: TestClient) -> None:
    for body in ({"games": 5, "name": "x" * 900_000}, {"game": ["x" * 900_000]}, {"game": "x" * 900_000, "s": 1}):
        path = "/api/sweeps" if "games" in body else "/api/jobs"
        detail = assert_json_error(client.post(path, json=body), 422)
        for item in detail if isinstance(detail, list) else []:
            assert len(str(item.get("input"))) <= EXCERPT_CHARS + 2, item


def test_bodies_over_the_limit_are_413_declared_or_streamed(client: TestClient) -> None:
    body = b'{"game": "' + b"x" * (2 * MIB) + b'"}'
    for path in post_routes(client):
        detail = assert_json_error(client.post(path, content=body, headers={"content-type": "application/json"}), 413)
        assert "TWM_MAX_BODY_BYTES" in detail

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        yield b'{"game": "'
        for _ in range(32):
            yield b"x" * (64 * 1024)
        yield b'"}'

    response = client.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert_json_error(response, 413)
    assert_json_error(client.post("/api/jobs", content=b"x" * (2 * MIB)), 413)  # not JSON: still limited


def test_body_limit_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWM_MAX_BODY_BYTES", "64")
    settings = Settings(runs_dir=tmp_path, device="cpu")
    assert settings.max_body_bytes == 64
    assert Settings.model_fields["max_body_bytes"].default == MIB
    with TestClient(create_app(settings), base_url=LOCAL) as small:
        assert small.post("/api/jobs", json={"game": "x" * 100}).status_code == 413
        assert small.post("/api/jobs", json={"game": "NoSuchGame"}).status_code == 422
    with pytest.raises(ValueError, match="max_body_bytes"):
        Settings(runs_dir=tmp_path, max_body_bytes=0)


# ------------------------------------------------------------------------------------------------ ids
def test_run_id_rule() -> None:
    assert RUN_ID_MAX_LENGTH == 255
    assert valid_run_id("20261125-205012-pong-debug-s0-1a2b") and valid_run_id("a" * 255)
    for bad in ("a" * 256, "", ".", "..", ".hidden", "a/b", "a\\b", "good\n", "good\x00", "-x", "é"):
        assert not valid_run_id(bad), bad


@pytest.mark.parametrize("length", [256, 300, 5000])
def test_overlong_ids_are_404_with_a_short_message(client: TestClient, length: int) -> None:
    long_id = "a" * length
    for suffix in ("", "/metrics", "/scores", "/checkpoints", "/events"):
        assert_json_error(client.get(f"/api/runs/{long_id}{suffix}"), 404)
    for endpoint in ("imagine", "attention"):
        assert_json_error(client.post(f"/api/runs/{long_id}/{endpoint}", json={}), 404)
    assert_json_error(client.get(f"/api/report?runs={long_id}"), 404)
    for kind in ("jobs", "sweeps"):
        assert_json_error(client.get(f"/api/{kind}/{long_id}"), 404)
        assert_json_error(client.post(f"/api/{kind}/{long_id}/cancel"), 404)
    assert_json_error(client.post(f"/api/jobs/{long_id}/resume"), 404)


@pytest.mark.parametrize("bad_id", ["a%00b", "%ED%A0%80", "%F0%9F%92%A5", "a%0Ab", "..%2F..", "*", "%20"])
def test_odd_job_and_sweep_ids_are_404(client: TestClient, bad_id: str) -> None:
    for path in (f"/api/jobs/{bad_id}", f"/api/sweeps/{bad_id}", f"/api/sweeps/{bad_id}/report"):
        assert_json_error(client.get(path), 404)


# ------------------------------------------------------------------------------------------------ Host
@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "[::1]", "[::1]:8000",
                                  "LOCALHOST:1"])
def test_loopback_hosts_are_served(client: TestClient, host: str) -> None:
    assert client.get("/api/health", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io",
                                  "testserver", "backend", "::1", "[::1", ""])
def test_other_hosts_are_400_json(client: TestClient, host: str) -> None:
    for method, path in (("GET", "/api/health"), ("GET", "/api/jobs"), ("POST", "/api/jobs")):
        response = client.request(method, path, headers={"host": host}, json={"game": "Catch"})
        assert "not allowed" in assert_json_error(response, 400)


def test_allowed_hosts_setting_adds_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWM_ALLOWED_HOSTS", "backend, Gpu-Box.LAN")
    settings = Settings(runs_dir=tmp_path / "runs", device="cpu")
    with TestClient(create_app(settings), base_url="http://backend:8000") as test:
        for host in ("backend:8000", "gpu-box.lan", "localhost"):
            assert test.get("/api/health", headers={"host": host}).status_code == 200, host
        assert test.get("/api/health", headers={"host": "other"}).status_code == 400
    with TestClient(create_app(make_settings(tmp_path, allowed_hosts="*")), base_url="http://anything") as test:
        assert test.get("/api/health").status_code == 200


def test_host_header_parsing() -> None:
    assert host_name("[::1]:8000") == "::1" and host_name("Example.COM.:80") == "example.com"
    assert host_name(None) is None and host_name("::1") is None and host_name("a:b:c") is None


# ------------------------------------------------------------------------------------------------ launcher
def test_exposure_rule(tmp_path: Path) -> None:
    open_settings = Settings(runs_dir=tmp_path, api_token=None, allow_no_token=False)
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host) and exposure_problem(host, open_settings) is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        assert "TWM_API_TOKEN" in (exposure_problem(host, open_settings) or ""), host
        assert exposure_problem(host, Settings(runs_dir=tmp_path, api_token="t")) is None
        assert exposure_problem(host, Settings(runs_dir=tmp_path, allow_no_token=True)) is None


def test_launcher_refuses_a_public_bind_without_token(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TWM_RUNS_DIR": str(tmp_path), "TWM_API_TOKEN": ""}
    done = subprocess.run([sys.executable, "-m", "backend", "--host", "0.0.0.0", "--port", str(free_port())],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "TWM_API_TOKEN" in done.stderr and "TWM_ALLOW_NO_TOKEN" in done.stderr


# ------------------------------------------------------------------------------------------------ live server
TOKEN = "tok-7c1f0e9a-never-in-a-page"


@pytest.fixture(scope="module")
def live_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m backend` on a free 127.0.0.1 port, with an API token."""
    runs = tmp_path_factory.mktemp("hygiene-runs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"TWM_RUNS_DIR": str(runs), "TWM_DEVICE": "cpu", "TWM_API_TOKEN": TOKEN, "TWM_ALLOWED_HOSTS": "",
           "TWM_PYTHON_EXECUTABLE": "/bin/false", "OMP_NUM_THREADS": "1"}
    with running_server([sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", str(port)],
                        f"{url}/api/health", env=env):
        yield url


def test_oversized_bodies_do_not_stall_the_server(live_backend: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    answers: list[tuple[int, float]] = []

    def flood() -> None:
        with httpx.Client(base_url=live_backend, timeout=60) as http:
            for _ in range(3):
                start = time.monotonic()
                response = http.post("/api/jobs", content=b'{"game": "' + b"x" * (5 * MIB) + b'"}', headers=auth)
                answers.append((response.status_code, time.monotonic() - start))

    thread = threading.Thread(target=flood)
    thread.start()
    latencies = []
    with httpx.Client(base_url=live_backend, timeout=60) as http:
        while thread.is_alive():
            start = time.monotonic()
            assert http.get("/api/health").status_code == 200
            latencies.append(time.monotonic() - start)
    thread.join()
    assert [status for status, _ in answers] == [413] * 3
    assert max(seconds for _, seconds in answers) < 5.0, answers  # it took ~21 s before the limit
    assert max(latencies, default=0.0) < 2.0, latencies


def test_token_never_reaches_a_dashboard_page(live_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard sends the token from its own process only: no page's elements carry it."""
    from streamlit.testing.v1 import AppTest

    from frontend.api_client import get_client

    monkeypatch.setenv("TWM_BACKEND_URL", live_backend)
    monkeypatch.setenv("TWM_API_TOKEN", TOKEN)
    get_client.clear()
    try:
        pages = sorted((REPO_ROOT / "frontend" / "app_pages").glob("*.py"))
        assert pages
        for page in pages:
            at = AppTest.from_file(page, default_timeout=120)
            at.run()
            rendered = "\n".join(_protos(at._tree))
            assert TOKEN not in rendered, page.name  # session state stays in the server process: not checked
            if page.name == "home.py":  # the page did talk to the backend, with the token
                assert "Backend not reachable" not in rendered and "401" not in rendered, rendered[:2000]
    finally:
        get_client.clear()


def _protos(node: Any) -> Iterator[str]:
    proto = getattr(node, "proto", None)
    if proto is not None:
        yield str(proto)
    for child in getattr(node, "children", {}).values():
        yield from _protos(child)


# ------------------------------------------------------------------------------------------------ schema, paths
def test_openapi_documents_both_422_shapes_and_413(client: TestClient) -> None:
    schema = client.app.openapi()
    detail = schema["components"]["schemas"]["HTTPValidationError"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]
    jobs = schema["paths"]["/api/jobs"]["post"]["responses"]
    assert jobs["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/HTTPValidationError"), jobs
    assert jobs["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorMessage"), jobs
    for operations in schema["paths"].values():  # every error response says what its body is
        for operation in operations.values():
            for code, response in operation["responses"].items():
                assert code[0] not in "45" or "content" in response, (operation["operationId"], code)
    fields = set(schema["components"]["schemas"]["ValidationError"]["properties"])
    listed = client.post("/api/jobs", json={"game": 5}).json()["detail"]
    assert isinstance(listed, list) and all(set(item) <= fields for item in listed), listed
    message = client.post("/api/jobs", json={"game": "NoSuchGame"}).json()["detail"]
    assert isinstance(message, str)


def test_start_kind_is_required_in_schema_and_behaviour(client: TestClient) -> None:
    reset = client.app.openapi()["components"]["schemas"]["ResetStartBody"]
    assert "kind" in reset.get("required", []), reset
    response = client.post("/api/runs/no-such-run/imagine", json={"start": {"policy_steps": 1}})
    assert assert_json_error(response, 422)[0]["loc"][:2] == ["body", "start"]


def test_health_and_errors_name_no_server_path(client: TestClient, tmp_path: Path) -> None:
    health = client.get("/api/health").json()
    assert health["runs_dir"] == "runs"
    root = str(tmp_path)
    for response in (client.get("/api/health"), client.post("/api/runs/no-such-run/imagine", json={}),
                     client.get("/api/runs/no-such-run"), client.get("/api/report?runs=no-such-run"),
                     client.post("/api/runs/no-such-run/attention", json={})):
        assert root not in response.text, response.text
