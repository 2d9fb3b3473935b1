"""Shared test setup: one CPU thread, GPU-test skipping, and Debian's Chromium for browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before torch is imported anywhere: CI machines have 2 cores and tests run several processes at once.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Starlette's TestClient sends `Host: testserver`; the backend answers only loopback names unless told more.
os.environ.setdefault("TWM_ALLOWED_HOSTS", "testserver")

try:
    import torch
except ImportError:  # pragma: no cover - torch is a hard dependency, but keep collection alive without it
    torch = None
else:
    torch.set_num_threads(1)

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `@pytest.mark.gpu` tests when CUDA is not available."""
    if torch is not None and torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def find_chromium() -> Path | None:
    """Debian's Chromium at /usr/bin/chromium, else whatever `chromium` is on PATH."""
    if CHROMIUM_PATH.exists():
        return CHROMIUM_PATH
    found = shutil.which("chromium")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Path to the Chromium executable; skips without one (fails instead when TWM_REQUIRE_BROWSER=1)."""
    path = find_chromium()
    if path is None:
        message = (f"Chromium not found at {CHROMIUM_PATH}: apt-get install -y chromium "
                   "(set TWM_REQUIRE_BROWSER=1 to make this a failure)")
        if os.environ.get("TWM_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    """A headless Playwright browser on the system Chromium (never a Playwright-downloaded build)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def dashboard_url(backend_url: str) -> Iterator[str]:
    """A real Streamlit dashboard on a free port, talking to the module's `backend_url` fixture."""
    from helpers import dashboard_server

    with dashboard_server(backend_url) as url:
        yield url


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, finished `debug`-preset Pong run (checkpoints at steps 100 and 200, metrics, scores, replay).

    Made once per session by the real trainer on CPU (about half a minute): backend and frontend tests read it
    instead of fakes. Treat it as read-only.
    """
    from twm_core.presets import make_config
    from twm_core.run_dir import RunDir
    from twm_core.trainer import Trainer

    root = tmp_path_factory.mktemp("runs")
    cfg = make_config("debug", "Pong", seed=0, overrides={
        "train.total_steps": 200, "train.pretrain_budget": 5000, "train.eval_episodes": 0,
        "train.final_eval_episodes": 1, "train.checkpoint_every": 100})
    run_dir = RunDir(root / "pong-debug-run")
    Trainer(cfg, run_dir, "cpu").run()
    return run_dir.path
