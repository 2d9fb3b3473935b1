"""End to end in Chromium: launch a tiny Catch + Pong sweep from the Sweeps page, follow it to the end, open its
report (per-game table, aggregate figures), then launch a long sweep and cancel it from the page. Live uvicorn +
streamlit subprocesses on an empty tmp runs dir; screenshots of each stage go to test-artifacts/.

Catch has no reference scores, so the report's aggregates come from Pong alone and the page says Catch is left out
of them; both games are in the per-game table.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import ARTIFACTS, cancel_active, pick, shoot
from browser_helpers import open_page as _open_page
from helpers import FAST_TRAIN, backend_server

pytestmark = pytest.mark.browser

GAMES = ["Catch", "Pong"]
STEPS = 110
LONG_STEPS = 2000  # the sweep to cancel: minutes of training (the debug preset's replay holds 2000 steps)
OVERRIDES = "\n".join(f"{key}={value}" for key, value in FAST_TRAIN.items())
SWEEP_TIMEOUT_MS = 180_000  # two debug runs one after the other take ~30-60 s on an idle 2-core machine
CANCEL_TIMEOUT_MS = 90_000  # a running job checkpoints before it stops


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-sweeps-runs")


@pytest.fixture(scope="module")
def backend_url(runs_dir: Path) -> Iterator[str]:
    with backend_server(runs_dir, {"TWM_JOB_POLL_SECONDS": "0.2"}) as url:
        try:
            yield url
        finally:
            cancel_active(url, "sweeps")


# ------------------------------------------------------------------------------------------------ page helpers
def open_page(page: Any, url: str, title: str) -> None:
    _open_page(page, url, title, level=1)  # the page title, not a section of the same name


def pick_many(page: Any, label: str, options: list[str]) -> None:
    """Add each of `options` to the Streamlit multiselect labelled `label`, then close its list."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text=label)
    for option in options:
        box.click()
        page.keyboard.type(option)
        page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")
    for option in options:  # each pick shows as a tag in the box
        box.get_by_text(option, exact=True).wait_for(timeout=10_000)


def fill(page: Any, role: str, name: str, value: str) -> None:
    field = page.get_by_role(role, name=name, exact=True)
    field.fill(value)
    field.press("Tab")


def table_rows(frame: Any) -> list[dict[str, str]]:
    """The rows of a Streamlit dataframe as {column: cell text}, read from the grid's accessible table (the cells
    themselves are drawn on a canvas)."""
    table = frame.locator("table")
    table.wait_for(state="attached", timeout=30_000)
    header = table.locator("thead th").all_inner_texts()
    return [dict(zip(header, row.locator("td").all_inner_texts(), strict=True))
            for row in table.locator("tbody tr").all()]


def frame_with(page: Any, column: str) -> Any:
    """The dataframe that has a column called `column`."""
    return page.get_by_test_id("stDataFrame").filter(
        has=page.locator("thead th").filter(has_text=re.compile(rf"^{re.escape(column)}$")))


def detail(page: Any, sweep_id: str, state: str) -> Any:
    """The picked sweep's summary line, `name (id) — state · preset ...`."""
    return page.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile(rf"\({sweep_id}\) — {state} · "))


def metric(page: Any, label: str) -> str:
    """The value of the metric labelled `label` (once a rerun has dropped any stale copy of it)."""
    values = page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")
    deadline = time.monotonic() + 10
    while values.count() != 1:
        assert time.monotonic() < deadline, f"{values.count()} metrics labelled {label!r}"
        page.wait_for_timeout(200)
    return values.inner_text()


def api(backend: str, path: str) -> Any:
    response = httpx.get(f"{backend}/api{path}", timeout=30)
    response.raise_for_status()
    return response.json()


# ------------------------------------------------------------------------------------------------ stages
def launch_sweep(page: Any, games: list[str], seeds: str, steps: int, name: str) -> str:
    """Fill the new-sweep form and launch; return the sweep id the page reports."""
    pick_many(page, "Games", games)
    fill(page, "textbox", "Seeds", seeds)
    pick(page, "Preset", "debug")
    fill(page, "spinbutton", "Env steps", str(steps))
    fill(page, "spinbutton", "Max retries", "0")  # a failed run must fail the sweep, not be retried away
    fill(page, "textbox", "Name", name)
    page.get_by_text("Advanced: config overrides (every job)").click()
    fill(page, "textbox", "Overrides", OVERRIDES)
    page.get_by_role("button", name="Launch sweep").click()
    launched = page.get_by_text(re.compile(r"^Launched sweep \w+: \d+ jobs"))
    launched.wait_for(timeout=30_000)
    match = re.match(r"Launched sweep (\w+): (\d+) jobs \((\d+) games × (\d+) seeds, preset debug\)",
                     launched.inner_text())
    assert match is not None, launched.inner_text()
    n_seeds = len(seeds.split(","))
    assert [int(n) for n in match.groups()[1:]] == [len(games) * n_seeds, len(games), n_seeds], match.groups()
    return match[1]


def refuse_empty_form(page: Any, url: str, backend: str) -> None:
    """The page starts with no sweeps, and a form without games is refused before anything reaches the backend."""
    open_page(page, f"{url}/sweeps", "Sweeps")
    page.get_by_text("No sweeps yet: launch one above.").wait_for(timeout=30_000)
    page.get_by_role("button", name="Launch sweep").click()
    page.get_by_text("Pick at least one game, or all Atari 100k games.").wait_for(timeout=30_000)
    assert api(backend, "/sweeps")["sweeps"] == []


def follow_sweep(page: Any, backend: str) -> str:
    """Launch the Catch + Pong sweep, see it listed and progressing, follow it to the end; return its id."""
    sweep_id = launch_sweep(page, GAMES, "0", STEPS, "e2e catch+pong")
    sweep = api(backend, f"/sweeps/{sweep_id}")  # what the form sent is what the backend runs
    assert (sorted(sweep["games"]), sweep["seeds"], sweep["preset"], sweep["steps"], sweep["max_retries"],
            sweep["name"]) == (GAMES, [0], "debug", STEPS, 0, "e2e catch+pong"), sweep
    assert all(job["overrides"] == FAST_TRAIN for job in sweep["jobs"]), sweep["jobs"]

    sweeps_table = frame_with(page, "jobs ended")
    sweeps_table.locator("tbody tr").filter(has_text=sweep_id).wait_for(state="attached", timeout=30_000)
    [row] = table_rows(sweeps_table)
    assert (row["sweep"], row["name"], row["games"], row["seeds"], row["preset"], row["steps"]) == (
        sweep_id, "e2e catch+pong", "Catch, Pong", "0", "debug", str(STEPS)), row
    assert row["state"] in ("queued", "running"), row
    # Progressing: the page refreshes by itself and shows a partly done sweep before it ends.
    page.get_by_test_id("stProgress").filter(has_text=re.compile(r"^[1-9]\d?% · [01]/2 jobs ended$")).wait_for(
        timeout=SWEEP_TIMEOUT_MS)
    detail(page, sweep_id, "running").wait_for(timeout=10_000)

    detail(page, sweep_id, "finished").wait_for(timeout=SWEEP_TIMEOUT_MS)
    page.get_by_test_id("stProgress").filter(has_text="100% · 2/2 jobs ended").wait_for(timeout=10_000)
    page.get_by_text("No sweep is running.").wait_for(timeout=30_000)  # the refresh timer stopped
    assert (metric(page, "Finished"), metric(page, "Failed"), metric(page, "Running")) == ("2", "0", "0")
    assert page.get_by_role("button", name="Cancel sweep").is_disabled()
    picker = page.get_by_role("combobox", name="Sweep").input_value()
    assert picker.startswith("e2e catch+pong") and "running" not in picker, picker  # no label left from the start
    jobs = table_rows(frame_with(page, "attempt"))
    assert [(j["game"], j["seed"], j["state"], j["step"]) for j in jobs] == [
        (game, "0", "finished", f"{STEPS}/{STEPS}") for game in GAMES], jobs
    assert api(backend, f"/sweeps/{sweep_id}")["state"] == "finished"
    shoot(page, "sweeps.png")
    return sweep_id


def read_report(page: Any, backend: str, sweep_id: str) -> None:
    """Open the sweep's report from its link; check the headline, aggregates, profile and per-game table."""
    page.get_by_role("link", name="Open its report").click()
    page.get_by_role("heading", name="Report", exact=True, level=1).wait_for(timeout=60_000)
    page.wait_for_url(re.compile(rf"/report\?sweep={sweep_id}$"), timeout=10_000)
    assert page.get_by_role("combobox", name="Sweep").input_value().startswith("e2e catch+pong · finished")
    page.get_by_text("2 runs on 2 games · 2000 bootstrap resamples · 95% CIs").wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"Games without reference scores, excluded from aggregates: Catch\.")).wait_for()

    expected = {game["game"]: game for game in api(backend, f"/sweeps/{sweep_id}/report")["games"]}
    assert sorted(expected) == GAMES and expected["Catch"]["hns"] is None and expected["Pong"]["hns"] is not None
    assert float(metric(page, "Ours: Median")) == pytest.approx(expected["Pong"]["hns"], abs=5e-4)

    aggregates = page.locator(".js-plotly-plot").filter(has_text="Aggregate metrics (95% CIs)")
    aggregates.wait_for(timeout=30_000)
    assert aggregates.get_by_text("no aggregate scores").count() == 0
    ticks = aggregates.locator(".ytick text").all_text_contents()
    assert {"Ours", "TWM (paper)", "SimPLe"} <= set(ticks), ticks
    profile = page.locator(".js-plotly-plot").filter(has_text="Performance profile")
    assert profile.count() == 1 and profile.get_by_text("no profile").count() == 0

    rows = {row["game"]: row for row in table_rows(frame_with(page, "ours HNS"))}
    assert sorted(rows) == GAMES, rows
    for game in GAMES:
        assert rows[game]["runs"] == "1" and float(rows[game]["ours"]) == pytest.approx(expected[game]["mean_score"])
    # Catch has no paper numbers and no HNS; Pong has both.
    assert (rows["Catch"]["ours HNS"], rows["Catch"]["TWM (paper)"], rows["Catch"]["human"]) == ("", "", "")
    assert float(rows["Pong"]["TWM (paper)"]) == pytest.approx(18.8) and rows["Pong"]["ours HNS"] != ""
    shoot(page, "report.png")


def cancel_sweep(page: Any, url: str, backend: str, finished_id: str) -> None:
    """Launch a long Catch sweep, wait until its job trains, cancel it from the page, and see it end cancelled."""
    open_page(page, f"{url}/sweeps", "Sweeps")
    sweep_id = launch_sweep(page, ["Catch"], "1", LONG_STEPS, "e2e cancel")
    assert sweep_id != finished_id
    detail(page, sweep_id, "running").wait_for(timeout=60_000)
    deadline = time.monotonic() + 120  # cancel a job whose trainer is stepping, not one still starting up
    while (job := api(backend, f"/sweeps/{sweep_id}")["jobs"][0])["progress"]["step"] == 0:
        assert job["state"] == "running" and time.monotonic() < deadline, job
        time.sleep(0.5)
    page.get_by_role("button", name="Cancel sweep").click()
    page.get_by_text(re.compile(rf"^Cancel requested for sweep {sweep_id} ")).wait_for(timeout=30_000)
    detail(page, sweep_id, "cancelled").wait_for(timeout=CANCEL_TIMEOUT_MS)
    page.get_by_text("No sweep is running.").wait_for(timeout=30_000)
    assert (metric(page, "Cancelled"), metric(page, "Finished"), metric(page, "Failed")) == ("1", "0", "0")
    assert page.get_by_role("button", name="Cancel sweep").is_disabled()
    picker = page.get_by_role("combobox", name="Sweep").input_value()
    assert picker.startswith("e2e cancel") and "running" not in picker, picker
    shoot(page, "sweep-cancelled.png")
    sweep = api(backend, f"/sweeps/{sweep_id}")
    [job] = sweep["jobs"]
    assert (sweep["state"], job["state"]) == ("cancelled", "cancelled"), sweep
    assert 0 < job["progress"]["step"] < LONG_STEPS, job["progress"]
    assert api(backend, f"/sweeps/{finished_id}")["state"] == "finished"  # the other sweep is untouched


def test_launch_follow_report_and_cancel_sweeps(browser: Any, dashboard_url: str, backend_url: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        refuse_empty_form(page, dashboard_url, backend_url)
        sweep_id = follow_sweep(page, backend_url)
        read_report(page, backend_url, sweep_id)
        cancel_sweep(page, dashboard_url, backend_url, sweep_id)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e-sweeps-failure.png"), full_page=True)
        raise
    finally:
        page.close()
