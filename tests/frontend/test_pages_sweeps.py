"""The Sweeps and Report pages through `AppTest`, against a real backend serving a copy of `debug_run`.

Sweeps are real and small (debug preset, 100-step prefill, no evaluations) and are cancelled as soon as the first
trainer reports; on a CPU backend one job runs at a time, so the others are still queued and end at once. No run of
theirs ever has a final evaluation: their report is the 409 case. The
rendered report is that of `debug_run`, whose one-episode final evaluation of Pong gives a human-normalized score.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

PageApp = Callable[[str], AppTest]

FAST_OVERRIDES = "replay.prefill=100\ntrain.pretrain_budget=2000\ntrain.eval_episodes=0\ntrain.final_eval_episodes=0"
STEPS = 1000  # far more than runs before the cancel: no job finishes first
FAST_BODY = {"preset": "debug", "steps": STEPS, "device": "cpu", "max_retries": 0,
             "overrides": {"replay.prefill": 100, "train.pretrain_budget": 2000, "train.eval_episodes": 0,
                           "train.final_eval_episodes": 0}}
ENDED = ("finished", "failed", "cancelled")
MAKE_RUN_HINT = "start it with `make run`"


def texts(elements: Any) -> str:
    return "\n".join(str(element.value) for element in elements)


def ran_clean(at: AppTest) -> AppTest:
    assert not at.exception, texts(at.exception)
    return at


def charts(at: AppTest) -> dict[str, dict[str, Any]]:
    figures = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
    return {figure["layout"]["title"]["text"]: figure for figure in figures}


def get_sweep(url: str, sweep_id: str) -> dict[str, Any]:
    return httpx.get(f"{url}/api/sweeps/{sweep_id}", timeout=10).json()


def wait_sweep(url: str, sweep_id: str, until: Callable[[dict[str, Any]], bool],
               timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        sweep = get_sweep(url, sweep_id)
        if until(sweep) or time.monotonic() > deadline:
            return sweep
        time.sleep(0.3)


def trainer_reported(sweep: dict[str, Any]) -> bool:
    """A running job's trainer wrote its status (its SIGTERM handler is in place), or every job has ended."""
    return (any(job["state"] == "running" and job["progress"]["run_state"] not in (None, "queued")
                for job in sweep["jobs"])
            or all(job["state"] in ENDED for job in sweep["jobs"]))


def cancel_and_wait(url: str, sweep_id: str) -> dict[str, Any]:
    wait_sweep(url, sweep_id, trainer_reported)
    httpx.post(f"{url}/api/sweeps/{sweep_id}/cancel", timeout=10)
    return wait_sweep(url, sweep_id, lambda s: s["state"] in ENDED)


@pytest.fixture(scope="module")
def ended_sweep(backend_server: str) -> Iterator[dict[str, Any]]:
    """A one-job Catch sweep, cancelled once its trainer reports: ended, with no final evaluation."""
    response = httpx.post(f"{backend_server}/api/sweeps", timeout=30,
                          json={**FAST_BODY, "games": ["Catch"], "seeds": [3], "name": "ended"})
    assert response.status_code == 201, response.text
    sweep = cancel_and_wait(backend_server, response.json()["sweep_id"])
    assert sweep["state"] == "cancelled", sweep
    yield sweep


# ------------------------------------------------------------------------------------------------ navigation
def test_navigation_lists_sweeps_and_report_after_runs(dashboard_env: str) -> None:
    at = ran_clean(AppTest.from_file(Path(__file__).parents[2] / "frontend" / "streamlit_app.py",
                                     default_timeout=60).run())
    for page, title in [("app_pages/sweeps.py", "Sweeps"), ("app_pages/report.py", "Report")]:
        at.switch_page(page).run()
        assert ran_clean(at).title[0].value == title


@pytest.mark.parametrize("page", ["app_pages/sweeps.py", "app_pages/report.py"])
def test_pages_say_how_to_start_an_unreachable_backend(page_app: PageApp, unreachable_backend: str,
                                                       page: str) -> None:
    at = ran_clean(page_app(page).run(timeout=30))
    assert MAKE_RUN_HINT in texts(at.error) and unreachable_backend in texts(at.error)


# ------------------------------------------------------------------------------------------------ sweeps
def fill_form(at: AppTest, games: list[str], seeds: str, overrides: str = FAST_OVERRIDES,
              every: bool = False) -> AppTest:
    at.multiselect(key="sweep_games").set_value(games)
    at.checkbox(key="sweep_all_games").set_value(every)
    at.text_input(key="sweep_seeds").input(seeds)
    at.selectbox(key="sweep_preset").select("debug")
    at.selectbox(key="sweep_device").select("cpu")
    at.number_input(key="sweep_steps").set_value(STEPS)
    at.number_input(key="sweep_retries").set_value(0)
    at.text_input(key="sweep_name").input("tiny")
    at.text_area(key="sweep_overrides").input(overrides)
    (submit,) = [button for button in at.button if button.label == "Launch sweep"]
    return ran_clean(submit.click().run())


def test_sweep_form_shows_readable_errors(page_app: PageApp, dashboard_env: str) -> None:
    at = ran_clean(page_app("app_pages/sweeps.py").run())
    games = at.multiselect(key="sweep_games").options
    assert games[:2] == ["Alien", "Amidar"] and "Catch" in games
    assert at.checkbox(key="sweep_all_games").label == "All 26 Atari 100k games"
    fill_form(at, [], "0")
    assert "Pick at least one game, or all Atari 100k games." in texts(at.error)
    fill_form(at, ["Catch"], "4-2")
    assert "Seeds: the range `4-2` runs backwards" in texts(at.error)
    fill_form(at, ["Catch"], "0", overrides="train.no_such_key=1")
    assert "HTTP 422" in texts(at.error) and "train.no_such_key" in texts(at.error)
    assert not at.success
    assert httpx.get(f"{dashboard_env}/api/sweeps", timeout=10).json()["sweeps"] == []


def test_sweeps_page_launches_lists_and_cancels_a_sweep(page_app: PageApp, dashboard_env: str) -> None:
    at = ran_clean(page_app("app_pages/sweeps.py").run())
    fill_form(at, ["Catch", "Pong"], "0")
    assert not at.error, texts(at.error)
    sweep = httpx.get(f"{dashboard_env}/api/sweeps", timeout=10).json()["sweeps"][0]
    assert (sweep["name"], sweep["games"], sweep["seeds"], sweep["preset"], sweep["steps"], sweep["device"],
            sweep["max_retries"]) == ("tiny", ["Catch", "Pong"], [0], "debug", STEPS, "cpu", 0)
    assert sweep["jobs"][0]["overrides"] == FAST_BODY["overrides"]
    sweep_id = sweep["sweep_id"]
    assert f"Launched sweep `{sweep_id}`: 2 jobs (2 games × 1 seeds, preset debug)" in texts(at.success)

    # Listed, picked, and detailed: one job row per (game, seed).
    sweeps_table, jobs_table = (element.value for element in at.dataframe)
    assert sweep_id in list(sweeps_table["sweep"])
    row = sweeps_table[sweeps_table["sweep"] == sweep_id].iloc[0]
    assert row["state"] in ("queued", "running") and row["seeds"] == "0" and row["games"] == "Catch, Pong"
    assert at.selectbox(key="sweep_pick").value == sweep_id
    assert list(zip(jobs_table["game"], jobs_table["seed"], strict=True)) == [("Catch", 0), ("Pong", 0)]
    assert set(jobs_table["state"]) <= {"queued", "running"} and list(jobs_table["retries"]) == [0, 0]
    assert "Refreshing every 2s while a sweep is live." in texts(at.caption)
    assert not at.button(key="cancel_sweep").disabled

    # Cancel from the page once the first trainer reports: it checkpoints and stops, the queued job just ends.
    wait_sweep(dashboard_env, sweep_id, trainer_reported)
    ran_clean(at.button(key="cancel_sweep").click().run())
    assert f"Cancel requested for sweep `{sweep_id}`" in texts(at.success)
    ended = wait_sweep(dashboard_env, sweep_id, lambda s: s["state"] in ENDED)
    assert ended["state"] == "cancelled" and ended["counts"]["cancelled"] == 2, ended["counts"]
    ran_clean(at.run())
    assert at.dataframe[0].value.iloc[0]["state"] == "cancelled"
    assert set(at.dataframe[1].value["state"]) == {"cancelled"}
    assert at.button(key="cancel_sweep").disabled
    assert "No sweep is running." in texts(at.caption)


def test_sweeps_page_links_to_the_report_of_the_picked_sweep(dashboard_env: str,
                                                               ended_sweep: dict[str, Any]) -> None:
    at = ran_clean(AppTest.from_file(Path(__file__).parents[2] / "frontend" / "streamlit_app.py",
                                     default_timeout=60).run())
    at.switch_page("app_pages/sweeps.py").run()
    ran_clean(at.selectbox(key="sweep_pick").select(ended_sweep["sweep_id"]).run())
    (link,) = at.get("page_link")
    assert link.proto.page == "report" and link.proto.query_string == f"sweep={ended_sweep['sweep_id']}"


# ------------------------------------------------------------------------------------------------ report
def test_report_page_says_when_a_sweep_has_no_final_evaluation(page_app: PageApp, dashboard_env: str,
                                                               ended_sweep: dict[str, Any]) -> None:
    at = page_app("app_pages/report.py")
    at.query_params["sweep"] = ended_sweep["sweep_id"]
    ran_clean(at.run())
    assert at.radio(key="report_source").value == "Sweep"
    assert at.selectbox(key="report_sweep").value == ended_sweep["sweep_id"]
    assert f"No report yet for sweep `{ended_sweep['sweep_id']}`" in texts(at.info)
    assert "HTTP 409" in texts(at.info)
    assert not at.error and not at.get("plotly_chart")


def test_report_page_renders_the_report_of_a_finished_run(page_app: PageApp, dashboard_env: str,
                                                          debug_run_id: str) -> None:
    expected = httpx.get(f"{dashboard_env}/api/report", params={"runs": debug_run_id}, timeout=60).json()
    at = ran_clean(page_app("app_pages/report.py").run())
    ran_clean(at.radio(key="report_source").set_value("Runs").run())
    assert at.multiselect(key="report_runs").value == [debug_run_id]  # the only finished run with an evaluation
    assert not at.info and not at.error
    assert expected["meta"]["preset"] == "debug" and expected["meta"]["comparable"] is False
    assert "Preset `debug` is not the paper's method" in "\n".join(str(w.value) for w in at.warning)

    figures = charts(at)
    aggregates = figures["Aggregate metrics (95% CIs)"]
    ours = [trace for trace in aggregates["data"] if trace["name"] == "Ours"]
    assert len(ours) == 4  # one per panel
    iqm = [trace for trace in ours if trace["xaxis"] == "x2"][0]
    assert iqm["x"] == [expected["aggregates"]["ours"]["iqm"]["value"]]
    assert "TWM (paper)" in {trace["name"] for trace in aggregates["data"]}
    profile = figures["Performance profile"]
    assert {"Ours", "TWM (paper)"} <= {trace["name"] for trace in profile["data"]}

    (pong,) = [game for game in expected["games"] if game["game"] == "Pong"]
    aggregate_table, games_table = at.dataframe[0].value, at.dataframe[1].value
    assert aggregate_table.iloc[0]["method"] == "Ours"
    row = games_table[games_table["game"] == "Pong"].iloc[0]
    assert row["ours"] == pytest.approx(pong["mean_score"]) and row["ours HNS"] == pytest.approx(pong["hns"])
    assert row["TWM (paper)"] == pytest.approx(pong["paper"]["TWM"])
    assert row["DER"] == pytest.approx(pong["paper"]["DER"])
    ran_clean(at.radio(key="report_paper_values").set_value("HNS").run())
    row = at.dataframe[1].value.iloc[0]
    assert row["DER"] == pytest.approx(pong["paper_hns"]["DER"])
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Ours: IQM"] == f"{expected['aggregates']['ours']['iqm']['value']:.3f}"
