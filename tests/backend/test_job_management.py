"""Managing jobs and runs: queue places, resumable jobs, deleting a job and deleting a run (real trainers)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from test_jobs import ended, job_body, reporting, wait_job

from backend.main import create_app
from backend.settings import Settings
from twm_core.launch import prepare_run
from twm_core.presets import make_config
from twm_core.run_dir import RunDir, write_status


def test_queue_places_resumable_and_deleting_jobs_and_runs(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_concurrent_jobs=1)
    with TestClient(create_app(settings)) as client:
        first = client.post("/api/jobs", json=job_body()).json()
        second = client.post("/api/jobs", json=job_body(seed=1)).json()
        third = client.post("/api/jobs", json=job_body(seed=2)).json()
        assert first["queue_position"] is None and first["waiting_for"] is None
        assert (second["queue_position"], third["queue_position"]) == (1, 2)
        assert "1 of 1 job slot(s) busy" in second["waiting_for"]
        assert client.delete(f"/api/jobs/{first['job_id']}").status_code == 409  # running
        assert client.delete(f"/api/runs/{first['run_id']}").status_code == 409  # its job has not ended
        assert client.post(f"/api/jobs/{third['job_id']}/cancel").json()["resumable"] is False  # no checkpoint

        first = wait_job(client, first["job_id"], lambda j: ended(j) or reporting(j))
        client.post(f"/api/jobs/{first['job_id']}/cancel")
        first = wait_job(client, first["job_id"], ended)
        assert first["state"] == "cancelled" and first["resumable"] is True, first
        second = wait_job(client, second["job_id"], lambda j: j["state"] != "queued", timeout=30)
        assert second["queue_position"] is None

        # Deleting the job keeps its run; deleting with its run removes the directory, in one rename.
        assert client.delete(f"/api/jobs/{third['job_id']}").status_code == 204
        assert client.get(f"/api/jobs/{third['job_id']}").status_code == 404
        assert client.get(f"/api/runs/{third['run_id']}").status_code == 200
        assert client.delete(f"/api/runs/{third['run_id']}").status_code == 204
        assert client.get(f"/api/runs/{third['run_id']}").status_code == 404
        assert client.delete(f"/api/jobs/{first['job_id']}", params={"delete_run": "true"}).status_code == 204
        assert not Path(first["run_dir"]).exists() and client.get(f"/api/runs/{first['run_id']}").status_code == 404
        assert list((settings.runs_dir / ".trash").iterdir()) == []
        assert client.delete("/api/runs/no-such-run").status_code == 404
        client.post(f"/api/jobs/{second['job_id']}/cancel")
        wait_job(client, second["job_id"], ended)


def test_a_run_whose_process_lives_is_not_deleted(make_settings: Callable[..., Settings]) -> None:
    """A CLI run (no job): its status names a live pid, so it stays; once the process is gone it can go."""
    settings = make_settings()
    run = prepare_run(RunDir(settings.runs_dir / "cli-run"), make_config("debug", "Catch"))
    write_status(run, state="training", pid=os.getpid())
    with TestClient(create_app(settings)) as client:
        refused = client.delete("/api/runs/cli-run")
        assert refused.status_code == 409 and "training" in refused.json()["detail"]
        assert run.config_path.exists()
        write_status(run, state="training", pid=2**22 + 12345)  # a pid that is not running: a stale run
        assert client.delete("/api/runs/cli-run").status_code == 204
        assert not run.path.exists()


def test_a_job_shows_its_runs_stage_and_estimates(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(python_executable="/bin/false")  # the attempt ends at once: nothing else writes
    with TestClient(create_app(settings)) as client:
        job = client.post("/api/jobs", json=job_body()).json()
        job = wait_job(client, job["job_id"], ended)
        assert job["progress"]["stage"] is None and job["progress"]["eta_s"] is None
        write_status(RunDir(job["run_dir"]), stage="pretrain/dyn", stage_done=40, stage_total=100, eta_s=90.5,
                     run_eta_s="soon")  # a field of the wrong type reads as unknown
        progress = client.get(f"/api/jobs/{job['job_id']}").json()["progress"]
        assert (progress["stage"], progress["stage_fraction"], progress["eta_s"], progress["run_eta_s"]) == (
            "pretrain/dyn", 0.4, 90.5, None)
        listed = {j["job_id"]: j for j in client.get("/api/jobs").json()["jobs"]}
        assert listed[job["job_id"]]["progress"] == progress
