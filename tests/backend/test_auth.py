"""The API token (`TWM_API_TOKEN`): every endpoint but the health check wants `Authorization: Bearer <token>`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings
from frontend.api_client import BackendClient, api_token, get_client

TOKEN = "s3cret-token"
# One call per router (and the SSE stream): the token check is a router-level dependency, so each must carry it.
GUARDED = [
    ("GET", "/api/presets"), ("GET", "/api/games"), ("GET", "/api/jobs"), ("POST", "/api/jobs"),
    ("GET", "/api/jobs/nope"), ("POST", "/api/jobs/nope/cancel"), ("POST", "/api/jobs/nope/resume"),
    ("GET", "/api/runs"), ("GET", "/api/runs/nope"), ("GET", "/api/runs/nope/metrics"),
    ("GET", "/api/runs/nope/scores"), ("GET", "/api/runs/nope/checkpoints"), ("GET", "/api/runs/nope/events"),
    ("POST", "/api/runs/nope/imagine"), ("POST", "/api/runs/nope/attention"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(runs_dir=tmp_path_factory.mktemp("auth-runs"), device="cpu", api_token=TOKEN)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_and_docs_need_no_token(client: TestClient) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]  # /docs offers an "Authorize" button


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize("headers", [{}, bearer("wrong"), bearer(TOKEN + "x"), {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": TOKEN}], ids=["none", "wrong", "longer", "basic", "bare"])
def test_missing_or_wrong_token_is_401(client: TestClient, method: str, path: str, headers: dict[str, str]) -> None:
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_right_token_passes(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, headers=bearer(TOKEN))
    # Past the check the request meets the endpoint: a listing, or 404/422 for the made-up ids and empty bodies.
    assert response.status_code in (200, 404, 422), response.text


def test_no_token_configured_means_open(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(runs_dir=tmp_path, device="cpu"))) as open_client:
        assert open_client.get("/api/jobs").status_code == 200
        assert open_client.get("/api/jobs", headers=bearer("anything")).status_code == 200


def test_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TWM_API_TOKEN", TOKEN)
    assert Settings(runs_dir=tmp_path).api_token == TOKEN
    assert TOKEN not in repr(Settings(runs_dir=tmp_path))
    monkeypatch.setenv("TWM_API_TOKEN", "")  # set but empty: no token, rather than one an empty header matches
    assert Settings(runs_dir=tmp_path).api_token is None


def test_dashboard_client_sends_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWM_API_TOKEN", TOKEN)
    assert api_token() == TOKEN
    get_client.clear()
    try:
        client = get_client("http://127.0.0.1:1")
        assert client._http.headers["Authorization"] == f"Bearer {TOKEN}"
    finally:
        get_client.clear()
    monkeypatch.delenv("TWM_API_TOKEN")
    assert api_token() is None
    assert "Authorization" not in BackendClient("http://127.0.0.1:1")._http.headers
