"""Training jobs: the scheduler. Attempts of `twm train --run-dir`, run by an executor, recorded in the job store.

A job trains one run directory in one or more attempts. At submit the request is validated
(`backend.job_requests`), its config is written into the run directory (`twm_core.launch.prepare_run`) and the job
is recorded (`backend.job_store`); every attempt is then `twm train --run-dir <run_dir>`, which reads that
config.json and resumes from the latest checkpoint when there is one. A failed attempt that left no checkpoint is
set aside (kept under `.failed/` for its log) and the run prepared again from the same config.json bytes. The
executor (`backend.executors`: `local` subprocesses or `ray` actors) runs the processes; this module keeps the
queue and the state machine, the same for both: queued → running → finished | failed | cancelled. A job of a
sweep that fails is retried automatically up to its `max_retries`.

A new `JobManager` on the same database picks up where the last one stopped: it reattaches to jobs whose process
still lives and settles the others from their run's `status.json`. Starting a job claims its row with a
conditional update, so two managers on one database (the backend and a `twm sweep`) never start the same job
twice; each watches only the jobs of its own executor kind. Nothing here imports FastAPI.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from backend.executors import Attempt, Executor, ExecutorError, Launch, make_executor
from backend.job_records import ENDED_STATES, JOB_STATES, Job, JobConflict, JobNotFound, safe_status, to_job
from backend.job_requests import InvalidJob, PreparedJob, prepare_job
from backend.job_store import JobStore
from backend.settings import Settings
from twm_core.launch import RunInUse, attempt_leftovers, prepare_run, remove_run, set_aside
from twm_core.run_dir import UNFINISHED_STATES, RunDir, write_status

__all__ = ["ENDED_STATES", "JOB_STATES", "InvalidJob", "Job", "JobConflict", "JobManager", "JobNotFound",
           "PreparedJob"]

logger = logging.getLogger(__name__)

LOG_NAME = "train.log"
"""Stdout and stderr of every attempt, appended, in the run directory."""
LOG_TAIL_LINES = 40
FAILED_DIR = ".failed"
"""Under the runs directory: run directories of failed attempts that left no checkpoint, kept for their logs when a
retry starts the run afresh."""
TRASH_DIR = ".trash"
"""Under the runs directory: where a deleted run is renamed to before its files are removed."""
_STARTING_GRACE_S = 60.0


class JobManager:
    """Queue, start, watch, cancel and resume training attempts (thread-safe; `poll()` is one monitor tick)."""

    def __init__(self, settings: Settings, executor: Executor | None = None) -> None:
        self.settings = settings
        self.store = JobStore(settings.jobs_db)
        self.executor = executor if executor is not None else make_executor(settings)
        self._lock = threading.RLock()
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self.poll()  # reattach to live jobs, settle dead ones, start queued ones

    # ------------------------------------------------------------------------------------------ public API
    @property
    def max_concurrent(self) -> int:
        """`settings.max_concurrent_jobs`, else what the executor can host (one job per GPU, one on a CPU machine,
        on Ray the cluster's GPUs or CPUs / `ray_cpus_per_job`)."""
        return self.settings.max_concurrent_jobs or self.executor.capacity()

    def submit(self, game: str, preset: str, seed: int | None = None, steps: int | None = None,
               device: str | None = None, overrides: dict[str, Any] | None = None) -> Job:
        """Validate the request, write its run's config.json, record the job and start it if a slot is free."""
        job = self.prepare(game, preset, seed, steps, device, overrides)
        self.enqueue([job])
        return self.get(job.row["job_id"])

    def prepare(self, game: str, preset: str, seed: int | None = None, steps: int | None = None,
                device: str | None = None, overrides: dict[str, Any] | None = None) -> PreparedJob:
        """A valid job, not yet recorded (`enqueue` it); raises `InvalidJob`."""
        return prepare_job(self.settings, self.executor, game, preset, seed, steps, device, overrides)

    def enqueue(self, jobs: Sequence[PreparedJob]) -> None:
        """Write each job's config.json into its run directory, record the jobs in one transaction and start what
        the free slots allow. A failure leaves no run directory and no record behind."""
        written: list[RunDir] = []
        try:
            for job in jobs:
                written.append(prepare_run(RunDir(job.row["run_dir"]), job.config))
            with self._lock:
                self.store.insert_jobs([job.row for job in jobs])
        except BaseException:
            for run in written:
                shutil.rmtree(run.path, ignore_errors=True)
            raise
        with self._lock:
            self._start_queued()

    def list_jobs(self, sweep_id: str | None = None) -> list[Job]:
        """Every job (of one sweep when `sweep_id` is given), newest first; queued ones with their place."""
        queue = self._queue()
        return [self._job(row, queue) for row in self.store.jobs(sweep_id)]

    def get(self, job_id: str) -> Job:
        """The job `job_id`; raises `JobNotFound`."""
        row = self._row(job_id)
        return self._job(row, self._queue() if row["state"] == "queued" else ({}, ""))  # only queued jobs wait

    def delete(self, job_id: str, with_run: bool = False) -> None:
        """Forget an ended job (JobConflict unless ended); `with_run` also removes its run directory, unless another
        job that has not ended trains it (`twm_core.launch.remove_run`)."""
        with self._lock:
            row = self._row(job_id)
            if row["state"] not in ENDED_STATES:
                raise JobConflict(f"job {job_id} is {row['state']}: cancel it before deleting it")
            if with_run:
                self.remove_run(row["run_id"], ignore_job=job_id)
            self.store.delete_job(job_id)

    def remove_run(self, run_id: str, ignore_job: str | None = None) -> None:
        """Delete the run directory `run_id` (renamed into `<runs>/.trash` first); JobConflict while a job that has
        not ended (other than `ignore_job`) trains it or its process is alive. A missing directory is no error."""
        with self._lock:
            busy = [r["job_id"] for r in self.store.jobs_of_run(run_id)
                    if r["state"] not in ENDED_STATES and r["job_id"] != ignore_job]
            if busy:
                raise JobConflict(f"run {run_id} is trained by job {busy[0]}: cancel it first")
            run = RunDir(self.settings.runs_dir / run_id)
            if not (run.path.exists() or run.path.is_symlink()):
                return
            try:
                remove_run(run, self.settings.runs_dir / TRASH_DIR)
            except RunInUse as e:
                raise JobConflict(str(e)) from e

    def cancel(self, job_id: str) -> Job:
        """Queued: cancelled at once. Running: SIGTERM (SIGKILL after the grace period, in `poll`)."""
        with self._lock:
            row = self._row(job_id)
            if row["state"] in ENDED_STATES:
                raise JobConflict(f"job {job_id} already ended ({row['state']}): nothing to cancel")
            now = time.time()
            if row["state"] == "queued":
                self._update(job_id, state="cancelled", ended_at=now)
                run = RunDir(row["run_dir"])
                if safe_status(run).get("state") == "queued":  # never started: the run says so too
                    with suppress(OSError, ValueError):
                        write_status(run, state="cancelled")
            elif row["cancel_requested_at"] is None:
                self._update(job_id, cancel_requested_at=now)
                if self._ours(row) and row["handle"] is not None:
                    # The trainer checkpoints, then exits 'cancelled'.
                    self.executor.signal(_attempt(row), signal.SIGTERM)
            return self.get(job_id)

    def resume(self, job_id: str) -> Job:
        """Queue a new attempt of a cancelled or failed job whose run has a checkpoint (it resumes from the latest)."""
        from twm_core.checkpoint import latest_checkpoint  # lazy: imports torch

        with self._lock:
            row = self._row(job_id)
            if row["state"] not in ("cancelled", "failed"):
                raise JobConflict(f"job {job_id} is {row['state']}: only cancelled or failed jobs can be resumed")
            if latest_checkpoint(RunDir(row["run_dir"])) is None:
                raise JobConflict(f"job {job_id} has no checkpoint in run {row['run_id']} to resume from")
            self._requeue(row)
            self._start_queued()
            return self.get(job_id)

    def poll(self) -> None:
        """One monitor tick: reap ended attempts, SIGKILL cancels past their grace, retry, start queued jobs."""
        with self._lock:
            try:
                for row in self.store.jobs_in("running"):
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
        status = safe_status(run)
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
        if run_state in UNFINISHED_STATES:
            # the attempt died without saying so (or before saying anything): the backend is now the status writer
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
        running = self.store.jobs_in("running")
        queued = [row for row in self.store.jobs_in("queued") if self._ours(row)]
        if not queued:
            return
        busy = [r["run_device"] for r in running]
        for row in queued[: max(0, self.max_concurrent - len(busy))]:
            device = self._assign_device(row["device"], busy)
            if self._start(row, device):
                busy.append(device)

    def _start(self, row: sqlite3.Row, device: str) -> bool:
        """Claim the queued row and start its attempt; False when another manager claimed it first."""
        if not self.store.claim(row["job_id"], device):
            return False
        run = RunDir(row["run_dir"])
        try:
            self._fresh_or_resumed(row, run)
            args = ["--run-dir", str(run.path), "--no-progress"]
            started = self.executor.start(Launch(
                job_id=row["job_id"], attempt=row["attempt"], args=args, run_dir=run.path,
                log_path=run.path / LOG_NAME, device=device, env=_job_env(),
            ))
        except (ExecutorError, OSError, ValueError) as e:  # ValueError: a config.json that became invalid
            now = time.time()
            self._update(row["job_id"], state="failed", error=str(e), started_at=now, ended_at=now)
            return True
        self._update(row["job_id"], handle=started.handle, pid=started.pid, run_device=started.device)
        logger.info("job %s attempt %d started on %s: %s", row["job_id"], row["attempt"], self.executor.kind,
                    started.handle)
        return True

    def _fresh_or_resumed(self, row: sqlite3.Row, run: RunDir) -> None:
        """Make the run directory ready for `twm train --run-dir`: a failed attempt that trained and left no
        checkpoint is set aside (kept for its log), and the run prepared again from the same config.json."""
        from twm_core.checkpoint import latest_checkpoint  # lazy: imports torch

        if not run.config_path.exists():
            raise ValueError(f"the run directory of job {row['job_id']} lost its config.json")
        if latest_checkpoint(run) is None and (attempt_leftovers(run) or (run.path / LOG_NAME).exists()):
            set_aside(run, self.settings.runs_dir / FAILED_DIR / f"{row['run_id']}-attempt{row['attempt'] - 1}")

    # ------------------------------------------------------------------------------------------ helpers
    def _assign_device(self, device: str, busy: list[str | None]) -> str:
        """Spread `auto`/`cuda` jobs over this machine's GPUs (the least busy one) when there are several."""
        if self.executor.kind != "local" or device not in ("auto", "cuda") or self.executor.gpu_count() < 2:
            return device
        return min((f"cuda:{i}" for i in range(self.executor.gpu_count())), key=busy.count)

    def _queue(self) -> tuple[dict[str, int], str]:
        """Place of each queued job of this executor (1 = next), and why the queue waits."""
        queued = [row["job_id"] for row in self.store.jobs_in("queued") if self._ours(row)]
        running = len([row for row in self.store.jobs_in("running") if self._ours(row)])
        why = (f"{running} of {self.max_concurrent} job slot(s) busy ({self.executor.kind} executor; "
               "TWM_MAX_CONCURRENT_JOBS sets the number)")
        return {job_id: place for place, job_id in enumerate(queued, start=1)}, why

    def _job(self, row: sqlite3.Row, queue: tuple[dict[str, int], str]) -> Job:
        places, why = queue
        place = places.get(row["job_id"])
        if row["state"] == "queued" and place is None:
            why = f"queued for the {row['executor']} executor, which this backend does not run"
        return to_job(row, place, why if row["state"] == "queued" else None)

    def _row(self, job_id: str) -> sqlite3.Row:
        row = self.store.job(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return row

    def _update(self, job_id: str, **fields: Any) -> None:
        self.store.update_job(job_id, **fields)


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(job_id=row["job_id"], handle=row["handle"] or str(row["pid"]), pid=row["pid"],
                   run_dir=row["run_dir"])


def _job_env() -> dict[str, str]:
    """Environment the training process must see wherever it runs (thread caps included: a Ray worker's own
    environment is its node's, not this process's)."""
    keep = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")
    return {"PYTHONUNBUFFERED": "1", **{key: os.environ[key] for key in keep if key in os.environ}}


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])
