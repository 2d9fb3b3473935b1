"""The Inspector in Chromium on a copy of the real debug run: scrub 20 frames with the keyboard with no request and
the switch time measured in the page, play, fork and see two branches, futures, attention at the scrubber's step,
and a bookmarked URL that reopens the same view. Live uvicorn + streamlit subprocesses; screenshots go to
test-artifacts/ (and docs/screenshots/ with TWM_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from helpers import REPO_ROOT, backend_server, dashboard_server

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"
HORIZON = 24


FILM_RUN = "catch-film"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory, debug_run: Path) -> Path:
    """A copy of the debug run, and a tiny Catch run with four checkpoints (for the film), made by the trainer."""
    from twm_core.config import make_config
    from twm_core.run_dir import RunDir
    from twm_core.trainer import Trainer

    root = tmp_path_factory.mktemp("inspector-runs")
    shutil.copytree(debug_run, root / debug_run.name)
    cfg = make_config("debug", "Catch", seed=0, overrides={
        "train.total_steps": 160, "replay.prefill": 100, "train.pretrain_budget": 2000, "train.eval_episodes": 0,
        "train.final_eval_episodes": 0, "train.checkpoint_every": 20, "train.keep_checkpoints": 10})
    Trainer(cfg, RunDir(root / FILM_RUN), "cpu").run()
    return root


@pytest.fixture(scope="module")
def backend_url(runs_dir: Path) -> Iterator[str]:
    with backend_server(runs_dir) as url:
        yield url


@pytest.fixture(scope="module")
def dashboard_url(backend_url: str) -> Iterator[str]:
    with dashboard_server(backend_url) as url:
        yield url


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    if os.environ.get("TWM_SCREENSHOTS") == "1":
        shutil.copy(ARTIFACTS / name, REPO_ROOT / "docs" / "screenshots" / name)


def viewer(page: Any) -> Any:
    return page.get_by_test_id("dream-viewer")


def wait_ready(page: Any, timeout: float = 120_000) -> None:
    page.locator("[data-testid=dream-viewer][data-ready='1']").wait_for(timeout=timeout)


def current_step(page: Any) -> int:
    return int(viewer(page).get_attribute("data-step"))


def focus(page: Any) -> None:
    """Focus the viewer (not an input inside it) so that the keys reach it."""
    viewer(page).click(position={"x": 5, "y": 5})


def open_inspector(page: Any, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Inspector", exact=True).wait_for(timeout=60_000)
    wait_ready(page)


def test_scrub_play_fork_futures_attention_and_bookmark(browser: Any, dashboard_url: str, debug_run: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    run = debug_run.name
    open_inspector(page, f"{dashboard_url}/inspector?run={run}&seed=3&h={HORIZON}")
    assert current_step(page) == 0

    # 20 frames with the keyboard: no request of any kind, each switch timed in the page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.evaluate("window.__dreamViewer.switchMs = []")
    focus(page)
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    assert current_step(page) == 20
    switch_ms = page.evaluate("window.__dreamViewer.switchMs")
    assert len(switch_ms) == 20 and requests == [], requests  # before the URL catches up (below)
    median = statistics.median(switch_ms)
    print(f"scrub: 20 switches, median {median:.2f} ms, max {max(switch_ms):.2f} ms, 0 requests")
    assert median <= 50
    page.wait_for_timeout(1200)  # scrubbing paused: the step is now in the URL (one favicon fetch by Streamlit)
    assert parse_qs(urlparse(page.url).query)["step"] == ["20"]
    page.keyboard.press("ArrowLeft")
    assert current_step(page) == 19
    shoot(page, "inspector.png")

    # play to the end at the chosen fps, still without requests
    focus(page)
    page.keyboard.press("Home")
    page.get_by_test_id("dv-fps").fill("30")
    page.get_by_test_id("dv-fps").press("Tab")
    requests.clear()
    page.get_by_test_id("dv-play").click()
    page.locator(f"[data-testid=dream-viewer][data-step='{HORIZON}']").wait_for(timeout=10_000)
    assert requests == [], requests  # 24 frames played, no request (the URL waits for the pause)

    # fork at step 6 with another action: two branches, side by side
    focus(page)
    page.keyboard.press("Home")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    page.get_by_test_id("dv-fork-action").select_option(index=1)
    page.get_by_test_id("dv-fork").click()
    page.locator("[data-testid=dv-track] option").nth(1).wait_for(state="attached", timeout=60_000)
    wait_ready(page)
    assert page.locator("[data-testid=dv-track] option").count() == 2
    assert page.get_by_test_id("dv-compare").is_checked()
    assert current_step(page) == 6 and page.get_by_test_id("dv-imagined-b").is_visible()
    assert "branch=s6a1" in page.url
    page.get_by_text("Branches (2)").wait_for(timeout=10_000)
    shoot(page, "inspector-branches.png")

    # futures from the current frame
    page.get_by_test_id("dv-futures").click()
    page.get_by_text("Futures from step 6").wait_for(timeout=60_000)
    page.get_by_text("σ max", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator("[data-testid=stImage] img").count() >= 7 * 8  # 6 futures × 8 steps + the std row
    shoot(page, "inspector-futures.png")

    # attention opens at the scrubber's step
    wait_ready(page)
    focus(page)
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.get_by_test_id("dv-attention").click()
    page.get_by_text("Attention at step 9").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.get_by_text("Whole dream, one layer").click()
    page.get_by_text("over the whole dream").wait_for(timeout=60_000)
    shoot(page, "inspector-attention.png")

    # the bookmark reopens the same view: run, seed, step and branch
    bookmark = page.url
    query = parse_qs(urlparse(bookmark).query)
    assert query["run"] == [run] and query["seed"] == ["3"] and query["branch"] == ["s6a1"]
    fresh = browser.new_page(viewport={"width": 1400, "height": 1500})
    open_inspector(fresh, bookmark)
    assert current_step(fresh) == int(query["step"][0])
    assert fresh.locator("[data-testid=dv-track] option").count() == 2
    assert fresh.locator("[data-testid=dv-track]").input_value() == "1"  # the branch is selected again
    fresh.close()
    page.close()


def test_fifty_steps_of_keyboard_play(browser: Any, dashboard_url: str) -> None:
    """On the Catch run (the first in the picker): 50 key presses, each one step, timed from key to frame."""
    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    page.goto(f"{dashboard_url}/play", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Play", exact=True).wait_for(timeout=60_000)
    page.get_by_role("button", name="Reset").click()
    keys = page.get_by_test_id("play-keys")
    page.locator("[data-testid=play-keys][data-step='0']").wait_for(timeout=60_000)
    page.get_by_text(f"{FILM_RUN} · checkpoint step").wait_for(timeout=10_000)  # the newest run: Catch
    page.get_by_role("heading", name="Play", exact=True).click()  # focus the page, not an input
    sequence = ["ArrowRight", "ArrowLeft", "n", "p", "2"]  # Catch: NOOP, LEFT, RIGHT
    for i in range(50):
        page.keyboard.press(sequence[i % len(sequence)])
        page.locator(f"[data-testid=play-keys][data-step='{i + 1}']").wait_for(timeout=30_000)
    page.keyboard.press("Backspace")  # undo: one step back
    page.locator("[data-testid=play-keys][data-step='49']").wait_for(timeout=30_000)
    latencies = page.evaluate("window.__playKeys.latencies")
    assert len(latencies) >= 50
    median = statistics.median(latencies[:50])
    print(f"play: 50 key presses, median {median:.0f} ms from key to frame, max {max(latencies[:50]):.0f} ms")
    assert int(keys.get_attribute("data-step")) == 49
    page.get_by_text("Actions so far:").wait_for(timeout=10_000)
    shoot(page, "play.png")
    page.close()


def test_checkpoint_film_over_every_retained_checkpoint(browser: Any, dashboard_url: str, backend_url: str) -> None:
    import httpx

    steps = [c["step"] for c in httpx.get(f"{backend_url}/api/runs/{FILM_RUN}/checkpoints",
                                          timeout=30).json()["checkpoints"]]
    assert len(steps) >= 3, steps
    page = browser.new_page(viewport={"width": 1500, "height": 1500})
    open_inspector(page, f"{dashboard_url}/inspector?run={FILM_RUN}&seed=1&h=12")
    page.get_by_role("button", name="Make the film").click()
    film = page.locator("[data-testid=dream-film][data-ready='1']")
    film.wait_for(timeout=120_000)
    for i, step in enumerate(sorted(steps)):
        assert page.get_by_test_id(f"dv-film-{i}").is_visible()
        page.locator("figcaption", has_text=f"step {step}").first.wait_for(timeout=10_000)
    page.get_by_test_id("dream-film").click(position={"x": 5, "y": 5})
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert film.get_attribute("data-step") == "5"
    shoot(page, "inspector-film.png")
    page.close()
