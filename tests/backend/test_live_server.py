"""The backend through a real uvicorn server on 127.0.0.1 with an API token, as `make run` serves it.

One scenario, in order: auth at the door; a real debug job on Catch followed over server-sent events to its `end`;
imagination (policy and given actions, against the real emulator) and attention on its checkpoint; then a second
job that outlives a backend restart and is found again, same pid and run, by the new server on the same database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import free_port, running_server

from frontend.api_client import BackendClient, BackendError
from twm_core.run_dir import pid_alive

TOKEN = "live-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = {"game": "Catch", "preset": "debug", "seed": 0, "steps": 130, "device": "cpu",
       "overrides": {"replay.prefill": 100, "train.pretrain_budget": 2000, "train.eval_episodes": 0,
                     "train.final_eval_episodes": 0, "train.checkpoint_every": 100}}
TIMEOUT = 90.0

Server = Callable[[], Any]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    """The backend's runs dir; at teardown every job process still alive is SIGKILLed (jobs outlive servers)."""
    root = tmp_path / "runs"
    yield root
    db = root / "jobs.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            pids = [pid for (pid,) in conn.execute("SELECT pid FROM jobs WHERE pid IS NOT NULL")]
        for pid in pids:
            if pid_alive(pid):
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def serve(runs_dir: Path) -> tuple[str, Any]:
    """(base URL, context manager) of a uvicorn backend on a free 127.0.0.1 port over `runs_dir`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port)]
    env = {"TWM_RUNS_DIR": str(runs_dir), "TWM_API_TOKEN": TOKEN, "TWM_DEVICE": "cpu", "TWM_JOB_POLL_SECONDS": "0.2",
           "TWM_EVENTS_POLL_INTERVAL": "0.2", "OMP_NUM_THREADS": "1"}
    return url, running_server(args, f"{url}/api/health", env=env)


def call(http: httpx.Client, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    return response.json()


def wait_for(http: httpx.Client, path: str, until: Callable[[httpx.Response], bool]) -> httpx.Response:
    deadline = time.monotonic() + TIMEOUT
    while not until(response := http.get(path)):
        assert time.monotonic() < deadline, f"{path} not ready after {TIMEOUT:.0f}s: {response.text[:500]}"
        time.sleep(0.2)
    return response


def sse_events(http: httpx.Client, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a server-sent event stream to its `end` event: [(event, data), ...]."""
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "message", []
    with http.stream("GET", path, timeout=httpx.Timeout(10.0, read=TIMEOUT)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].strip())
            elif line == "" and data:  # a blank line dispatches the event
                events.append((name, json.loads("\n".join(data))))
                if name == "end":
                    break
                name, data = "message", []
    return events


def test_live_server_auth_job_events_inspect_and_restart(runs_dir: Path) -> None:
    url, server = serve(runs_dir)
    with server, httpx.Client(base_url=url, headers=AUTH, timeout=60.0) as http:
        # ---- the door: health is open, everything else wants the token (the dashboard client sends it)
        assert httpx.get(f"{url}/api/health").json()["status"] == "ok"
        assert httpx.get(f"{url}/api/jobs").status_code == 401
        assert httpx.get(f"{url}/api/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert BackendClient(url, token=TOKEN).jobs() == []
        with pytest.raises(BackendError) as refused:
            BackendClient(url).jobs()
        assert refused.value.status_code == 401

        # ---- a real job, followed live over SSE to its end
        job = call(http, "POST", "/api/jobs", 201, json=JOB)
        run_id = job["run_id"]
        wait_for(http, f"/api/runs/{run_id}", lambda r: r.status_code == 200)  # config.json written by the trainer
        events = sse_events(http, f"/api/runs/{run_id}/events")
        metrics = [data for name, data in events if name == "metrics"]
        assert metrics and all("step" in row for row in metrics)
        assert [s for _, s in events if _ == "status"], "status changes are streamed"
        assert events[-1][0] == "end" and events[-1][1]["state"] == "finished", events[-3:]
        assert events[-1][1]["last_step"] == metrics[-1]["step"]
        done = wait_for(http, f"/api/jobs/{job['job_id']}", lambda r: r.json()["state"] != "running").json()
        assert done["state"] == "finished" and done["exit_code"] == 0, done

        # ---- imagination with the policy, then with given actions; the real emulator alongside
        horizon = 5
        policy = call(http, "POST", f"/api/runs/{run_id}/imagine",
                      json={"seed": 1, "horizon": horizon, "compare_real": True})
        assert policy["policy"] is True and len(policy["actions"]) == horizon
        num_actions = len(policy["action_meanings"])
        given = [t % num_actions for t in range(horizon)]
        scripted = call(http, "POST", f"/api/runs/{run_id}/imagine",
                        json={"seed": 1, "horizon": horizon, "actions": given, "compare_real": True})
        assert scripted["policy"] is False and scripted["actions"] == given
        for body in (policy, scripted):
            # frames: the start's reconstruction + one per step; the real rollout likewise starts at the start frame
            assert len(body["frames"]) == horizon + 1 == len(body["latents"])
            real = body["real"]
            assert len(real["frames"]) == len(body["frames"]) == len(real["frame_diffs"])
            assert len(real["rewards"]) == len(real["dones"]) == horizon
            assert real["frames"][0] == body["start_frame"]

        # ---- attention of the action token at an imagined step
        attention = call(http, "POST", f"/api/runs/{run_id}/attention",
                         json={"seed": 1, "query_step": 2, "layer": 0, "actions": given})
        labels = attention["labels"]
        assert [label["index"] for label in labels] == list(range(labels[0]["index"], labels[0]["index"] + len(labels)))
        assert [(label["modality"], label["relative_step"]) for label in labels[-2:]] == [("z", 0), ("a", 0)]
        assert len(attention["weights"]) == attention["num_layers"]
        for layer_rows, mean_row in zip(attention["weights"], attention["head_mean"], strict=True):
            assert len(layer_rows) == attention["num_heads"] and len(mean_row) == len(labels)
            for row in [*layer_rows, mean_row]:
                assert len(row) == len(labels) and sum(row) == pytest.approx(1.0, abs=1e-4)
        matrix = attention["layer_matrix"]
        assert len(matrix) == attention["num_heads"] and all(len(q) == len(attention["query_labels"]) for q in matrix)
        assert all(sum(row) == pytest.approx(1.0, abs=1e-4) for head in matrix for row in head)

        # ---- a second job, running when the backend goes away
        second = call(http, "POST", "/api/jobs", 201, json={**JOB, "seed": 1})
        running = wait_for(http, f"/api/jobs/{second['job_id']}", lambda r: r.json()["pid"] is not None).json()
        assert running["state"] == "running", running
    assert pid_alive(running["pid"]), "a job outlives the backend that started it"

    url, server = serve(runs_dir)
    with server, httpx.Client(base_url=url, headers=AUTH, timeout=60.0) as http:
        found = call(http, "GET", f"/api/jobs/{second['job_id']}")
        assert found["state"] in ("running", "finished"), found
        assert (found["pid"], found["run_id"]) == (running["pid"], running["run_id"])
        assert {j["job_id"] for j in call(http, "GET", "/api/jobs")["jobs"]} == {job["job_id"], second["job_id"]}
        # The new server watches the reattached job to its end (no exit code: it is not the new server's child).
        ended = wait_for(http, f"/api/jobs/{second['job_id']}", lambda r: r.json()["state"] != "running").json()
        assert ended["state"] == "finished" and ended["pid"] == running["pid"], ended
