"""What the job manager asks of an executor: start one attempt of `twm train`, poll it, signal it, let it go.

The job manager owns the queue, the SQLite records and the state machine (`backend.jobs`); an executor only runs
processes. `local` runs them as subprocesses of this machine, `ray` as child processes of Ray actors anywhere on a
Ray cluster. Both speak in the same terms, so cancel (SIGTERM, SIGKILL after the grace period), status, resume and
retries work the same through either.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ExecutorError(RuntimeError):
    """The executor cannot take work (Ray not installed, cluster unreachable, process could not start)."""


@dataclass(frozen=True)
class Launch:
    """One attempt to start: the arguments of `twm train` (after `python -m twm_core.cli train`)."""

    job_id: str
    attempt: int
    args: list[str]
    run_dir: Path
    log_path: Path
    """stdout and stderr of the attempt are appended here (in the run directory, so every node sees it)."""
    device: str
    """What the job asked for (`auto`, `cpu`, `cuda`, `cuda:N`); the executor says what it runs on."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for the training process."""


@dataclass(frozen=True)
class Started:
    """An attempt the executor has taken: its `handle` is what `poll` and `signal` need later."""

    handle: str
    pid: int | None
    device: str


@dataclass(frozen=True)
class Attempt:
    """A running attempt as the job manager recorded it."""

    job_id: str
    handle: str
    pid: int | None
    run_dir: str


@dataclass(frozen=True)
class Outcome:
    """What `poll` saw: still running, or ended with an exit code (None when nobody observed the exit)."""

    running: bool
    exit_code: int | None = None
    pid: int | None = None
    """The training process's pid once known (Ray learns it after the actor started it)."""


class Executor(Protocol):
    """Runs attempts of `twm train`. Methods are called under the job manager's lock, one at a time."""

    kind: str

    def gpu_count(self) -> int:
        """GPUs the executor can give jobs (this machine's, or the Ray cluster's)."""
        ...

    def capacity(self) -> int:
        """How many jobs may run at once when `max_concurrent_jobs` is unset."""
        ...

    def check_device(self, device: str) -> None:
        """Raise ValueError when a job asking for `device` could never run here."""
        ...

    def start(self, launch: Launch) -> Started:
        """Start the attempt without waiting for it; raise ExecutorError when it cannot start."""
        ...

    def poll(self, attempt: Attempt) -> Outcome:
        """Whether the attempt still runs (never blocks for long)."""
        ...

    def signal(self, attempt: Attempt, sig: signal.Signals) -> None:
        """Send `sig` to the attempt's training process and everything it spawned (no-op once it ended)."""
        ...

    def release(self, attempt: Attempt) -> None:
        """Free what the executor holds for an ended attempt."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for the API (kind, cluster address, resources)."""
        ...
