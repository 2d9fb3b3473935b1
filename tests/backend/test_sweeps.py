"""Sweeps through the `local` executor: real `twm train` subprocesses (debug preset, 110 env steps), real SQLite.

The Ray executor runs the same contract in test_sweeps_ray.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import FAST_TRAIN, REPO_ROOT

from backend.jobs import InvalidJob
from backend.main import create_app
from backend.settings import Settings
from backend.sweeps import _sweep_state, parse_games, parse_seeds
from twm_core.envs.games import ATARI100K_GAMES

SWEEP_TIMEOUT = 240.0


def sweep_body(**changes: Any) -> dict[str, Any]:
    return {"games": ["Catch", "Pong"], "seeds": "0-1", "preset": "debug", "steps": 110, "device": "cpu",
            "overrides": FAST_TRAIN, **changes}


def wait_sweep(client: TestClient, sweep_id: str, until: Callable[[dict[str, Any]], bool],
               timeout: float = SWEEP_TIMEOUT) -> dict[str, Any]:
    """Poll GET /api/sweeps/{sweep_id} until `until(sweep)`; fail with the last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/sweeps/{sweep_id}")
        assert response.status_code == 200, response.text
        sweep = response.json()
        if until(sweep):
            return sweep
        if time.monotonic() > deadline:
            pytest.fail(f"sweep {sweep_id} not done after {timeout:.0f}s: {json.dumps(sweep)[:3000]}")
        time.sleep(0.3)


def sweep_ended(sweep: dict[str, Any]) -> bool:
    return sweep["state"] in ("finished", "failed", "cancelled")


# ---------------------------------------------------------------------------------------------- parsing
def test_parse_games_expands_atari100k_resolves_names_and_dedupes() -> None:
    assert parse_games("atari100k") == list(ATARI100K_GAMES)
    assert parse_games("pong, Catch,PONG") == ["Pong", "Catch"]
    assert parse_games(["Boxing", "atari100k"])[:2] == ["Boxing", "Alien"]
    for bad in ("", "NoSuchGame", " , "):
        with pytest.raises(InvalidJob):
            parse_games(bad)


def test_parse_seeds_ranges_lists_and_errors() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-2,7, 1") == [0, 1, 2, 7]
    assert parse_seeds([3, 3, 1]) == [3, 1]
    for bad in ("4-2", "a-b", "-1", "", "0-100000", [-1], [True]):
        with pytest.raises(InvalidJob):
            parse_seeds(bad)  # type: ignore[arg-type]


def test_sweep_state_from_job_counts() -> None:
    def counts(**n: int) -> dict[str, int]:
        return {"queued": 0, "running": 0, "finished": 0, "failed": 0, "cancelled": 0, **n}

    assert _sweep_state(counts(queued=4), None) == "queued"
    assert _sweep_state(counts(queued=2, finished=2), None) == "running"
    assert _sweep_state(counts(finished=4), None) == "finished"
    assert _sweep_state(counts(finished=3, failed=1), None) == "failed"
    assert _sweep_state(counts(finished=3, cancelled=1), None) == "cancelled"
    assert _sweep_state(counts(finished=4), 123.0) == "cancelled"


# ---------------------------------------------------------------------------------------------- API
def test_bad_sweeps_are_4xx_and_create_nothing(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as client:
        for body in (sweep_body(games=["NoSuchGame"]), sweep_body(seeds="x"), sweep_body(max_retries=11),
                     sweep_body(preset="nope"), sweep_body(overrides={"dyn.nope": 1}), sweep_body(device="tpu"),
                     sweep_body(games=[]), sweep_body(seeds="0-5000", games="atari100k"), {"games": "Pong", "x": 1}):
            response = client.post("/api/sweeps", json=body)
            assert response.status_code == 422, (body, response.text)
            assert isinstance(response.json()["detail"], str | list)
        assert client.get("/api/sweeps").json() == {"sweeps": []}
        assert client.get("/api/jobs").json() == {"jobs": []}
        for method, path in [("get", "/api/sweeps/nope"), ("post", "/api/sweeps/nope/cancel"),
                             ("get", "/api/sweeps/nope/report"), ("get", "/api/report?runs=nope"),
                             ("get", "/api/report?runs=../etc")]:
            assert getattr(client, method)(path).status_code == 404, path
        assert client.get("/api/report").status_code == 422
        assert client.get("/api/executor").json()["kind"] == "local"


def test_local_sweep_runs_every_game_and_seed_then_reports(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_concurrent_jobs=2))) as client:
        created = client.post("/api/sweeps", json=sweep_body(name="two by two"))
        assert created.status_code == 201, created.text
        sweep = created.json()
        assert sweep["name"] == "two by two" and sweep["executor"] == "local"
        assert [(job["game"], job["seed"]) for job in sweep["jobs"]] == [("Catch", 0), ("Catch", 1), ("Pong", 0),
                                                                          ("Pong", 1)]
        assert sweep["counts"]["running"] <= 2
        assert all(job["sweep_id"] == sweep["sweep_id"] and job["max_retries"] == 1 for job in sweep["jobs"])
        early = client.get(f"/api/sweeps/{sweep['sweep_id']}/report")
        assert early.status_code == 409 and "final evaluation" in early.json()["detail"]

        done = wait_sweep(client, sweep["sweep_id"], sweep_ended)
        assert done["state"] == "finished", done
        assert done["counts"]["finished"] == 4 and done["progress"] == 1.0
        assert [s["sweep_id"] for s in client.get("/api/sweeps").json()["sweeps"]] == [sweep["sweep_id"]]

        report = client.get(f"/api/sweeps/{sweep['sweep_id']}/report?reps=200").json()
        games = {entry["game"]: entry for entry in report["games"]}
        assert set(games) == {"Catch", "Pong"} and report["meta"]["num_runs"] == 4
        assert games["Catch"]["paper"] is None and games["Pong"]["paper"]["TWM"] == pytest.approx(18.8)
        pong_scores = [run["score"] for run in games["Pong"]["runs"]]
        assert games["Pong"]["mean_score"] == pytest.approx(sum(pong_scores) / 2)
        assert report["aggregates"]["ours"]["mean"]["value"] == pytest.approx(games["Pong"]["hns"])
        by_ids = client.get("/api/report", params={"runs": ",".join(j["run_id"] for j in done["jobs"]), "reps": 200})
        assert by_ids.status_code == 200 and by_ids.json()["games"] == report["games"]

        assert client.post(f"/api/sweeps/{sweep['sweep_id']}/cancel").status_code == 409  # all ended


def test_failed_run_is_retried_from_scratch_when_it_left_no_checkpoint(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    # An interpreter whose first attempt logs a metric row and dies before any checkpoint, and that works after: a
    # lost node. The retry must start the run afresh from the same config.json. (A fake first attempt: killing a
    # real trainer "before its first checkpoint" raced with a fast trainer's first checkpoint.)
    marker = tmp_path / "failed-once"
    flaky = tmp_path / "flaky-python"
    flaky.write_text(f"""#!/bin/sh
if [ -e {marker} ]; then exec {sys.executable} "$@"; fi
touch {marker}
run=""; prev=""
for arg in "$@"; do [ "$prev" = "--run-dir" ] && run="$arg"; prev="$arg"; done
printf '{{"step": 1}}\n' >> "$run/metrics.jsonl"
echo 'node lost' >&2; exit 3
""")
    flaky.chmod(0o755)
    settings = make_settings(python_executable=str(flaky))
    with TestClient(create_app(settings)) as client:
        sweep = client.post("/api/sweeps", json=sweep_body(games="Catch", seeds="0", max_retries=1)).json()
        done = wait_sweep(client, sweep["sweep_id"], sweep_ended)
        job = done["jobs"][0]
        assert done["state"] == "finished", done
        assert job["retries"] == 1 and job["attempt"] == 2
        aside = list((settings.runs_dir / ".failed").iterdir())
        assert [p.name for p in aside] == [f"{job['run_id']}-attempt1"]
        assert "node lost" in (aside[0] / "train.log").read_text()
        run = settings.runs_dir / job["run_id"]
        assert (aside[0] / "config.json").read_bytes() == (run / "config.json").read_bytes()  # the same file
        assert [run["run_id"] for run in client.get("/api/runs").json()["runs"]] == [job["run_id"]]

        log = (settings.runs_dir / job["run_id"] / "train.log").read_text()
        assert "node lost" not in log and log.count("=== job") == 1  # the new directory has the retry's log only

        marker.unlink()  # fails again, and no retry is left: the sweep fails with the log tail in the error
        again = client.post("/api/sweeps", json=sweep_body(games="Catch", seeds="1", max_retries=0)).json()
        failed = wait_sweep(client, again["sweep_id"], sweep_ended)
        assert failed["state"] == "failed" and failed["counts"]["failed"] == 1
        assert "exit code 3" in failed["jobs"][0]["error"] and "node lost" in failed["jobs"][0]["error"]


def test_twm_sweep_cli_runs_locally_and_writes_the_report(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sets = [arg for key, value in FAST_TRAIN.items() for arg in ("--set", f"{key}={value}")]
    out = tmp_path / "report.md"
    done = subprocess.run(
        [sys.executable, "-m", "twm_core.cli", "sweep", "--games", "Catch", "--seeds", "0-1", "--preset", "debug",
         "--steps", "110", "--device", "cpu", "--runs-root", str(runs), "--max-concurrent", "2",
         "--executor", "local", "--out", str(out), *sets],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=SWEEP_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished" in done.stdout and "| Catch | 2 |" in done.stdout
    assert out.read_text().startswith("## Per-game scores")
    with TestClient(create_app(Settings(runs_dir=runs, device="cpu"))) as client:  # the dashboard sees it
        sweeps = client.get("/api/sweeps").json()["sweeps"]
        assert len(sweeps) == 1 and sweeps[0]["state"] == "finished" and sweeps[0]["counts"]["finished"] == 2

    bad = subprocess.run([sys.executable, "-m", "twm_core.cli", "sweep", "--games", "Catch", "--seeds", "x",
                          "--runs-root", str(runs)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "seeds" in bad.stderr and "Traceback" not in bad.stderr
