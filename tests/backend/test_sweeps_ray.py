"""Sweeps through the `ray` executor, on a real local Ray cluster that this module starts (`ray start --head`,
2 CPUs) and stops (only it: other Ray instances on the machine live on). Same contract as the local executor: runs
finish, reports are produced, a backend restart reattaches, and cancel reaches the training processes through their
actors."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import free_port, stop_process_group
from test_sweeps import sweep_body, sweep_ended, wait_sweep

from backend.main import create_app
from backend.settings import Settings
from twm_core.checkpoint import latest_checkpoint
from twm_core.run_dir import RunDir, pid_alive, read_status

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A private head node with 2 CPUs, stopped at the end without touching any other Ray instance of this machine.

    `ray stop` would end every Ray process here (it takes no address), so the head runs in the foreground
    (`--block`) in its own process group, with its own temp dir and its own free ports: the end kills that group,
    then any straggler whose command line names our temp dir.
    """
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    temp_dir = Path(tempfile.mkdtemp(prefix="twm-ray-"))  # short: Ray's socket paths must stay under 108 bytes
    port = free_port()
    # Every port Ray would otherwise take at a fixed default (the client server is not started: no ray[client]).
    ports = {flag: free_port() for flag in ("--node-manager-port",
                                            "--object-manager-port", "--dashboard-agent-listen-port",
                                            "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
                                            "--metrics-export-port")}
    command = [ray_cli, "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp_dir}", "--num-cpus=2",
               "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory=100000000",
               *(f"{flag}={value}" for flag, value in ports.items())]
    with (temp_dir / "ray-start.log").open("wb") as log:
        head = subprocess.Popen(command, env=RAY_ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_head(head, port, temp_dir / "ray-start.log")
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        stop_process_group(head, timeout=60)
        for pid in pids_mentioning(str(temp_dir)):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_head(head: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 120.0) -> None:
    """Until the head's GCS port accepts connections; fail with the `ray start` log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(2.0)  # the GCS answers before the raylet has registered the node
                return
        time.sleep(0.5)
    pytest.fail(f"the Ray head did not listen on {port} within {timeout:.0f}s")


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (our temp dir: only the head's own processes name it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with suppress(OSError):
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
    return pids


def named_actors() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("twm-")]


def test_ray_sweep_finishes_reattaches_after_restart_and_reports(
    make_settings: Callable[..., Settings], ray_address: str,
) -> None:
    settings = make_settings(executor="ray", ray_address=ray_address)
    with TestClient(create_app(settings)) as client:
        executor = client.get("/api/executor").json()
        assert executor["kind"] == "ray" and executor["cpus"] == 2.0 and executor["max_concurrent_jobs"] == 2
        assert client.post("/api/sweeps", json=sweep_body(device="cuda")).status_code == 422  # no GPU in the cluster
        assert client.post("/api/sweeps", json=sweep_body(device="cuda:0")).status_code == 422
        created = client.post("/api/sweeps", json=sweep_body())
        assert created.status_code == 201, created.text
        sweep = created.json()
        assert sweep["executor"] == "ray" and len(sweep["jobs"]) == 4
        wait_sweep(client, sweep["sweep_id"], lambda s: s["counts"]["running"] == 2)
    # A new backend on the same database finds the running actors by name and follows them to the end.
    with TestClient(create_app(make_settings(executor="ray", ray_address=ray_address))) as client:
        done = wait_sweep(client, sweep["sweep_id"], sweep_ended)
        assert done["state"] == "finished", done
        assert all(job["exit_code"] == 0 and job["pid"] is not None for job in done["jobs"])
        report = client.get(f"/api/sweeps/{sweep['sweep_id']}/report?reps=200")
        assert report.status_code == 200, report.text
        assert {g["game"] for g in report.json()["games"]} == {"Catch", "Pong"}
        assert report.json()["meta"]["num_runs"] == 4
    assert named_actors() == []  # every actor was released once its run ended


def test_ray_sweep_cancel_stops_the_training_processes(
    make_settings: Callable[..., Settings], ray_address: str,
) -> None:
    settings = make_settings(executor="ray", ray_address=ray_address, cancel_grace_seconds=60)
    long_runs = sweep_body(games="Catch", seeds="0-2", steps=2000)
    with TestClient(create_app(settings)) as client:
        created = client.post("/api/sweeps", json=long_runs)
        assert created.status_code == 201, created.text
        sweep = created.json()
        # Past pretraining, so each run has a checkpoint to show that SIGTERM reached the trainer.
        running = wait_sweep(client, sweep["sweep_id"], lambda s: s["counts"]["running"] == 2 and all(
            job["progress"]["phase"] == "train" for job in s["jobs"] if job["state"] == "running"))
        assert running["counts"]["queued"] == 1  # 2 CPUs, 1 per job: the third waits in our queue
        pids = [job["pid"] for job in running["jobs"] if job["state"] == "running"]
        assert all(pid is not None and pid_alive(pid) for pid in pids)

        cancelled = client.post(f"/api/sweeps/{sweep['sweep_id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        done = wait_sweep(client, sweep["sweep_id"], sweep_ended)
        assert done["state"] == "cancelled" and done["counts"]["cancelled"] == 3, done
        assert not any(pid_alive(pid) for pid in pids)
        for job in done["jobs"]:
            assert job["error"] is None  # SIGTERM sufficed: no SIGKILL
            if job["started_at"] is not None:  # the trainer checkpointed on SIGTERM and said so
                assert latest_checkpoint(RunDir(job["run_dir"])) is not None
                assert read_status(RunDir(job["run_dir"]))["state"] == "cancelled"
        assert client.post(f"/api/sweeps/{sweep['sweep_id']}/cancel").status_code == 409
        assert named_actors() == []

        # Resume through Ray: a new actor continues the run from its checkpoint (`twm train --run-dir`, as the first).
        job = next(job for job in done["jobs"] if job["started_at"] is not None)
        resumed = client.post(f"/api/jobs/{job['job_id']}/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["attempt"] == 2
        again = wait_job_running(client, job["job_id"])
        assert named_actors() == [f"twm-{job['job_id']}-a2"]
        log = (Path(job["run_dir"]) / "train.log").read_text()
        # the new actor's command line, logged by the worker: the same as the first attempt's
        assert log.count(f"train --run-dir {job['run_dir']} --no-progress") == 2, log
        assert again["progress"]["step"] >= job["progress"]["step"]  # continued, not restarted
        assert client.post(f"/api/jobs/{job['job_id']}/cancel").status_code == 200
        final = wait_sweep(client, sweep["sweep_id"], sweep_ended)
        assert final["state"] == "cancelled"
    assert named_actors() == []


def wait_job_running(client: TestClient, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the job until its trainer reports from the new attempt (status.json state `training`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"]["run_state"] == "training":
            return job
        time.sleep(0.3)
    pytest.fail(f"job {job_id} did not resume training within {timeout:.0f}s: {job}")
