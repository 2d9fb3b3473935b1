"""The first start in Chromium: from an EMPTY runs directory, Home offers the demo; one click installs the learned
Catch model, its score and links appear, and the Imagine link opens it and shows an imagined frame. Timed (printed,
and recorded by `bench/demo.py`, which reuses `open_demo_in_imagine`). Live uvicorn + streamlit subprocesses;
screenshots go to test-artifacts/ (the Home one also to docs/screenshots/home-demo.png with TWM_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from browser_helpers import ARTIFACTS
from browser_helpers import shoot as _shoot
from helpers import backend_server

pytestmark = pytest.mark.browser

RUN_ID = "demo-catch"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-runs")


@pytest.fixture(scope="module")
def backend_url(runs_dir: Path) -> Iterator[str]:
    with backend_server(runs_dir) as url:
        yield url


def shoot(page: Any, name: str, locator: Any = None, docs: bool = False) -> None:
    _shoot(page, name, locator, docs, settle_ms=300)  # no plotly to wait for on these pages


def open_demo_in_imagine(page: Any, dashboard_url: str, screenshots: bool = True) -> dict[str, float]:
    """Home → "Open the demo model" → "Open in Imagine" → Imagine → an imagined frame; returns the seconds from
    opening Home to each milestone (`home`, `installed`, `imagine_page`, `frame`)."""
    started = time.monotonic()
    marks: dict[str, float] = {}
    page.goto(dashboard_url, wait_until="domcontentloaded")
    section = page.locator(".st-key-demo_section")
    button = page.get_by_role("button", name="Open the demo model")
    button.wait_for(timeout=60_000)
    assert section.get_by_text("Try a learned model now").is_visible()
    marks["home"] = time.monotonic() - started
    button.click()
    page.get_by_text(re.compile(r"final score [−-]?\d+\.\d\d of 5")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"a random policy scores .1\.34")).first.wait_for(timeout=10_000)
    link = page.get_by_role("link", name="Open in Imagine")
    link.wait_for(timeout=10_000)
    for name in ("Open in Attention", "Open in Play"):
        assert page.get_by_role("link", name=name).is_visible(), name
    marks["installed"] = time.monotonic() - started
    if screenshots:
        shoot(page, "home-demo.png", section, docs=True)
    link.click()
    page.get_by_role("heading", name="Imagine", exact=True).wait_for(timeout=60_000)
    page.wait_for_function("u => location.search.includes(u)", arg=f"run={RUN_ID}", timeout=30_000)
    marks["imagine_page"] = time.monotonic() - started
    page.get_by_role("button", name="Imagine", exact=True).click()
    page.get_by_text("Step 0 / 16", exact=True).wait_for(timeout=120_000)
    page.get_by_text(re.compile(rf"{RUN_ID} · Catch · checkpoint step \d+")).wait_for(timeout=10_000)
    page.get_by_text("Imagined", exact=True).wait_for(timeout=10_000)
    frame = page.get_by_test_id("stImage").first
    frame.wait_for(timeout=10_000)
    assert frame.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0
    marks["frame"] = time.monotonic() - started
    if screenshots:
        shoot(page, "demo-imagine.png")
    return marks


def test_first_start_home_demo_imagine(browser: Any, dashboard_url: str, backend_url: str, runs_dir: Path) -> None:
    assert httpx.get(f"{backend_url}/api/runs", timeout=10).json()["runs"] == []
    assert [name for name in os.listdir(runs_dir) if not name.startswith("jobs.db")] == []  # empty: no runs
    page = browser.new_page(viewport={"width": 1300, "height": 1100})
    try:
        marks = open_demo_in_imagine(page, dashboard_url)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-failure.png"), full_page=True)
        raise
    query = parse_qs(urlparse(page.url).query)
    step = httpx.get(f"{backend_url}/api/demo", timeout=10).json()["facts"]["checkpoint_step"]
    assert query["run"] == [RUN_ID] and query["ckpt"] == [str(step)], page.url
    [run] = httpx.get(f"{backend_url}/api/runs", timeout=10).json()["runs"]
    assert run["run_id"] == RUN_ID and run["state"] == "finished"
    print("first start: " + ", ".join(f"{k} {v:.1f} s" for k, v in marks.items()) +
          f" (Home → demo → imagined frame in {marks['frame']:.1f} s)")

    # a second visit: runs exist now, so the demo is a small expander, already installed
    page.goto(dashboard_url, wait_until="domcontentloaded")
    page.get_by_text("Demo: a learned Catch model").wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Open the demo model").count() == 0
    page.close()
