"""What the browser tests share: their artifacts folder, opening a page, picking a selectbox option, screenshots,
and stopping the jobs or sweeps a failed test left running (the `dashboard_url` fixture is in conftest.py)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import httpx
from helpers import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts"
DOCS_SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"


def open_page(page: Any, url: str, title: str, level: int | None = None) -> None:
    """Go to `url` and wait for the heading `title` (of `level`, when given)."""
    page.goto(url, wait_until="domcontentloaded")
    heading = page.get_by_role("heading", name=title, exact=True) if level is None else \
        page.get_by_role("heading", name=title, exact=True, level=level)
    heading.wait_for(timeout=60_000)


def pick(page: Any, label: str, option: str) -> None:
    """Choose `option` in the Streamlit selectbox labelled `label`."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.keyboard.type(option)  # the option list is virtualised: filter it down first
    page.get_by_role("option", name=option, exact=True).click()
    page.get_by_role("option").first.wait_for(state="detached", timeout=10_000)


def shoot(page: Any, name: str, locator: Any = None, docs: bool = False, settle_ms: int = 500) -> None:
    """A screenshot to test-artifacts/ (of `locator` when given, else the full page) after `settle_ms` (plotly
    finishes drawing); with `docs`, also to docs/screenshots/ when TWM_SCREENSHOTS=1."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(settle_ms)
    if locator is not None:
        locator.screenshot(path=str(ARTIFACTS / name))
    else:
        page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    assert (ARTIFACTS / name).stat().st_size > 0
    if docs and os.environ.get("TWM_SCREENSHOTS") == "1":
        shutil.copy(ARTIFACTS / name, DOCS_SCREENSHOTS / name)


def cancel_active(backend_url: str, kind: str = "jobs") -> None:
    """Cancel every queued or running job (`kind="jobs"`) or sweep (`"sweeps"`): what a failed test started must
    not outlive it."""
    key = "job_id" if kind == "jobs" else "sweep_id"
    for item in httpx.get(f"{backend_url}/api/{kind}", timeout=10).json()[kind]:
        if item["state"] in ("queued", "running"):
            httpx.post(f"{backend_url}/api/{kind}/{item[key]}/cancel", timeout=30)
