"""Contract tests for `/api/jobs`: real `twm train` subprocesses (debug preset on Catch), real SQLite.

Each job trains 110 env steps (100 of random prefill) in about 10 s on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import FAST_TRAIN as FAST

from backend.main import create_app
from backend.settings import Settings
from twm_core.run_dir import RunDir, pid_alive, read_status

JOB_TIMEOUT = 90.0


def job_body(**changes: Any) -> dict[str, Any]:
    return {"game": "Catch", "preset": "debug", "seed": 0, "steps": 110, "device": "cpu", "overrides": FAST,
            **changes}


def wait_job(client: TestClient, job_id: str, until: Callable[[dict[str, Any]], bool],
             timeout: float = JOB_TIMEOUT, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Poll GET /api/jobs/{job_id} until `until(job)`; fail with the last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if seen is not None:
            seen.append(job)
        if until(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} not done waiting after {timeout:.0f}s: {job}")
        time.sleep(0.2)


def ended(job: dict[str, Any]) -> bool:
    return job["state"] in ("finished", "failed", "cancelled")


def reporting(job: dict[str, Any]) -> bool:
    """The trainer has written status.json (its signal handlers are installed by then)."""
    return job["state"] == "running" and job["progress"]["run_state"] not in (None, "queued")


def _lookup(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return config


def test_bad_requests_are_422_and_unknown_jobs_404(make_settings: Callable[..., Settings]) -> None:
    import torch

    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        cases = [
            (job_body(game="NoSuchGame"), ["NoSuchGame", "Pong", "Catch"]),
            (job_body(preset="huge"), ["preset", "huge"]),
            (job_body(overrides={"dyn.no_such_key": 1}), ["dyn.no_such_key"]),
            (job_body(overrides={"dyn.num_heads": 0}), ["dyn.num_heads"]),
            (job_body(overrides={"train.log_every": "often"}), ["train.log_every"]),
            (job_body(steps=5000), ["replay.capacity"]),  # more steps than the debug replay holds
            (job_body(device="tpu"), ["device"]),
        ]
        if not torch.cuda.is_available():
            cases.append((job_body(device="cuda"), ["cuda", "not available"]))
        for body, words in cases:
            response = client.post("/api/jobs", json=body)
            assert response.status_code == 422, (body, response.text)
            detail = response.json()["detail"]
            assert all(word in detail for word in words), (words, detail)
        pydantic_error = client.post("/api/jobs", json=job_body(steps=0))
        assert pydantic_error.status_code == 422 and "steps" in str(pydantic_error.json()["detail"])

        assert client.get("/api/jobs").json() == {"jobs": []}
        assert [p.name for p in settings.runs_dir.iterdir() if p.is_dir()] == [], "no run dir for a rejected job"
        for method, path in [("get", "/api/jobs/nope"), ("post", "/api/jobs/nope/cancel"),
                             ("post", "/api/jobs/nope/resume")]:
            response = client.request(method.upper(), path)
            assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_job_finishes_and_limit_queues_the_next(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_concurrent_jobs=1))) as client:
        first = client.post("/api/jobs", json=job_body())
        assert first.status_code == 201, first.text
        a = first.json()
        assert a["state"] == "running" and a["pid"] and a["attempt"] == 1 and a["progress"]["total_steps"] == 110
        b = client.post("/api/jobs", json=job_body(seed=1)).json()
        assert b["state"] == "queued" and b["pid"] is None and b["run_id"] != a["run_id"]
        # A job carries its config in its run directory from the moment it is queued, not on a command line.
        queued_run = RunDir(b["run_dir"])
        config = json.loads(queued_run.config_path.read_text())
        assert config["seed"] == 1 and config["train"]["total_steps"] == 110 and config["env"]["game"] == "Catch"
        assert all(_lookup(config, key) == value for key, value in FAST.items()), config
        assert (read_status(queued_run) or {})["state"] == "queued"
        assert b["run_id"] in [run["run_id"] for run in client.get("/api/runs").json()["runs"]]

        seen: list[dict[str, Any]] = []
        a = wait_job(client, a["job_id"], ended, seen=seen)
        assert a["state"] == "finished", a
        assert a["exit_code"] == 0 and a["error"] is None and a["ended_at"] >= a["started_at"] >= a["created_at"]
        progress = {k: a["progress"][k] for k in ("step", "total_steps", "fraction", "phase", "run_state")}
        assert progress == {"step": 110, "total_steps": 110, "fraction": 1.0, "phase": "finished",
                            "run_state": "finished"}
        assert a["progress"]["eta_s"] == 0 and a["progress"]["run_eta_s"] == 0  # a finished run has nothing left
        steps = [job["progress"]["step"] for job in seen]
        assert steps == sorted(steps) and any(0 < s < 110 for s in steps), f"no progress reported: {steps}"
        run = RunDir(a["run_dir"])
        assert (run.path / "train.log").stat().st_size > 0 and list(run.ckpt_dir.glob("step_*.pt"))
        command = (run.path / "train.log").read_text().splitlines()[0]
        assert f"train --run-dir {run.path} --no-progress --device cpu" in command, command
        assert "--set" not in command and "--game" not in command and "--resume" not in command
        assert client.get(f"/api/jobs/{b['job_id']}").json()["state"] in ("queued", "running")

        b = wait_job(client, b["job_id"], lambda job: job["state"] != "queued", timeout=10)
        assert b["state"] == "running" and b["started_at"] >= a["ended_at"], (a, b)
        assert [job["job_id"] for job in client.get("/api/jobs").json()["jobs"]] == [b["job_id"], a["job_id"]]

        assert client.post(f"/api/jobs/{a['job_id']}/cancel").status_code == 409
        assert client.post(f"/api/jobs/{a['job_id']}/resume").status_code == 409
        assert client.post(f"/api/jobs/{b['job_id']}/resume").status_code == 409  # running
        assert client.post(f"/api/jobs/{b['job_id']}/cancel").status_code == 200
        b = wait_job(client, b["job_id"], ended, timeout=30)
        assert b["state"] == "cancelled", b


def test_queued_job_cancels_at_once(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_concurrent_jobs=1))) as client:
        a = client.post("/api/jobs", json=job_body()).json()
        b = client.post("/api/jobs", json=job_body(seed=1)).json()
        cancelled = client.post(f"/api/jobs/{b['job_id']}/cancel").json()
        assert cancelled["state"] == "cancelled" and cancelled["pid"] is None and cancelled["ended_at"]
        assert client.post(f"/api/jobs/{b['job_id']}/resume").status_code == 409  # no checkpoint
        client.post(f"/api/jobs/{a['job_id']}/cancel")
        assert wait_job(client, a["job_id"], ended, timeout=30)["state"] == "cancelled"


def test_cancel_checkpoints_and_resume_finishes(make_settings: Callable[..., Settings]) -> None:
    from twm_core.checkpoint import latest_checkpoint, load_checkpoint

    with TestClient(create_app(make_settings())) as client:
        job = client.post("/api/jobs", json=job_body()).json()
        run = RunDir(job["run_dir"])
        wait_job(client, job["job_id"], lambda j: ended(j) or latest_checkpoint(run) is not None)
        answer = client.post(f"/api/jobs/{job['job_id']}/cancel")
        assert answer.status_code == 200 and answer.json()["cancel_requested_at"] is not None, answer.text
        job = wait_job(client, job["job_id"], ended)
        assert job["state"] == "cancelled" and job["exit_code"] == 0, job  # the trainer's own graceful exit
        assert (read_status(run) or {})["state"] == "cancelled"
        latest = latest_checkpoint(run)
        assert latest is not None
        assert load_checkpoint(latest[1])["counters"]["phase"] in ("pretrain", "train")
        assert client.post(f"/api/jobs/{job['job_id']}/cancel").status_code == 409

        config = run.config_path.read_bytes()
        resumed = client.post(f"/api/jobs/{job['job_id']}/resume").json()
        assert resumed["attempt"] == 2 and resumed["state"] == "running" and resumed["run_id"] == job["run_id"]
        assert resumed["pid"] != job["pid"] and resumed["ended_at"] is None and resumed["cancel_requested_at"] is None
        done = wait_job(client, job["job_id"], ended)
        assert done["state"] == "finished" and done["progress"]["step"] == 110, done
        assert done["job_id"] == job["job_id"] and done["run_id"] == job["run_id"]
        assert len(client.get("/api/jobs").json()["jobs"]) == 1
        log = (run.path / "train.log").read_text()
        assert "attempt 2" in log and log.count(f"train --run-dir {run.path} --no-progress") == 2  # the same start
        assert run.config_path.read_bytes() == config  # the resumed attempt read the file, and left it as it was


def test_killed_job_fails_and_stuck_cancel_is_killed(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_concurrent_jobs=2, cancel_grace_seconds=0.5))) as client:
        killed = client.post("/api/jobs", json=job_body()).json()
        stuck = client.post("/api/jobs", json=job_body(seed=1)).json()
        killed, stuck = (wait_job(client, job["job_id"], lambda j: ended(j) or reporting(j)) for job in (killed, stuck))

        os.kill(killed["pid"], signal.SIGKILL)  # from outside the backend: an OOM killer, say
        killed = wait_job(client, killed["job_id"], ended, timeout=15)
        assert killed["state"] == "failed" and killed["exit_code"] == -signal.SIGKILL, killed
        assert "SIGKILL" in killed["error"] and "train.log" in killed["error"] and "attempt 1" in killed["error"]
        assert client.get("/api/health").status_code == 200
        assert (read_status(RunDir(killed["run_dir"])) or {})["state"] == "failed", "the backend settles status.json"

        os.kill(stuck["pid"], signal.SIGSTOP)  # a job that cannot honour SIGTERM
        assert client.post(f"/api/jobs/{stuck['job_id']}/cancel").status_code == 200
        stuck = wait_job(client, stuck["job_id"], ended, timeout=15)
        assert stuck["state"] == "cancelled" and stuck["exit_code"] == -signal.SIGKILL, stuck
        assert "SIGKILL" in stuck["error"]


def test_restart_reattaches_live_jobs_and_settles_dead_ones(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_concurrent_jobs=2)
    with TestClient(create_app(settings)) as client:
        live = client.post("/api/jobs", json=job_body()).json()
        dead = client.post("/api/jobs", json=job_body(seed=1)).json()
        for job in (live, dead):
            wait_job(client, job["job_id"], lambda j: ended(j) or reporting(j))
    # The backend is down; its jobs are not. One of them dies meanwhile.
    assert pid_alive(live["pid"]) and pid_alive(dead["pid"])
    os.kill(dead["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(dead["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)

    with TestClient(create_app(make_settings(max_concurrent_jobs=2))) as client:
        after = client.get(f"/api/jobs/{dead['job_id']}").json()
        assert after["state"] == "failed" and after["exit_code"] is None, after
        assert "exit code unknown" in after["error"]
        again = client.get(f"/api/jobs/{live['job_id']}").json()
        assert again["state"] == "running" and again["pid"] == live["pid"], again
        done = wait_job(client, live["job_id"], ended)
        assert done["state"] == "finished" and done["exit_code"] is None and done["progress"]["step"] == 110, done
