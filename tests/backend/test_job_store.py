"""The job store's schema version: a database of the first release is carried forward, a newer one refused."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from backend.job_store import _JOBS_V1, _SWEEPS, SCHEMA_VERSION, JobStore, SchemaTooNew
from twm_core.run_dir import RunDir, read_status


def _v1_database(path: Path, runs: Path, rows: list[dict[str, object]]) -> None:
    """A job database as the first release left it: no user_version, `cli_sets` holding `--set` strings."""
    with sqlite3.connect(path) as db:
        db.execute(_JOBS_V1)
        db.execute(_SWEEPS)
        for column in ("executor TEXT", "handle TEXT", "sweep_id TEXT", "max_retries INTEGER NOT NULL DEFAULT 0",
                       "retries INTEGER NOT NULL DEFAULT 0"):
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
        now = time.time()
        for row in rows:
            record = {"run_dir": str(runs / str(row["run_id"])), "preset": "debug", "device": "cpu", "steps": 110,
                      "overrides": "{}", "total_steps": 110, "attempt": 1, "created_at": now, "queued_at": now,
                      "executor": "local", **row}
            db.execute(f"INSERT INTO jobs ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
                       tuple(record.values()))


def test_first_release_database_is_migrated_and_queued_jobs_get_their_config(tmp_path: Path) -> None:
    runs, path = tmp_path / "runs", tmp_path / "runs" / "jobs.sqlite"
    runs.mkdir()
    _v1_database(path, runs, [
        {"job_id": "queued1", "run_id": "catch-a", "game": "Catch", "seed": 3, "state": "queued",
         "cli_sets": json.dumps(["dyn.num_layers=1", "replay.prefill=100"])},
        {"job_id": "bad1", "run_id": "catch-b", "game": "Catch", "seed": 4, "state": "queued",
         "cli_sets": json.dumps(["dyn.no_such_field=1"])},
        {"job_id": "done1", "run_id": "catch-c", "game": "Catch", "seed": 5, "state": "finished",
         "cli_sets": "[]"},
    ])
    store = JobStore(path)
    assert store.version == SCHEMA_VERSION == 2
    with store.db() as db:
        assert "cli_sets" not in {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
    config = json.loads(RunDir(runs / "catch-a").config_path.read_text())
    assert config["seed"] == 3 and config["dyn"]["num_layers"] == 1 and config["replay"]["prefill"] == 100
    assert config["train"]["total_steps"] == 110 and config["preset"] == "debug"
    assert (read_status(RunDir(runs / "catch-a")) or {})["state"] == "queued"
    bad = store.job("bad1")
    assert bad is not None and bad["state"] == "failed" and "no_such_field" in bad["error"]
    assert not (runs / "catch-c").exists()  # only queued jobs are carried over
    done = store.job("done1")
    assert done is not None and done["state"] == "finished"
    JobStore(path)  # opening again is a no-op
    assert store.version == 2


def test_database_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    JobStore(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="schema 3"):
        JobStore(path)
