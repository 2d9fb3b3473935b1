"""Repository plumbing: compose, Dockerfiles, pyproject, CI script, .gitignore, and import boundaries."""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(port).split(":")[-1].split("/")[0]) for port in service.get("ports", [])}


def _mount_targets(service: dict[str, Any]) -> dict[str, str]:
    """Container path → source for each volume entry (short `src:dst[:mode]` or long form)."""
    targets = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        targets[target] = source
    return targets


def test_compose_services_ports_and_mounts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"backend", "frontend"} <= set(services)
    assert 8000 in _container_ports(services["backend"])
    assert 8501 in _container_ports(services["frontend"])
    backend_mounts = _mount_targets(services["backend"])
    assert "/app/checkpoints" in backend_mounts, backend_mounts
    source = backend_mounts["/app/checkpoints"]
    assert source.rstrip("/") == "./checkpoints" or source in compose.get("volumes", {}), source
    assert _env(services["backend"])["TWM_RUNS_DIR"] == "/app/checkpoints"


def test_compose_backend_reserves_nvidia_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["backend"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices


def test_compose_frontend_reaches_backend_by_service_name(compose: dict[str, Any]) -> None:
    frontend = compose["services"]["frontend"]
    assert _env(frontend)["TWM_BACKEND_URL"] == "http://backend:8000"
    depends = frontend["depends_on"]
    assert "backend" in depends
    if isinstance(depends, dict):
        assert depends["backend"]["condition"] == "service_healthy"


def _published_host(port: str) -> str:
    """The host part of a short `host:published:container` port entry (compose's `${VAR:-default}` resolved)."""
    host = str(port).rsplit(":", 2)[0]
    assert host.startswith("${TWM_BIND:-") and host.endswith("}"), f"port {port!r} names no bind address"
    return host.removeprefix("${TWM_BIND:-").removesuffix("}")


@pytest.mark.parametrize("name", ["backend", "frontend"])
def test_compose_publishes_on_loopback_unless_told(compose: dict[str, Any], name: str) -> None:
    ports = compose["services"][name]["ports"]
    assert ports and all(_published_host(port) == "127.0.0.1" for port in ports), ports


def test_compose_requires_a_token_and_allows_the_service_name(compose: dict[str, Any]) -> None:
    backend, frontend = (_env(compose["services"][name]) for name in ("backend", "frontend"))
    # `${VAR:?message}`: compose refuses to start without it; the dashboard sends the same token.
    assert backend["TWM_API_TOKEN"].startswith("${TWM_API_TOKEN:?"), backend
    assert frontend["TWM_API_TOKEN"] == backend["TWM_API_TOKEN"]
    assert "TWM_ALLOW_NO_TOKEN" not in backend
    assert "backend" in backend["TWM_ALLOWED_HOSTS"].split(",")  # the Host of http://backend:8000


def test_backend_image_and_make_run_use_the_checking_launcher() -> None:
    dockerfile = (ROOT / "docker" / "backend.Dockerfile").read_text()
    assert 'CMD ["python", "-m", "backend", "--host", "0.0.0.0"' in dockerfile
    assert '-m backend --host 127.0.0.1' in (ROOT / "scripts" / "run.sh").read_text()


@pytest.mark.parametrize("name, path", [("backend", "/api/health"), ("frontend", "/_stcore/health")])
def test_compose_healthchecks(compose: dict[str, Any], name: str, path: str) -> None:
    check = compose["services"][name]["healthcheck"]
    test = check["test"] if isinstance(check["test"], str) else " ".join(check["test"])
    assert path in test


def _copy_sources(dockerfile: Path) -> list[str]:
    """Source paths of every COPY/ADD in a Dockerfile (line continuations joined; `--from` copies skipped)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = shlex.split(line.strip(), comments=True) if line.strip() else []
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        if any(w.startswith("--from") for w in words[1:]):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources.extend(args[:-1])
    return sources


def test_dockerfiles_copy_only_existing_paths(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in compose["services"].items():
        build = service["build"]
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        text = dockerfile.read_text()
        assert "FROM python:3.11-slim" in text
        sources = _copy_sources(dockerfile)
        assert sources, f"{name}: no COPY in {dockerfile}"
        for source in sources:
            assert (context / source).exists(), f"{name}: COPY source {source!r} does not exist"
            checked += 1
    assert checked >= 2


def test_frontend_image_has_no_torch() -> None:
    lines = (ROOT / "docker/frontend.Dockerfile").read_text().splitlines()
    instructions = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert "torch" not in instructions and "twm_core" not in instructions


def test_pyproject_pins_torch_and_declares_cli_and_markers(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    assert "torch==2.13.0" in project["dependencies"]
    assert project["scripts"]["twm"] == "twm_core.cli:main"
    markers = " ".join(pyproject["tool"]["pytest"]["ini_options"]["markers"])
    for marker in ("slow:", "gpu:", "browser:"):
        assert marker in markers
    assert "--strict-markers" in pyproject["tool"]["pytest"]["ini_options"]["addopts"]


def test_ci_script() -> None:
    script = ROOT / ".ci/run"
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    for needle in ("set -euo pipefail", "TWM_REQUIRE_BROWSER=1", "OMP_NUM_THREADS=1", "make test"):
        assert needle in text, needle


def test_makefile_targets() -> None:
    text = (ROOT / "Makefile").read_text()
    for needle in ("run:", "test:", "-m venv", "pip install -e", ".installed-dev", "ruff check",
                   "PYTEST_ARGS", "apt-get install -y chromium"):
        assert needle in text, needle
    assert "playwright install" not in text, "browser tests use Debian's chromium, never a downloaded build"
    assert os.access(ROOT / "scripts/run.sh", os.X_OK)


def _ignored(path: str) -> bool:
    # --no-index: judge the patterns themselves, not whether the path happens to be tracked.
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    assert result.returncode in (0, 1), f"git check-ignore failed for {path}"
    return result.returncode == 0


def test_gitignore_keeps_runs_out_but_gitkeep_in() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    assert _ignored(".venv/bin/python")
    assert _ignored("checkpoints/runs/abc/metrics.jsonl")
    assert _ignored("checkpoints/jobs.db")
    assert not _ignored("checkpoints/.gitkeep")
    assert (ROOT / "checkpoints/.gitkeep").exists()


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_frontend_never_imports_torch_or_core() -> None:
    files = sorted((ROOT / "frontend").rglob("*.py"))
    assert files
    for path in files:
        forbidden = _imported_modules(path) & {"torch", "twm_core", "backend"}
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


WEB_MODULES = {"fastapi", "streamlit", "starlette", "wandb", "backend", "frontend"}


def test_twm_core_has_no_web_imports() -> None:
    for path in sorted((ROOT / "twm_core").rglob("*.py")):
        forbidden = _imported_modules(path) & WEB_MODULES
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"
