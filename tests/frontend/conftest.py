"""Dashboard test fixtures: a REAL backend (uvicorn subprocess) on a tmp runs dir holding a copy of `debug_run`.

Stable names, shared by every page test module:
- `runs_root` (module): Path of the backend's runs dir; `debug_run` is copied into it as `runs_root / debug_run.name`.
- `backend_server` (module): base URL of the live backend; at teardown every job it still runs is killed.
- `debug_run_id` (module): run id of that copy.
- `dashboard_env` (function): points the dashboard at `backend_server` (`TWM_BACKEND_URL`) with a fresh client.
- `unreachable_backend` (function): points the dashboard at a port nothing listens on.
- `page_app` (function): `page_app("app_pages/runs.py")` → an `AppTest` of that file under `frontend/`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
from helpers import REPO_ROOT, free_port, running_server
from streamlit.testing.v1 import AppTest

from frontend.api_client import get_client

FRONTEND = REPO_ROOT / "frontend"
APP_TIMEOUT = 60.0  # seconds per AppTest script run: the first /api/games call loads the ALE


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory, debug_run: Path) -> Path:
    root = tmp_path_factory.mktemp("dashboard-runs")
    shutil.copytree(debug_run, root / debug_run.name)
    return root


@pytest.fixture(scope="module")
def debug_run_id(runs_root: Path, debug_run: Path) -> str:
    return debug_run.name


@pytest.fixture(scope="module")
def backend_server(runs_root: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port)]
    env = {"TWM_RUNS_DIR": str(runs_root), "TWM_DEVICE": "cpu", "TWM_JOB_POLL_SECONDS": "0.2",
           "TWM_CANCEL_GRACE_SECONDS": "10", "OMP_NUM_THREADS": "1"}
    with running_server(args, f"{url}/api/health", env=env):
        try:
            yield url
        finally:
            _kill_jobs(url)


def _kill_jobs(url: str) -> None:
    """SIGKILL the process group of every job still running: jobs outlive the backend by design."""
    with suppress(httpx.HTTPError):
        for job in httpx.get(f"{url}/api/jobs", timeout=10).json()["jobs"]:
            if job["state"] in ("queued", "running") and job["pid"]:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(job["pid"], signal.SIGKILL)


def _point_dashboard_at(monkeypatch: pytest.MonkeyPatch, url: str) -> Iterator[str]:
    # get_client() is an st.cache_resource keyed on its arguments, and AppTest runs in this process: clear it so
    # the next page builds its client from the TWM_BACKEND_URL set here.
    monkeypatch.setenv("TWM_BACKEND_URL", url)
    get_client.clear()
    yield url
    get_client.clear()


@pytest.fixture
def dashboard_env(monkeypatch: pytest.MonkeyPatch, backend_server: str) -> Iterator[str]:
    yield from _point_dashboard_at(monkeypatch, backend_server)


@pytest.fixture
def unreachable_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from _point_dashboard_at(monkeypatch, f"http://127.0.0.1:{free_port()}")


@pytest.fixture
def page_app() -> Callable[[str], AppTest]:
    def make(path: str) -> AppTest:
        return AppTest.from_file(FRONTEND / path, default_timeout=APP_TIMEOUT)

    return make
