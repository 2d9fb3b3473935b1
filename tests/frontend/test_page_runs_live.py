"""The Runs page through `AppTest` against a real backend over run directories written here: a live run's stage
progress and ETAs, the game's reference scores, smoothing, a colour per run, and what one refresh asks of the
backend when chart groups are closed (every `BackendClient` call is recorded)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO_ROOT, backend_server
from streamlit.testing.v1 import AppTest

from frontend.api_client import BackendClient, get_client
from frontend.charts import RUN_PALETTE, ema
from frontend.widgets import format_duration
from twm_core.presets import make_config

PAGE = REPO_ROOT / "frontend" / "app_pages" / "runs.py"
SCORES = json.loads(resources.files("twm_core.data").joinpath("atari100k-scores.json").read_text())["games"]
NOW = time.time()
STAGE = {"stage": "pretrain/dyn", "stage_done": 1200, "stage_total": 5000, "stage_unit": "frames",
         "stage_started_at": NOW - 300, "eta_s": 180, "run_eta_s": 720}
# Every chart group and the metric key prefixes it asks for.
GROUP_PREFIXES = {"runs_group_world_model": "wm/", "runs_group_actor_critic": "ac/",
                  "runs_group_performance": "perf/"}
ALL_GROUPS = ["runs_group_scores", *GROUP_PREFIXES, "runs_group_other_metrics"]


def metric_rows(offset: float) -> list[dict[str, Any]]:
    """Rows of every group's keys (noisy, so smoothing changes them), one every 20 env steps; `ac/critic_loss` only
    with an offset (a chart where the second run alone has data)."""
    return [{"step": step, "time": NOW + step, "wm/dec_loss": offset + 1 / (1 + step) + 0.1 * (step % 3),
             "ac/actor_loss": offset + 0.01 * step, "perf/ram_mb": 100.0 + offset + step % 7,
             "env/episode_return": -21.0 + offset + step / 100, "replay/visit_entropy": 0.5,
             **({"ac/critic_loss": offset} if offset else {})}
            for step in range(0, 400, 20)]


def make_run(root: Path, run_id: str, game: str, status: dict[str, Any], age: float, offset: float = 0.0) -> None:
    run = root / run_id
    run.mkdir()
    (run / "config.json").write_text(json.dumps(make_config("debug", game, seed=0).to_dict()))
    (run / "status.json").write_text(json.dumps({"updated": NOW, **status}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metric_rows(offset)))
    for path in run.iterdir():  # newest first in the listing: the smallest age
        os.utime(path, (NOW - age, NOW - age))
    os.utime(run / "config.json", (NOW - age, NOW - age))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("runs-page")
    live = {"state": "pretrain", "pid": os.getpid(), "step": 200, "total_steps": 400}  # this process: not stale
    make_run(root, "pong-live", "Pong", {**live, **STAGE}, age=0)
    make_run(root, "pong-unknown-eta", "Pong", {**live, "stage": "train", "stage_done": 300, "stage_total": None,
                                                "stage_unit": "env steps", "eta_s": None, "run_eta_s": None}, age=10)
    make_run(root, "pong-ended", "Pong", {"state": "finished", "step": 400, "total_steps": 400, **STAGE}, age=20,
             offset=1.0)
    make_run(root, "catch-ended", "Catch", {"state": "finished", "step": 400, "total_steps": 400}, age=30)
    with backend_server(root) as url:
        yield url


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Point the dashboard at `backend`; yields the (path, params) of every backend call the page makes."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    request = BackendClient._request

    def spy(self: BackendClient, method: str, path: str, **kwargs: Any) -> Any:
        recorded.append((path, dict(kwargs.get("params") or {})))
        return request(self, method, path, **kwargs)

    monkeypatch.setattr(BackendClient, "_request", spy)
    monkeypatch.setenv("TWM_BACKEND_URL", backend)
    get_client.clear()
    yield recorded
    get_client.clear()


def open_page(runs: list[str], closed: tuple[str, ...] = ()) -> AppTest:
    """The page on `runs`, with the chart groups `closed` (their expanders' state) closed."""
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["run_pick"] = runs
    for group in closed:
        at.session_state[group] = False
    return ran(at)


def ran(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: AppTest) -> dict[str, dict[str, Any]]:
    specs = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.caption, *at.warning, *at.info])


# ------------------------------------------------------------------------------------------------ stage and ETA
def test_a_live_run_shows_its_stage_progress_and_both_etas(calls: list[Any]) -> None:
    before = time.time()
    at = open_page(["pong-live"])
    # the time in the stage as the page saw it, between the clock before and after its run (a loaded machine)
    elapsed = {format_duration(t - STAGE["stage_started_at"]) for t in (before, time.time())}
    bars = {bar.text: bar.value for bar in at.progress}
    assert bars.pop("run") == 50  # run 200/400
    (label, value), = bars.items()
    assert value == 24 and label in {f"stage `pretrain/dyn` · 1,200 / 5,000 frames · {e} in" for e in elapsed}
    assert "ETA 3 min (stage) · 12 min (run)" in texts(at)


def test_unknown_totals_and_etas_show_no_bar_and_no_eta(calls: list[Any]) -> None:
    at = open_page(["pong-unknown-eta"])
    assert [bar.text for bar in at.progress] == ["run"]  # the run's own bar only
    assert "stage `train` · 300 env steps so far" in texts(at)
    assert "ETA" not in texts(at)


def test_an_ended_run_shows_no_stage(calls: list[Any]) -> None:
    at = open_page(["pong-ended"])
    assert "stage `" not in texts(at) and "ETA" not in texts(at)
    assert [bar.text for bar in at.progress] == ["run"]


# ------------------------------------------------------------------------------------------------ baselines
def test_pong_scores_are_drawn_against_random_human_and_the_paper(calls: list[Any]) -> None:
    at = open_page(["pong-live"])
    shapes = figures(at)["Scores"]["layout"]["shapes"]
    pong = SCORES["Pong"]
    assert [shape["y0"] for shape in shapes] == [pong["random"], pong["human"], pong["TWM"]]
    assert "Pong reference scores (TWM paper, Table 1): random -20.7, human 14.6, TWM 18.8." in texts(at)


def test_catch_has_no_baseline_lines_and_says_why(calls: list[Any]) -> None:
    at = open_page(["catch-ended"])
    assert not figures(at)["Scores"]["layout"].get("shapes")
    assert "Catch has no reference scores (only the Atari 100k games do): no baseline lines." in texts(at)
    at = open_page(["pong-live", "catch-ended"])
    assert not figures(at)["Scores"]["layout"].get("shapes")
    assert "The picked runs play Catch, Pong: reference scores are drawn for one game only." in texts(at)


# ------------------------------------------------------------------------------------------------ smoothing
def test_curves_are_smoothed_with_the_raw_curve_faint_behind(calls: list[Any]) -> None:
    at = open_page(["pong-live"])
    assert at.slider(key="runs_smoothing").value == 0.6
    raw, smoothed = figures(at)["wm/dec_loss"]["data"]
    expected = [row["wm/dec_loss"] for row in metric_rows(0.0)]
    assert (raw["name"], smoothed["name"]) == ("wm/dec_loss (raw)", "wm/dec_loss")
    assert raw["y"] == pytest.approx(expected) and raw["opacity"] < 0.5
    assert smoothed["y"] == pytest.approx(ema(expected, 0.6))
    at.slider(key="runs_smoothing").set_value(0.0)
    ran(at)
    (only,) = figures(at)["wm/dec_loss"]["data"]
    assert only["y"] == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------ colours
def test_each_run_has_one_colour_across_every_chart(calls: list[Any]) -> None:
    at = open_page(["pong-live", "pong-ended"])
    seen: dict[str, set[str]] = {"pong-live": set(), "pong-ended": set()}
    for figure in figures(at).values():
        for trace in figure["data"]:
            run_id = next(run for run in seen if trace["name"].startswith(run))
            seen[run_id].add(trace.get("line", {}).get("color") or trace["marker"]["color"])
    assert seen == {"pong-live": {RUN_PALETTE[0]}, "pong-ended": {RUN_PALETTE[1]}}
    (raw, smoothed) = figures(at)["ac/critic_loss"]["data"]  # only the second run has it: still its colour
    assert raw["name"] == "pong-ended (raw)" and smoothed["line"]["color"] == RUN_PALETTE[1]


# ------------------------------------------------------------------------------------------------ refresh cost
def refresh_calls(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The calls of the live fragment: everything after the page's own `GET /api/runs` (the second one)."""
    starts = [index for index, (path, _) in enumerate(calls) if path == "/api/runs"]
    assert len(starts) == 2, calls
    return calls[starts[1]:]


def requested_keys(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [key for path, params in calls if path.endswith("/metrics") for key in params["keys"].split(",")]


def test_a_refresh_fetches_and_draws_only_the_open_groups(calls: list[tuple[str, dict[str, Any]]]) -> None:
    picked = ["pong-live", "pong-unknown-eta"]
    at = open_page(picked)  # every group open (the default)
    tick = refresh_calls(calls)
    assert [path for path, _ in tick] == ["/api/runs", *(f"/api/runs/{run}/metrics" for run in picked)]
    assert all(any(key.startswith(prefix) for key in requested_keys(tick)) for prefix in GROUP_PREFIXES.values())
    assert {"wm/dec_loss", "ac/actor_loss", "perf/ram_mb"} <= set(figures(at))

    calls.clear()
    at = open_page(picked, closed=tuple(GROUP_PREFIXES))  # only Scores and Other metrics open
    tick = refresh_calls(calls)
    assert [path for path, _ in tick] == ["/api/runs", *(f"/api/runs/{run}/metrics" for run in picked)]
    assert not [key for key in requested_keys(tick) if key.startswith(tuple(GROUP_PREFIXES.values()))]
    assert set(figures(at)) == {"Scores"}
    assert not any("/baselines" in path for path, _ in calls)  # the reference scores come from the cache

    calls.clear()
    at = open_page(picked, closed=tuple(ALL_GROUPS))
    assert [path for path, _ in refresh_calls(calls)] == ["/api/runs"]  # status lines only
    assert not figures(at) and [e.label for e in at.expander] == ["Scores", "World model", "Actor-critic",
                                                                  "Performance", "Other metrics"]


def test_closing_other_metrics_keeps_the_keys_chosen_there(calls: list[Any]) -> None:
    at = open_page(["pong-live"])
    at.multiselect(key="extra_keys").set_value(["replay/visit_entropy"])
    ran(at)
    assert "replay/visit_entropy" in figures(at)
    at.session_state["runs_group_other_metrics"] = False
    calls.clear()
    ran(at)
    assert "replay/visit_entropy" not in figures(at)
    assert "replay/visit_entropy" not in requested_keys(refresh_calls(calls))  # closed: not fetched either
    at.session_state["runs_group_other_metrics"] = True
    ran(at)
    assert at.multiselect(key="extra_keys").value == ["replay/visit_entropy"]
    assert "replay/visit_entropy" in figures(at)
