"""Training jobs: attempts of `twm train`, run by an executor, their records kept in SQLite.

A job trains one run directory in one or more attempts: the first from scratch, later ones with
`twm train --resume <run_dir>` after a cancel or a failure (or a fresh start when a failed attempt left no
checkpoint). The executor (`backend.executors`: `local` subprocesses or `ray` actors) runs the processes; this module
keeps the queue and the state machine, the same for both: queued → running → finished | failed | cancelled.
A job of a sweep that fails is retried automatically up to its `max_retries`.

Job records live in `settings.jobs_db` (WAL mode, one connection per operation, one lock per manager), so a new
`JobManager` on the same database picks up where the last one stopped: it reattaches to jobs whose process still
lives and settles the others from their run's `status.json`. Starting a job claims its row with a conditional
update, so two managers on one database (the backend and a `twm sweep`) never start the same job twice; each
watches only the jobs of its own executor kind. Nothing here imports FastAPI.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from backend.executors import Attempt, Executor, ExecutorError, Launch, make_executor
from backend.settings import Settings
from twm_core.config import make_config
from twm_core.run_dir import LIVE_STATES, RunDir, new_run_id, read_run_status, write_status

logger = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "finished", "failed", "cancelled")
ENDED_STATES = frozenset({"finished", "failed", "cancelled"})
LOG_NAME = "train.log"
"""Stdout and stderr of every attempt, appended, in the run directory."""
LOG_TAIL_LINES = 40
FAILED_DIR = ".failed"
"""Under the runs directory: run directories of failed attempts that left no checkpoint, kept for their logs when a
retry starts the run afresh."""
_STARTING_GRACE_S = 60.0
_MAX_INT = 2**63 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT UNIQUE NOT NULL, run_id TEXT NOT NULL, run_dir TEXT NOT NULL,
    game TEXT NOT NULL, preset TEXT NOT NULL, seed INTEGER NOT NULL, device TEXT NOT NULL, steps INTEGER,
    overrides TEXT NOT NULL, cli_sets TEXT NOT NULL, total_steps INTEGER NOT NULL,
    state TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER, run_device TEXT, exit_code INTEGER, error TEXT,
    created_at REAL NOT NULL, queued_at REAL NOT NULL, started_at REAL, ended_at REAL,
    cancel_requested_at REAL, killed_at REAL
)"""
# Columns added after the first release: added to older databases on open.
_ADDED_COLUMNS = {
    "executor": "TEXT", "handle": "TEXT", "sweep_id": "TEXT",
    "max_retries": "INTEGER NOT NULL DEFAULT 0", "retries": "INTEGER NOT NULL DEFAULT 0",
}
_SWEEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sweep_id TEXT UNIQUE NOT NULL, name TEXT NOT NULL, preset TEXT NOT NULL, games TEXT NOT NULL, seeds TEXT NOT NULL,
    steps INTEGER, device TEXT NOT NULL, overrides TEXT NOT NULL, max_retries INTEGER NOT NULL, executor TEXT NOT NULL,
    created_at REAL NOT NULL, cancel_requested_at REAL
)"""


class InvalidJob(ValueError):
    """A job request that can never run (unknown game or preset, bad override, unavailable device)."""


class JobNotFound(KeyError):
    """No job has this id."""


class JobConflict(RuntimeError):
    """The job's state does not allow the operation (cancel an ended job, resume a finished one)."""


@dataclass(frozen=True)
class Progress:
    """Where the run stands, from its status.json (`step` of `total_steps` env steps)."""

    step: int
    total_steps: int
    fraction: float
    phase: str | None
    run_state: str | None


@dataclass(frozen=True)
class Job:
    """One job record plus the live progress of its run."""

    job_id: str
    run_id: str
    run_dir: str
    state: str
    attempt: int
    game: str
    preset: str
    seed: int
    device: str
    steps: int | None
    overrides: dict[str, Any]
    pid: int | None
    exit_code: int | None
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    cancel_requested_at: float | None
    executor: str | None
    sweep_id: str | None
    retries: int
    max_retries: int
    progress: Progress


_MODEL_SIZE_FIELDS = ("obs.z_categoricals", "obs.z_categories", "obs.channels", "obs.mlp_dims", "dyn.embed_dim",
                      "dyn.num_heads", "dyn.head_dim", "dyn.num_layers", "dyn.feedforward_dim", "dyn.z_dims",
                      "dyn.reward_dims", "dyn.discount_dims", "dyn.input_rewards", "ac.actor_dims", "ac.critic_dims",
                      "ac.input_h", "ac.critic_target_interval")
_MEMORY_FIELDS = ("replay.capacity", "train.total_steps", "train.wm_batch_size", "train.wm_sequence_length",
                  "dyn.memory_length", "ac.batch_size", "ac.horizon", "env.frame_stack", *_MODEL_SIZE_FIELDS)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _named(overrides: dict[str, Any], names: Sequence[str], preset: str) -> str:
    """Which of the request's overrides set the size (or the preset's own values, when none did)."""
    given = [f"{key}={overrides[key]!r}" for key in overrides if key in names]
    return f"set by {', '.join(given)}" if given else f"the preset {preset!r} itself"


def _total_ram() -> int:
    """Bytes of this machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _device_memory(device: str) -> tuple[str, int] | None:
    """(name, total bytes) of the CUDA device a job on `device` uses; None for a CPU job."""
    import torch  # lazy, as `Settings.resolved_device`

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not device.startswith("cuda"):
        return None
    index = int(device.partition(":")[2] or 0)
    return device, int(torch.cuda.get_device_properties(index).total_memory)


def _check_resources(settings: Settings, cfg: Any, device: str, overrides: dict[str, Any], executor: str) -> None:
    """The caps on jobs submitted over HTTP (`Settings.max_*`, `job_memory_fraction`); raises `InvalidJob`."""
    from twm_core.resources import memory_breakdown  # lazy: builds the models (on the meta device)

    errors = []
    for name, value, cap, env in (
            ("train.total_steps", cfg.train.total_steps, settings.max_job_steps, "TWM_MAX_JOB_STEPS"),
            ("replay.capacity", cfg.replay.capacity, settings.max_replay_capacity, "TWM_MAX_REPLAY_CAPACITY")):
        if cap is not None and value > cap:
            errors.append(f"{name} must be <= {cap} ({env}), got {value}")
    if errors:  # before the estimate: a capacity of 1e12 makes every other number moot
        raise InvalidJob("; ".join(errors))
    try:
        estimate = memory_breakdown(cfg)
    except ValueError as e:  # too many layers (twm_core.resources.MAX_LAYERS)
        raise InvalidJob(str(e)) from e
    except (RuntimeError, OverflowError) as e:  # a width so large that even a meta tensor cannot hold its size
        raise InvalidJob(f"model sizes out of range ({_named(overrides, _MODEL_SIZE_FIELDS, cfg.preset)}): {e}") from e
    cap = settings.max_model_params
    if cap is not None and estimate.num_parameters > cap:
        raise InvalidJob(f"the model has {estimate.num_parameters:,} parameters, more than {cap:,} "
                         f"(TWM_MAX_MODEL_PARAMS); {_named(overrides, _MODEL_SIZE_FIELDS, cfg.preset)}")
    fraction = settings.job_memory_fraction
    if fraction is None or executor != "local":
        return
    ram = _total_ram()
    gpu = _device_memory(device)
    checks = [("this machine's RAM", estimate.host if gpu else estimate.total, ram)]
    if gpu is not None:
        checks.append((f"the memory of {gpu[0]}", estimate.device, gpu[1]))
    for where, need, have in checks:
        if need > fraction * have:
            raise InvalidJob(f"the job needs about {_gib(need)} (estimate: replay {_gib(estimate.replay)}, model and "
                             f"Adam state {_gib(estimate.parameters + estimate.optimizer)}, activations "
                             f"{_gib(estimate.activations)}), more than {fraction:g} of {where} ({_gib(have)}, "
                             f"TWM_JOB_MEMORY_FRACTION); {_named(overrides, _MEMORY_FIELDS, cfg.preset)}")


class JobManager:
    """Queue, start, watch, cancel and resume training attempts (thread-safe; `poll()` is one monitor tick)."""

    def __init__(self, settings: Settings, executor: Executor | None = None) -> None:
        self.settings = settings
        self.db_path = settings.jobs_db
        self.executor = executor if executor is not None else make_executor(settings)
        self._lock = threading.RLock()
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self.db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.execute(_SWEEPS_SCHEMA)
            have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        self.poll()  # reattach to live jobs, settle dead ones, start queued ones

    # ------------------------------------------------------------------------------------------ public API
    @property
    def max_concurrent(self) -> int:
        """`settings.max_concurrent_jobs`, else what the executor can host (one job per GPU, one on a CPU machine,
        on Ray the cluster's GPUs or CPUs / `ray_cpus_per_job`)."""
        return self.settings.max_concurrent_jobs or self.executor.capacity()

    def submit(self, game: str, preset: str, seed: int | None = None, steps: int | None = None,
               device: str | None = None, overrides: dict[str, Any] | None = None) -> Job:
        """Validate the request by building its config, record the job and start it if a slot is free."""
        row = self.prepare(game, preset, seed, steps, device, overrides)
        self.enqueue([row])
        return self.get(row["job_id"])

    def prepare(self, game: str, preset: str, seed: int | None = None, steps: int | None = None,
                device: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The record of a valid job, not yet queued (`enqueue` it); raises `InvalidJob`."""
        from twm_core.envs.games import resolve_game  # lazy: pulls in gymnasium and ALE

        try:
            game = resolve_game(game)
        except ValueError as e:
            raise InvalidJob(f"game: {e}") from e
        seed = secrets.randbelow(2**31) if seed is None else seed  # a seed is always set, and saved
        overrides = dict(overrides or {})
        all_overrides = {**overrides, **({"train.total_steps": steps} if steps is not None else {})}
        try:
            cfg = make_config(preset, game, seed, all_overrides)
            if cfg.env.game != game:  # overridden as `env.game`: must name a real game too
                resolve_game(cfg.env.game)
        except (ValueError, OverflowError) as e:  # ConfigError included; int("1e400") overflows
            raise InvalidJob(str(e)) from e
        resolved = cfg.to_dict()
        sections = [key for key in overrides if isinstance(_lookup(resolved, key), dict)]
        if sections:  # a whole section would reset the preset's other fields, and `--set` cannot pass it on
            raise InvalidJob(f"overrides name config sections, not fields: {sections} (use e.g. 'train.total_steps')")
        for name, value in (("seed", cfg.seed), ("train.total_steps", cfg.train.total_steps)):
            if not 0 <= value <= _MAX_INT:  # SQLite stores signed 64-bit integers, torch seeds fit in them too
                raise InvalidJob(f"{name} must lie in [0, {_MAX_INT}], got {value}")
        device = device or self.settings.device
        try:
            self.executor.check_device(device)
        except (ValueError, ExecutorError) as e:
            raise InvalidJob(str(e)) from e
        _check_resources(self.settings, cfg, device, all_overrides, self.executor.kind)
        # Pass the validated values, not the raw ones, so the subprocess builds exactly this config.
        cli_sets = [f"{key}={_cli_value(_lookup(resolved, key))}" for key in overrides]
        run_id = new_run_id(cfg.env.game, cfg.preset, cfg.seed)
        now = time.time()
        return {
            "job_id": uuid.uuid4().hex[:12], "run_id": run_id, "run_dir": str(self.settings.runs_dir / run_id),
            "game": cfg.env.game, "preset": preset, "seed": cfg.seed, "device": device, "steps": steps,
            "overrides": json.dumps(overrides), "cli_sets": json.dumps(cli_sets),
            "total_steps": cfg.train.total_steps, "state": "queued", "attempt": 1, "created_at": now, "queued_at": now,
            "executor": self.executor.kind,
        }

    def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        """Record prepared jobs in one transaction and start what the free slots allow."""
        with self._lock:
            with self.db() as db:
                for row in rows:
                    db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                               tuple(row.values()))
            self._start_queued()

    def list_jobs(self, sweep_id: str | None = None) -> list[Job]:
        """Every job (of one sweep when `sweep_id` is given), newest first."""
        where, args = ("WHERE sweep_id = ?", (sweep_id,)) if sweep_id is not None else ("", ())
        with self.db() as db:
            rows = db.execute(f"SELECT * FROM jobs {where} ORDER BY created_at DESC, seq DESC", args).fetchall()
        return [_to_job(row) for row in rows]

    def get(self, job_id: str) -> Job:
        """The job `job_id`; raises `JobNotFound`."""
        return _to_job(self._row(job_id))

    def cancel(self, job_id: str) -> Job:
        """Queued: cancelled at once. Running: SIGTERM (SIGKILL after the grace period, in `poll`)."""
        with self._lock:
            row = self._row(job_id)
            if row["state"] in ENDED_STATES:
                raise JobConflict(f"job {job_id} already ended ({row['state']}): nothing to cancel")
            now = time.time()
            if row["state"] == "queued":
                self._update(job_id, state="cancelled", ended_at=now)
            elif row["cancel_requested_at"] is None:
                self._update(job_id, cancel_requested_at=now)
                if self._ours(row) and row["handle"] is not None:
                    # The trainer checkpoints, then exits 'cancelled'.
                    self.executor.signal(_attempt(row), signal.SIGTERM)
            return self.get(job_id)

    def resume(self, job_id: str) -> Job:
        """Queue a new attempt (`twm train --resume`) of a cancelled or failed job whose run has a checkpoint."""
        from twm_core.checkpoint import latest_checkpoint  # lazy: imports torch

        with self._lock:
            row = self._row(job_id)
            if row["state"] not in ("cancelled", "failed"):
                raise JobConflict(f"job {job_id} is {row['state']}: only cancelled or failed jobs can be resumed")
            if latest_checkpoint(RunDir(row["run_dir"])) is None:
                raise JobConflict(f"job {job_id} has no checkpoint in {row['run_dir']} to resume from")
            self._requeue(row)
            self._start_queued()
            return self.get(job_id)

    def poll(self) -> None:
        """One monitor tick: reap ended attempts, SIGKILL cancels past their grace, retry, start queued jobs."""
        with self._lock:
            with self.db() as db:
                running = db.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall()
            try:
                for row in running:
                    if self._ours(row):
                        self._check_running(row)
                self._start_queued()
            except ExecutorError as e:  # e.g. the Ray cluster is unreachable: jobs wait, the backend stays up
                logger.warning("job monitor: %s", e)

    def start_monitor(self) -> None:
        """Start polling every `settings.job_poll_seconds` on the running event loop (call from the app lifespan)."""
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._monitor(self._stopping), name="twm-job-monitor")

    async def stop_monitor(self) -> None:
        """Stop polling once the current tick is done; running jobs are left alone, so they outlive a restart."""
        task, self._task = self._task, None
        if task is not None and self._stopping is not None:
            self._stopping.set()
            await task

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """A connection to the job database, committed on success (rows read as `sqlite3.Row`)."""
        conn = sqlite3.connect(self.db_path, timeout=30.0)
        conn.row_factory = sqlite3.Row
        try:
            with conn:  # commit on success, roll back on error
                yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------------ monitor
    async def _monitor(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.to_thread(self.poll)  # file and process checks stay off the event loop
            except Exception:  # a bad tick must not end monitoring
                logger.exception("job monitor tick failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.job_poll_seconds)

    def _ours(self, row: sqlite3.Row) -> bool:
        """Whether this manager's executor runs the job (rows of older databases ran locally)."""
        return (row["executor"] or "local") == self.executor.kind

    def _check_running(self, row: sqlite3.Row) -> None:
        if row["handle"] is None:  # claimed by a manager that is starting it right now (or died doing so)
            if time.time() - (row["started_at"] or 0.0) > _STARTING_GRACE_S:
                self._settle(row, None)
            return
        outcome = self.executor.poll(_attempt(row))
        if outcome.pid is not None and outcome.pid != row["pid"]:
            self._update(row["job_id"], pid=outcome.pid)
        if outcome.running:
            self._enforce_grace(row)
        else:
            self._settle(row, outcome.exit_code)
            self.executor.release(_attempt(row))

    def _enforce_grace(self, row: sqlite3.Row) -> None:
        asked, killed = row["cancel_requested_at"], row["killed_at"]
        if asked is not None and killed is None and time.time() - asked >= self.settings.cancel_grace_seconds:
            logger.warning("job %s ignored SIGTERM for %.0f s: SIGKILL", row["job_id"], time.time() - asked)
            self.executor.signal(_attempt(row), signal.SIGKILL)
            self._update(row["job_id"], killed_at=time.time())

    def _settle(self, row: sqlite3.Row, code: int | None) -> None:
        """Final state of an ended attempt, from its exit code (None when unknown) and its run's status.json."""
        run = RunDir(row["run_dir"])
        status = _safe_status(run)
        run_state = status.get("state")
        error = None
        if code in (0, None) and run_state == "finished":  # a cancel that came too late to stop it
            state = "finished"
        elif row["cancel_requested_at"] is not None or (code in (0, None) and run_state == "cancelled"):
            state = "cancelled"
            if row["killed_at"] is not None:
                error = f"killed with SIGKILL {self.settings.cancel_grace_seconds:g} s after SIGTERM"
        elif code == 0:
            state = "finished"
        else:
            state = "failed"
            if code is None:
                how = f"the attempt ended while nothing watched it (exit code unknown; {self.executor.kind} executor)"
            elif code < 0:
                how = f"killed by signal {signal.Signals(-code).name}"
            else:
                how = f"exit code {code}"
            error = f"{how}\n--- last {LOG_TAIL_LINES} lines of {LOG_NAME} ---\n{_tail(run.path / LOG_NAME)}"
        if run_state in LIVE_STATES:  # the process died without saying so: the backend is now the status writer
            with suppress(OSError, ValueError):
                write_status(run, state=state, error=error)
        if state == "failed" and row["retries"] < row["max_retries"]:
            logger.warning("job %s failed (%s): retry %d of %d", row["job_id"], (error or "").splitlines()[0],
                           row["retries"] + 1, row["max_retries"])
            self._requeue(row, retry=True)
            return
        self._update(row["job_id"], state=state, exit_code=code, error=error, ended_at=time.time())
        logger.info("job %s (run %s) %s", row["job_id"], row["run_id"], state)

    def _requeue(self, row: sqlite3.Row, retry: bool = False) -> None:
        self._update(row["job_id"], state="queued", attempt=row["attempt"] + 1, queued_at=time.time(), pid=None,
                     handle=None, run_device=None, exit_code=None, error=None, started_at=None, ended_at=None,
                     cancel_requested_at=None, killed_at=None, retries=row["retries"] + int(retry))

    def _start_queued(self) -> None:
        with self.db() as db:
            running = db.execute("SELECT run_device FROM jobs WHERE state = 'running'").fetchall()
            queued = db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY queued_at, seq").fetchall()
        queued = [row for row in queued if self._ours(row)]
        if not queued:
            return
        busy = [r["run_device"] for r in running]
        for row in queued[: max(0, self.max_concurrent - len(busy))]:
            device = self._assign_device(row["device"], busy)
            if self._start(row, device):
                busy.append(device)

    def _start(self, row: sqlite3.Row, device: str) -> bool:
        """Claim the queued row and start its attempt; False when another manager claimed it first."""
        with self.db() as db:
            claimed = db.execute("UPDATE jobs SET state = 'running', started_at = ?, run_device = ? "
                                 "WHERE job_id = ? AND state = 'queued'", (time.time(), device, row["job_id"]))
        if claimed.rowcount != 1:
            return False
        run = RunDir(row["run_dir"])
        try:
            args = self._train_args(row, run)
            started = self.executor.start(Launch(
                job_id=row["job_id"], attempt=row["attempt"], args=args, run_dir=run.path,
                log_path=run.path / LOG_NAME, device=device, env=_job_env(),
            ))
        except (ExecutorError, OSError) as e:
            now = time.time()
            self._update(row["job_id"], state="failed", error=str(e), started_at=now, ended_at=now)
            return True
        self._update(row["job_id"], handle=started.handle, pid=started.pid, run_device=started.device)
        logger.info("job %s attempt %d started on %s: %s", row["job_id"], row["attempt"], self.executor.kind,
                    started.handle)
        return True

    def _train_args(self, row: sqlite3.Row, run: RunDir) -> list[str]:
        """`twm train` arguments: resume from the last checkpoint, else start afresh (setting aside a failed
        attempt's run directory that holds no checkpoint)."""
        from twm_core.checkpoint import latest_checkpoint  # lazy: imports torch

        if row["attempt"] > 1 and latest_checkpoint(run) is not None:
            return ["--resume", str(run.path), "--no-progress"]
        if run.config_path.exists():  # a failed attempt died before its first checkpoint
            aside = self.settings.runs_dir / FAILED_DIR / f"{row['run_id']}-attempt{row['attempt'] - 1}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            run.path.rename(aside)
        args = ["--game", row["game"], "--preset", row["preset"], "--seed", str(row["seed"]),
                "--run-dir", str(run.path), "--no-progress"]
        args += ["--steps", str(row["steps"])] if row["steps"] is not None else []
        for pair in json.loads(row["cli_sets"]):
            args += ["--set", pair]
        run.create()
        return args

    # ------------------------------------------------------------------------------------------ helpers
    def _assign_device(self, device: str, busy: list[str | None]) -> str:
        """Spread `auto`/`cuda` jobs over this machine's GPUs (the least busy one) when there are several."""
        if self.executor.kind != "local" or device not in ("auto", "cuda") or self.executor.gpu_count() < 2:
            return device
        return min((f"cuda:{i}" for i in range(self.executor.gpu_count())), key=busy.count)

    def _row(self, job_id: str) -> sqlite3.Row:
        with self.db() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return row

    def _update(self, job_id: str, **fields: Any) -> None:
        with self.db() as db:
            db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE job_id = ?",
                       (*fields.values(), job_id))


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(job_id=row["job_id"], handle=row["handle"] or str(row["pid"]), pid=row["pid"],
                   run_dir=row["run_dir"])


def _job_env() -> dict[str, str]:
    """Environment the training process must see wherever it runs (thread caps included: a Ray worker's own
    environment is its node's, not this process's)."""
    keep = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")
    return {"PYTHONUNBUFFERED": "1", **{key: os.environ[key] for key in keep if key in os.environ}}


def _to_job(row: sqlite3.Row) -> Job:
    status = _safe_status(RunDir(row["run_dir"]))
    total = int(status.get("total_steps") or row["total_steps"])
    step = int(status.get("step") or 0)
    progress = Progress(step=step, total_steps=total, fraction=min(1.0, step / total) if total else 0.0,
                        phase=status.get("phase"), run_state=status.get("state"))
    columns = {f.name: row[f.name] for f in fields(Job) if f.name not in ("overrides", "progress")}
    return Job(**columns, overrides=json.loads(row["overrides"]), progress=progress)


def _safe_status(run: RunDir) -> dict[str, Any]:
    """status.json's fields as written, type-checked (a bad field or file reads as absent): never raises, so one
    damaged run cannot break the job or sweep listings."""
    status = read_run_status(run)
    return status.fields if status is not None else {}


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _lookup(config: dict[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


def _cli_value(value: Any) -> str:
    """A config value as `--set key=value` text that `TWMConfig.with_overrides` parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
