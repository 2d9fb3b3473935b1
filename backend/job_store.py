"""The job database: every SQL statement about jobs and sweeps, and the schema's version.

SQLite in WAL mode at `settings.jobs_db`, one connection per operation, so the backend and a `twm sweep` process
can share one file. `PRAGMA user_version` holds the schema version; opening a database migrates it forward, in
one transaction per step:

- 1: the first release (jobs; then sweeps, executors and retries as added columns).
- 2: jobs carry their config in their run directory (`twm_core.launch.prepare_run`), not as `--set` strings: the
  `cli_sets` column goes, after writing the config.json of any job still queued from an older release.

Rows are `sqlite3.Row`s; the scheduler (`backend.jobs`) owns what the states mean.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

_JOBS_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT UNIQUE NOT NULL, run_id TEXT NOT NULL, run_dir TEXT NOT NULL,
    game TEXT NOT NULL, preset TEXT NOT NULL, seed INTEGER NOT NULL, device TEXT NOT NULL, steps INTEGER,
    overrides TEXT NOT NULL, cli_sets TEXT NOT NULL, total_steps INTEGER NOT NULL,
    state TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER, run_device TEXT, exit_code INTEGER, error TEXT,
    created_at REAL NOT NULL, queued_at REAL NOT NULL, started_at REAL, ended_at REAL,
    cancel_requested_at REAL, killed_at REAL
)"""
_JOBS_V1_ADDED = {  # columns the first release added to its own older databases
    "executor": "TEXT", "handle": "TEXT", "sweep_id": "TEXT",
    "max_retries": "INTEGER NOT NULL DEFAULT 0", "retries": "INTEGER NOT NULL DEFAULT 0",
}
_SWEEPS = """
CREATE TABLE IF NOT EXISTS sweeps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sweep_id TEXT UNIQUE NOT NULL, name TEXT NOT NULL, preset TEXT NOT NULL, games TEXT NOT NULL, seeds TEXT NOT NULL,
    steps INTEGER, device TEXT NOT NULL, overrides TEXT NOT NULL, max_retries INTEGER NOT NULL, executor TEXT NOT NULL,
    created_at REAL NOT NULL, cancel_requested_at REAL
)"""


class SchemaTooNew(RuntimeError):
    """The database was written by a newer release (its user_version is above `SCHEMA_VERSION`)."""


class JobStore:
    """All reads and writes of the job database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.db() as db:
            db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """A connection, committed on success and rolled back on error (rows read as `sqlite3.Row`)."""
        conn = sqlite3.connect(self.path, timeout=30.0)
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    @property
    def version(self) -> int:
        with self.db() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------------------------------ jobs
    def insert_jobs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record jobs in one transaction (column names are the mappings' keys)."""
        with self.db() as db:
            for row in rows:
                db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           tuple(row.values()))

    def job(self, job_id: str) -> sqlite3.Row | None:
        with self.db() as db:
            row: sqlite3.Row | None = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return row

    def jobs(self, sweep_id: str | None = None) -> list[sqlite3.Row]:
        """Every job (of one sweep when `sweep_id` is given), newest first."""
        where, args = ("WHERE sweep_id = ?", (sweep_id,)) if sweep_id is not None else ("", ())
        with self.db() as db:
            return db.execute(f"SELECT * FROM jobs {where} ORDER BY created_at DESC, seq DESC", args).fetchall()

    def jobs_in(self, state: str) -> list[sqlite3.Row]:
        """Jobs in `state`, oldest in the queue first."""
        with self.db() as db:
            return db.execute("SELECT * FROM jobs WHERE state = ? ORDER BY queued_at, seq", (state,)).fetchall()

    def jobs_of_run(self, run_id: str) -> list[sqlite3.Row]:
        with self.db() as db:
            return db.execute("SELECT * FROM jobs WHERE run_id = ?", (run_id,)).fetchall()

    def delete_job(self, job_id: str) -> None:
        with self.db() as db:
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def update_job(self, job_id: str, **fields: Any) -> None:
        with self.db() as db:
            db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE job_id = ?",
                       (*fields.values(), job_id))

    def claim(self, job_id: str, device: str) -> bool:
        """Move a queued job to running; False when another manager claimed it first (a conditional update)."""
        with self.db() as db:
            claimed = db.execute("UPDATE jobs SET state = 'running', started_at = ?, run_device = ? "
                                 "WHERE job_id = ? AND state = 'queued'", (time.time(), device, job_id))
        return claimed.rowcount == 1

    # ------------------------------------------------------------------------------------------ sweeps
    def insert_sweep(self, record: Mapping[str, Any]) -> None:
        with self.db() as db:
            db.execute(f"INSERT INTO sweeps ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
                       tuple(record.values()))

    def delete_sweep(self, sweep_id: str) -> None:
        with self.db() as db:
            db.execute("DELETE FROM sweeps WHERE sweep_id = ?", (sweep_id,))

    def sweeps(self) -> list[sqlite3.Row]:
        with self.db() as db:
            return db.execute("SELECT * FROM sweeps ORDER BY created_at DESC, seq DESC").fetchall()

    def sweep(self, sweep_id: str) -> sqlite3.Row | None:
        with self.db() as db:
            row: sqlite3.Row | None = db.execute("SELECT * FROM sweeps WHERE sweep_id = ?", (sweep_id,)).fetchone()
        return row

    def request_sweep_cancel(self, sweep_id: str) -> None:
        with self.db() as db:
            db.execute("UPDATE sweeps SET cancel_requested_at = ? WHERE sweep_id = ? AND cancel_requested_at IS NULL",
                       (time.time(), sweep_id))

    # ------------------------------------------------------------------------------------------ migrations
    def _migrate(self) -> None:
        with self.db() as db:
            db.execute("BEGIN IMMEDIATE")  # one migrator at a time when two processes open the file at once
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(f"{self.path} has job schema {version}; this release knows {SCHEMA_VERSION}")
            if version < 1:
                _to_v1(db)
            if version < 2:
                _to_v2(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _to_v1(db: sqlite3.Connection) -> None:
    """The first release's schema (a database of it has user_version 0: it did not set one)."""
    db.execute(_JOBS_V1)
    db.execute(_SWEEPS)
    have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
    for column, kind in _JOBS_V1_ADDED.items():
        if column not in have:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")


def _to_v2(db: sqlite3.Connection) -> None:
    """Queued jobs of release 1 get their config.json from their `--set` strings; then `cli_sets` goes."""
    from twm_core.launch import prepare_run
    from twm_core.presets import make_config
    from twm_core.run_dir import RunDir

    for row in db.execute("SELECT * FROM jobs WHERE state = 'queued'").fetchall():
        run = RunDir(row["run_dir"])
        if run.config_path.exists():  # a retry: its first attempt wrote the config
            continue
        try:
            sets = dict(pair.split("=", 1) for pair in json.loads(row["cli_sets"]))
            if row["steps"] is not None:
                sets["train.total_steps"] = str(row["steps"])
            prepare_run(run, make_config(row["preset"], row["game"], row["seed"], sets))
        except (ValueError, OSError) as e:  # ConfigError included
            db.execute("UPDATE jobs SET state = 'failed', error = ?, ended_at = ? WHERE job_id = ?",
                       (f"could not carry the job over to schema 2: {e}", time.time(), row["job_id"]))
    db.execute("ALTER TABLE jobs DROP COLUMN cli_sets")
