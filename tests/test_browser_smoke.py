"""The whole stack once, for real: uvicorn + streamlit subprocesses, the home page rendered in Chromium."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO_ROOT, free_port, running_server

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def backend_url(runs_dir: Path) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running_server(args, f"{url}/api/health", env={"TWM_RUNS_DIR": str(runs_dir)}):
        yield url


@pytest.fixture(scope="module")
def dashboard_url(backend_url: str) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "streamlit", "run", "frontend/streamlit_app.py",
            "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
            "--browser.gatherUsageStats", "false"]
    url = f"http://127.0.0.1:{port}"
    with running_server(args, f"{url}/_stcore/health", env={"TWM_BACKEND_URL": backend_url}, timeout=90):
        yield url


def test_home_page_shows_backend_health(browser: Any, dashboard_url: str, runs_dir: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(dashboard_url, wait_until="domcontentloaded")
        page.get_by_role("heading", name="TWM dashboard").wait_for(timeout=60_000)
        page.get_by_text("Backend online").wait_for(timeout=30_000)
        # The runs dir shown is the one the backend subprocess was given: the page really talked to it.
        page.get_by_text(runs_dir.name).wait_for(timeout=10_000)  # its name: health reveals no server path
        device = page.get_by_test_id("stMetric").filter(has_text="Device")
        assert device.inner_text().split()[-1] in {"cpu", "cuda"}
        page.get_by_text("Pong").first.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)
    finally:
        page.close()
    assert (ARTIFACTS / "home.png").stat().st_size > 0


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
def test_api_docs_render_offline(browser: Any, backend_url: str, page_path: str) -> None:
    """Swagger UI and ReDoc draw the API from local assets: no request leaves for another host (the backend's
    Content-Security-Policy stops ReDoc's logo from cdn.redoc.ly before it is sent; anything else is caught here)."""
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(backend_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    try:
        page.route("**/*", only_local)
        page.goto(f"{backend_url}{page_path}", wait_until="domcontentloaded")
        # Both pages render the schema's title and an operation of the API once their scripts have run.
        page.get_by_text("TWM backend").first.wait_for(timeout=30_000)
        page.get_by_text("/api/runs", exact=False).first.wait_for(timeout=30_000)
    finally:
        page.close()
    assert not elsewhere, f"{page_path} asked other hosts for {elsewhere}"
