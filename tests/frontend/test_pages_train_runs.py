"""The Train, Runs and Checkpoints pages through `AppTest`, against a real backend serving a copy of `debug_run`.

Expected values are read from the run's own files; the Train test starts a real (tiny) job on Catch. It runs last
because the run it creates becomes the newest one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

FAST_OVERRIDES = "replay.prefill=100\ntrain.pretrain_budget=2000\ntrain.eval_episodes=0\ntrain.final_eval_episodes=0"
MAKE_RUN_HINT = "start it with `make run`"

PageApp = Callable[[str], AppTest]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def file_points(run_dir: Path, key: str) -> list[tuple[float, float]]:
    """`(step, value)` of `key` in file order (stable by step: a step may have two rows, pretrain then train)."""
    return sorted(((row["step"], row[key]) for row in jsonl(run_dir / "metrics.jsonl") if key in row),
                  key=lambda point: point[0])


def charts(at: AppTest) -> dict[str, dict[str, Any]]:
    """Every plotly chart on the page as its figure JSON, by its title."""
    figures = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
    return {figure["layout"]["title"]["text"]: figure for figure in figures}


def trace_points(trace: dict[str, Any]) -> list[tuple[float, float]]:
    return list(zip(trace["x"], trace["y"], strict=True))


def raw_traces(figure: dict[str, Any]) -> list[dict[str, Any]]:
    """A metric chart's raw curves (the page smooths by default: each is drawn faint behind its smoothed one)."""
    traces = figure["data"]
    assert [t["name"] for t in traces[::2]] == [f"{t['name']} (raw)" for t in traces[1::2]], "raw, smoothed pairs"
    return [{**trace, "name": trace["name"].removesuffix(" (raw)")} for trace in traces[::2]]


def texts(elements: Any) -> str:
    return "\n".join(str(element.value) for element in elements)


def ran_clean(at: AppTest) -> AppTest:
    assert not at.exception, texts(at.exception)
    return at


# ------------------------------------------------------------------------------------------------ entry point
def test_navigation_registers_pages_and_shows_backend_url(dashboard_env: str) -> None:
    at = ran_clean(AppTest.from_file(Path(__file__).parents[2] / "frontend" / "streamlit_app.py",
                                     default_timeout=60).run())
    assert at.title[0].value == "TWM dashboard"
    assert dashboard_env in texts(at.sidebar.caption)
    for page, title in [("app_pages/train.py", "Train"), ("app_pages/runs.py", "Runs"),
                        ("app_pages/checkpoints.py", "Checkpoints")]:
        at.switch_page(page).run()
        assert ran_clean(at).title[0].value == title


# ------------------------------------------------------------------------------------------------ runs
def test_runs_page_charts_the_run_metrics(page_app: PageApp, dashboard_env: str, debug_run: Path,
                                          debug_run_id: str) -> None:
    at = ran_clean(page_app("app_pages/runs.py").run())
    picker = at.multiselect(key="run_pick")
    assert debug_run_id in picker.options
    assert picker.value == [debug_run_id]  # the newest run by default
    status = json.loads((debug_run / "status.json").read_text())
    assert f"**{debug_run_id}** — finished · step {status['step']}/{status['total_steps']}" in texts(at.markdown)

    figures = charts(at)
    for key in ("wm/dec_loss", "wm/z_pred_ce", "wm/reward_loss", "wm/discount_loss", "ac/actor_loss",
                "ac/critic_loss", "ac/norm_ent", "ac/returns", "perf/env_steps_per_s", "perf/ram_mb"):
        (trace,) = raw_traces(figures[key])
        assert trace_points(trace) == file_points(debug_run, key), key
    # The final evaluation (one Pong episode) is on the scores chart, its HNS on the secondary axis.
    scores = {trace["name"]: trace for trace in figures["Scores"]["data"]}
    final = file_points(debug_run, "eval/final_score_mean")
    assert trace_points(scores[f"{debug_run_id} eval mean"]) == final
    assert trace_points(scores[f"{debug_run_id} HNS"]) == file_points(debug_run, "eval/final_hns")
    assert scores[f"{debug_run_id} HNS"]["yaxis"] == "y2"

    # Any other logged key can be charted from the key picker.
    extra = at.multiselect(key="extra_keys")
    assert "replay/visit_entropy" in extra.options and "pretrain/wm/dec_loss" in extra.options
    ran_clean(extra.set_value(["replay/visit_entropy"]).run())
    (trace,) = raw_traces(charts(at)["replay/visit_entropy"])
    assert trace_points(trace) == file_points(debug_run, "replay/visit_entropy")


def test_runs_page_overlays_several_runs(page_app: PageApp, dashboard_env: str, runs_root: Path, debug_run: Path,
                                         debug_run_id: str) -> None:
    other = runs_root / f"{debug_run_id}-copy"
    if not other.exists():  # metrics only: no checkpoints or replay needed; made older so the original stays newest
        shutil.copytree(debug_run, other, ignore=shutil.ignore_patterns("ckpt", "replay"))
        for path in other.iterdir():
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    at = ran_clean(page_app("app_pages/runs.py").run())
    ran_clean(at.multiselect(key="run_pick").set_value([debug_run_id, other.name]).run())
    traces = raw_traces(charts(at)["wm/dec_loss"])
    assert [trace["name"] for trace in traces] == [debug_run_id, other.name]
    expected = file_points(debug_run, "wm/dec_loss")
    assert all(trace_points(trace) == expected for trace in traces)


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoints_page_lists_checkpoints_scores_and_config(page_app: PageApp, dashboard_env: str,
                                                              debug_run: Path, debug_run_id: str) -> None:
    at = ran_clean(page_app("app_pages/checkpoints.py").run())
    assert at.selectbox(key="ckpt_run").value == debug_run_id
    runs_table, ckpt_table = (element.value for element in at.dataframe)
    assert debug_run_id in list(runs_table["run"])
    assert list(ckpt_table["step"]) == [100, 200]
    assert list(ckpt_table["file"]) == sorted(p.name for p in (debug_run / "ckpt").glob("*.pt"))

    final_score = jsonl(debug_run / "scores.jsonl")[-1]["score"]
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Final eval mean"] == f"{final_score:.1f}"
    config = json.loads((debug_run / "config.json").read_text())
    labels = [expander.label for expander in at.expander]
    assert all(f"`{section}`" in labels for section in config)
    assert "`status.json`" in labels
    shown = [json.loads(element.proto.body) for element in at.json]
    assert config["env"] in shown and config["train"] in shown
    # Each checkpoint opens on the inspection pages (the shared run/checkpoint selection; a lone page shows targets).
    assert at.selectbox(key="ckpt_open").options == ["200", "100"]
    at.selectbox(key="ckpt_open").select(100)
    ran_clean(at.run())
    assert f"Inspector: ?run={debug_run_id}&ckpt=100" in texts(at.caption)
    assert f"Play: ?run={debug_run_id}&ckpt=100" in texts(at.caption)


def test_checkpoints_page_deletes_a_run_after_confirmation(page_app: PageApp, dashboard_env: str, runs_root: Path,
                                                           debug_run: Path) -> None:
    doomed = runs_root / "zz-doomed-copy"
    shutil.copytree(debug_run, doomed)
    os.utime(doomed / "config.json")  # the newest run: the page opens on it
    at = ran_clean(page_app("app_pages/checkpoints.py").run())
    assert at.selectbox(key="ckpt_run").value == doomed.name
    ran_clean(at.button(key="delete_run").click().run())
    assert f"Delete run `{doomed.name}`" in texts(at.warning)
    ran_clean(at.button(key="keep_run").click().run())
    assert not at.warning and doomed.exists()
    ran_clean(at.button(key="delete_run").click().run())
    ran_clean(at.button(key="confirm_delete_run").click().run())
    assert f"Deleted run `{doomed.name}`" in texts(at.success)
    assert not doomed.exists() and at.selectbox(key="ckpt_run").value != doomed.name


# ------------------------------------------------------------------------------------------------ unreachable
@pytest.mark.parametrize("page", ["app_pages/train.py", "app_pages/runs.py", "app_pages/checkpoints.py"])
def test_pages_say_how_to_start_an_unreachable_backend(page_app: PageApp, unreachable_backend: str,
                                                       page: str) -> None:
    at = ran_clean(page_app(page).run(timeout=30))
    assert MAKE_RUN_HINT in texts(at.error)
    assert unreachable_backend in texts(at.error)


# ------------------------------------------------------------------------------------------------ train
def fill_form(at: AppTest, overrides: str) -> AppTest:
    at.selectbox(key="game").select("Catch")
    at.selectbox(key="preset").select("debug")
    at.selectbox(key="device").select("cpu")
    at.number_input(key="steps").set_value(110)
    at.text_area(key="overrides").input(overrides)
    (submit,) = [button for button in at.button if button.label == "Start training"]
    return ran_clean(submit.click().run())


def test_train_form_shows_readable_errors(page_app: PageApp, dashboard_env: str) -> None:
    at = ran_clean(page_app("app_pages/train.py").run())
    games = at.selectbox(key="game").options
    assert games.index("Catch") == 26 and games[:2] == ["Alien", "Amidar"]  # the Atari 100k 26 first, then Catch
    fill_form(at, "train.no_such_key=1")
    assert "HTTP 422" in texts(at.error) and "unknown config key: train.no_such_key" in texts(at.error)
    fill_form(at, "train.eval_episodes=0\noops")
    assert "Overrides line 2: expected `key=value`" in texts(at.error)
    assert not at.success


def wait_job(url: str, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def test_train_form_starts_a_job_that_can_be_cancelled_and_resumed(page_app: PageApp, dashboard_env: str) -> None:
    at = ran_clean(page_app("app_pages/train.py").run())
    fill_form(at, FAST_OVERRIDES)
    assert not at.error, texts(at.error)
    (job,) = httpx.get(f"{dashboard_env}/api/jobs", timeout=10).json()["jobs"]
    assert (job["game"], job["preset"], job["steps"], job["device"]) == ("Catch", "debug", 110, "cpu")
    assert job["overrides"] == {"replay.prefill": 100, "train.pretrain_budget": 2000, "train.eval_episodes": 0,
                                "train.final_eval_episodes": 0}
    assert f"Started job `{job['job_id']}`" in texts(at.success) and job["run_id"] in texts(at.success)
    (table,) = (element.value for element in at.dataframe)
    row = table.iloc[0]
    assert (row["job"], row["run"], row["attempt"]) == (job["job_id"], job["run_id"], 1)
    assert row["state"] in ("queued", "running")
    assert at.selectbox(key="job_pick").value == job["job_id"]

    # Cancel once the trainer reports (its SIGTERM handler is installed), then resume from its checkpoint.
    wait_job(dashboard_env, job["job_id"],
             lambda j: j["progress"]["run_state"] not in (None, "queued") or j["state"] != "running")
    ran_clean(at.button(key="cancel_job").click().run())
    assert f"Cancel requested for job `{job['job_id']}`" in texts(at.success)
    ended = wait_job(dashboard_env, job["job_id"], lambda j: j["state"] in ("finished", "failed", "cancelled"))
    assert ended["state"] == "cancelled", ended  # 110 steps after a 2000-sample pretrain: seconds of work left
    ran_clean(at.run())
    assert at.dataframe[0].value.iloc[0]["state"] == "cancelled"
    assert at.button(key="cancel_job").disabled and not at.button(key="resume_job").disabled
    ran_clean(at.button(key="resume_job").click().run())
    assert f"Resumed job `{job['job_id']}`: attempt 2" in texts(at.success)
    ran_clean(at.run())  # the buttons of the run that resumed were drawn before the resume
    assert at.button(key="delete_job").disabled and at.button(key="resume_job").disabled  # running
    assert f"Its run: `{job['run_id']}` on the Runs page." in texts(at.caption)  # a lone page: no navigation
    assert at.dataframe[0].value.iloc[0]["open"] == f"./runs?run={job['run_id']}"

    # Stop it again, then delete it: Keep leaves everything; Delete with the box ticked removes the run files too.
    wait_job(dashboard_env, job["job_id"], lambda j: j["state"] != "running" or j["progress"]["run_state"] not in
             (None, "queued", "starting"))
    ran_clean(at.button(key="cancel_job").click().run())
    wait_job(dashboard_env, job["job_id"], lambda j: j["state"] in ("finished", "failed", "cancelled"))
    ran_clean(at.run())
    ran_clean(at.button(key="delete_job").click().run())
    assert f"Delete job `{job['job_id']}`?" in texts(at.warning)
    ran_clean(at.button(key="keep_job").click().run())
    assert not at.warning and httpx.get(f"{dashboard_env}/api/jobs/{job['job_id']}", timeout=10).status_code == 200
    ran_clean(at.button(key="delete_job").click().run())
    at.checkbox(key="delete_with_run").check()
    ran_clean(at.button(key="confirm_delete_job").click().run())
    assert f"Deleted job `{job['job_id']}` and its run `{job['run_id']}`" in texts(at.success)
    assert httpx.get(f"{dashboard_env}/api/jobs/{job['job_id']}", timeout=10).status_code == 404
    assert httpx.get(f"{dashboard_env}/api/runs/{job['run_id']}", timeout=10).status_code == 404
    assert not Path(job["run_dir"]).exists()


def test_a_cpu_backend_opens_on_catch_and_asks_before_a_paper_run_or_a_duplicate(page_app: PageApp,
                                                                                  dashboard_env: str) -> None:
    at = ran_clean(page_app("app_pages/train.py").run())
    assert (at.selectbox(key="game").value, at.selectbox(key="preset").value) == ("Catch", "catch")
    assert "This backend has no GPU" in texts(at.info)

    at.selectbox(key="game").select("Pong")
    at.selectbox(key="preset").select("atari100k")
    (submit,) = [button for button in at.button if button.label == "Start training"]
    ran_clean(submit.click().run())
    assert "a `atari100k` run of 100,000 env steps on its CPU takes" in texts(at.warning)
    assert httpx.get(f"{dashboard_env}/api/jobs", timeout=10).json()["jobs"] == []  # nothing started yet
    ran_clean(at.button(key="cancel_start").click().run())
    assert not at.warning and httpx.get(f"{dashboard_env}/api/jobs", timeout=10).json()["jobs"] == []

    fill_form(at, FAST_OVERRIDES)
    (job,) = httpx.get(f"{dashboard_env}/api/jobs", timeout=10).json()["jobs"]
    fill_form(at, FAST_OVERRIDES)  # the same request again
    assert f"Job `{job['job_id']}`" in texts(at.warning) and "is the same request" in texts(at.warning)
    ran_clean(at.button(key="confirm_start").click().run())
    jobs = httpx.get(f"{dashboard_env}/api/jobs", timeout=10).json()["jobs"]
    assert len(jobs) == 2 and not at.warning
    for started in jobs:  # leave no job behind for the other tests
        httpx.post(f"{dashboard_env}/api/jobs/{started['job_id']}/cancel", timeout=10)
        wait_job(dashboard_env, started["job_id"], lambda j: j["state"] in ("finished", "failed", "cancelled"))
        httpx.delete(f"{dashboard_env}/api/jobs/{started['job_id']}", params={"delete_run": "true"}, timeout=10)
