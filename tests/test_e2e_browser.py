"""End to end in Chromium: train a tiny Catch run from the Train page, watch it on Runs, then look inside it on the
Imagine, Attention and Play pages. Live uvicorn + streamlit subprocesses on an empty tmp runs dir; screenshots of
each page go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import ARTIFACTS, cancel_active, open_page, pick, shoot
from helpers import backend_server
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.browser

STEPS = 130
OVERRIDES = "\n".join(["replay.prefill=100", "train.pretrain_budget=2000", "train.eval_episodes=0",
                       "train.final_eval_episodes=0", "train.checkpoint_every=100"])
TRAIN_TIMEOUT_MS = 150_000  # the run itself takes ~25 s on an idle 2-core machine; CI machines are busier


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-runs")


@pytest.fixture(scope="module")
def backend_url(runs_dir: Path) -> Iterator[str]:
    with backend_server(runs_dir, {"TWM_JOB_POLL_SECONDS": "0.2"}) as url:
        try:
            yield url
        finally:
            cancel_active(url, "jobs")


def start_training(page: Any, url: str) -> None:
    open_page(page, f"{url}/train", "Train")
    pick(page, "Game", "Catch")
    pick(page, "Preset", "debug")
    steps = page.get_by_role("spinbutton", name="Env steps")
    steps.fill(str(STEPS))
    steps.press("Tab")
    page.get_by_text("Advanced: config overrides").click()
    overrides = page.get_by_role("textbox", name="Overrides")
    overrides.fill(OVERRIDES)
    overrides.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started job").wait_for(timeout=30_000)
    page.get_by_test_id("stDataFrame").wait_for(timeout=10_000)  # the jobs table
    shoot(page, "train.png")


def watch_run(page: Any, url: str, backend: str) -> str:
    """Open Runs, wait for the new run's metric charts and for the run to finish; return its id."""
    jobs = httpx.get(f"{backend}/api/jobs", timeout=10).json()["jobs"]
    assert len(jobs) == 1 and (jobs[0]["game"], jobs[0]["preset"], jobs[0]["steps"]) == ("Catch", "debug", STEPS)
    run_id = jobs[0]["run_id"]
    deadline = time.monotonic() + 60
    while run_id not in [r["run_id"] for r in httpx.get(f"{backend}/api/runs", timeout=10).json()["runs"]]:
        assert time.monotonic() < deadline, f"run {run_id} never appeared in /api/runs"
        time.sleep(0.5)  # the job's subprocess writes the run directory
    open_page(page, f"{url}/runs", "Runs")
    page.get_by_test_id("stMultiSelect").filter(has_text=run_id).wait_for(timeout=30_000)
    page.locator(".js-plotly-plot").filter(has_text="perf/env_steps_per_s").first.wait_for(timeout=90_000)
    page.get_by_text(re.compile(rf"finished · step {STEPS}/{STEPS}")).wait_for(timeout=TRAIN_TIMEOUT_MS)
    page.locator(".js-plotly-plot").filter(has_text="wm/dec_loss").first.wait_for(timeout=30_000)
    shoot(page, "runs.png")
    deadline = time.monotonic() + 30  # the job record follows the run's status.json within a poll or two
    while (job := httpx.get(f"{backend}/api/jobs", timeout=10).json()["jobs"][0])["state"] != "finished":
        assert job["state"] == "running" and time.monotonic() < deadline, job
        time.sleep(0.5)
    return run_id


def scrub_imagination(page: Any, url: str, run_id: str) -> None:
    open_page(page, f"{url}/imagine", "Imagine")
    page.get_by_role("button", name="Imagine", exact=True).click()
    page.get_by_text("Step 0 / 16", exact=True).wait_for(timeout=60_000)
    page.get_by_text(f"{run_id} · Catch · checkpoint step {STEPS}").wait_for(timeout=10_000)
    slider = page.get_by_role("slider")
    slider.focus()
    slider.press("End")
    last = page.get_by_text("Step 16 / 16", exact=True)
    try:
        last.wait_for(timeout=15_000)
    except PlaywrightTimeout:  # the keyboard did not move it: step with ▶ instead
        next_button = page.get_by_role("button", name="▶")
        for _ in range(16):
            if last.is_visible():
                break
            next_button.click()
            page.wait_for_timeout(500)
        last.wait_for(timeout=10_000)
    assert page.get_by_role("button", name="▶").is_disabled()
    page.get_by_text(re.compile(r"^a = (NOOP|LEFT|RIGHT) · r̂ = ")).first.wait_for(timeout=10_000)
    latent = page.locator(".js-plotly-plot").filter(has_text="latent z16")
    latent.wait_for(timeout=10_000)  # plotly draws after Streamlit's text of the same rerun
    assert latent.count() == 1
    assert page.get_by_role("button", name="Download GIF").is_visible()
    shoot(page, "imagine.png")


def show_attention(page: Any, url: str, run_id: str) -> None:
    open_page(page, f"{url}/attention", "Attention")
    page.get_by_role("button", name="Show attention").click()
    heatmap = page.locator(".js-plotly-plot").filter(has_text="Attention of a8")
    heatmap.wait_for(timeout=60_000)
    page.get_by_text(f"{run_id} · checkpoint step {STEPS}").wait_for(timeout=10_000)
    ticks = heatmap.locator(".xtick text").all_text_contents()
    assert ticks[-2:] == ["z0", "a0"] and "r-1" in ticks, ticks
    shoot(page, "attention.png")


def play_a_step(page: Any, url: str, run_id: str) -> None:
    open_page(page, f"{url}/play", "Play")
    page.get_by_role("button", name="Reset").click()
    page.get_by_role("button", name="RIGHT", exact=True).click()
    page.get_by_text("Actions so far: RIGHT", exact=True).wait_for(timeout=60_000)
    page.get_by_text(f"{run_id} · checkpoint step {STEPS}").wait_for(timeout=10_000)
    assert page.get_by_test_id("stMetric").filter(has_text="Step").inner_text().split()[-1] == "1"
    shoot(page, "play.png")


def test_train_watch_and_inspect_a_run(browser: Any, dashboard_url: str, backend_url: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        start_training(page, dashboard_url)
        run_id = watch_run(page, dashboard_url, backend_url)
        scrub_imagination(page, dashboard_url, run_id)
        show_attention(page, dashboard_url, run_id)
        play_a_step(page, dashboard_url, run_id)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e-failure.png"), full_page=True)
        raise
    finally:
        page.close()
