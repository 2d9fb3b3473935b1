"""Contract tests for the meta endpoints: health, presets, games, and JSON errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(runs_dir=tmp_path / "runs", device="cpu"))) as test_client:
        yield test_client


def test_health_reports_device_and_runs_dir(client: TestClient, tmp_path: Path) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["device"] == "cpu"
    assert isinstance(body["cuda_available"], bool)
    assert body["version"]
    assert body["runs_dir"] == "runs"  # the name only: the open health check reveals no server path
    assert (tmp_path / "runs").is_dir(), "the lifespan should create the runs directory"


def test_auto_device_follows_cuda(tmp_path: Path) -> None:
    import torch

    with TestClient(create_app(Settings(runs_dir=tmp_path, device="auto"))) as client:
        body = client.get("/api/health").json()
    assert body["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert body["cuda_available"] is torch.cuda.is_available()


def test_settings_read_twm_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TWM_RUNS_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("TWM_MAX_LOADED_MODELS", "2")
    settings = Settings()
    assert settings.runs_dir == (tmp_path / "elsewhere").resolve()
    assert settings.db_path == settings.runs_dir / "jobs.db"
    assert settings.max_loaded_models == 2
    assert settings.max_concurrent_jobs is None


def test_presets_carry_reference_values(client: TestClient) -> None:
    response = client.get("/api/presets")
    assert response.status_code == 200
    presets = {p["name"]: p for p in response.json()["presets"]}
    assert set(presets) >= {"atari100k", "debug"}
    reference = presets["atari100k"]["config"]
    assert reference["dyn"]["num_layers"] == 10
    assert reference["obs"]["z_categoricals"] == 32 and reference["obs"]["z_categories"] == 32
    assert reference["ac"]["horizon"] == 15
    assert reference["replay"]["prefill"] == 5000
    assert presets["debug"]["config"]["dyn"]["num_layers"] < reference["dyn"]["num_layers"]
    assert all(p["description"] for p in presets.values())


def test_games_list_atari100k(client: TestClient) -> None:
    response = client.get("/api/games")
    assert response.status_code == 200
    body = response.json()
    assert len(body["atari100k"]) == 26
    assert len(set(body["atari100k"])) == 26
    assert "Pong" in body["atari100k"] and "Pong" in body["games"]
    assert set(body["atari100k"]) <= set(body["games"])


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/api/does-not-exist")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "Not Found"}


def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = client.post("/api/health")
    assert response.status_code == 405
    assert "detail" in response.json()


def test_openapi_docs_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/health", "/api/presets", "/api/games"} <= set(paths)


def test_errors_become_json_not_tracebacks(tmp_path: Path) -> None:
    from twm_core.presets import make_config

    app = create_app(Settings(runs_dir=tmp_path))

    @app.get("/api/_test/bad-config")
    def bad_config() -> dict[str, str]:
        make_config("no-such-preset")
        return {}

    @app.get("/api/_test/crash")
    def crash() -> dict[str, str]:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        bad = client.get("/api/_test/bad-config")
        assert bad.status_code == 422
        assert "no-such-preset" in bad.json()["detail"]
        crashed = client.get("/api/_test/crash")
        assert crashed.status_code == 500
        assert crashed.json() == {"detail": "internal error: RuntimeError: boom"}
        assert "Traceback" not in crashed.text


def test_config_schema_names_every_field_a_job_override_may_set(client: TestClient) -> None:
    response = client.get("/api/config/schema")
    assert response.status_code == 200
    schema = response.json()
    sections = {name: schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]["properties"]
                for name, ref in schema["properties"].items() if "$ref" in ref}
    preset = client.get("/api/presets").json()["presets"][0]["config"]
    for section, values in preset.items():
        if isinstance(values, dict):  # each field of a resolved preset is in the schema, with the paper's default
            assert set(values) == set(sections[section]), section
    assert sections["dyn"]["num_layers"]["default"] == 10 and sections["dyn"]["num_layers"]["type"] == "integer"
    job = {"game": "Catch", "preset": "debug", "overrides": {"dyn.not_in_schema": 1}}
    refused = client.post("/api/jobs", json=job)
    assert refused.status_code == 422 and "unknown config key: dyn.not_in_schema" in refused.json()["detail"]
