"""The local executor's view of a reattached attempt (not its own child): the pid must be the job's trainer.

No training here: a stand-in process carries the job's argv (`... twm_core.cli train ... <run_dir>`), another one
(`sleep`) does not, as a reused pid would not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from backend.executors.base import Attempt
from backend.executors.local import LocalExecutor
from backend.settings import Settings


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    """Start processes in their own session (as the executor starts jobs); kill and reap them all at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def attempt_of(proc: subprocess.Popen[bytes], run_dir: Path) -> Attempt:
    return Attempt(job_id="job", handle=str(proc.pid), pid=proc.pid, run_dir=str(run_dir))


def stand_in(run_dir: Path) -> list[str]:
    """A live process whose argv is a job's: `python -c <sleep> twm_core.cli train --run-dir <run_dir>`."""
    return [sys.executable, "-c", "import time; time.sleep(60)", "twm_core.cli", "train", "--run-dir", str(run_dir)]


def test_reattached_job_alive_then_zombie(make_settings: Callable[..., Settings], tmp_path: Path,
                                          spawn: Callable[[list[str]], subprocess.Popen[bytes]]) -> None:
    executor = LocalExecutor(make_settings())
    run_dir = tmp_path / "runs" / "r1"
    proc = spawn(stand_in(run_dir))
    attempt = attempt_of(proc, run_dir)
    assert executor._alive(attempt)
    assert executor.poll(attempt).running
    assert not executor._alive(attempt_of(proc, tmp_path / "runs" / "other"))  # the job of another run
    executor.signal(attempt, signal.SIGKILL)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
    assert not executor._alive(attempt)
    assert executor.poll(attempt).running is False


def test_reused_pid_is_not_the_job(make_settings: Callable[..., Settings], tmp_path: Path,
                                   spawn: Callable[[list[str]], subprocess.Popen[bytes]]) -> None:
    """A live process with the job's pid but another argv is not the job: not running, and never signalled."""
    executor = LocalExecutor(make_settings())
    proc = spawn(["sleep", "60"])
    attempt = attempt_of(proc, tmp_path / "runs" / "r1")
    assert not executor._alive(attempt)
    assert not executor.poll(attempt).running
    executor.signal(attempt, signal.SIGKILL)
    assert proc.poll() is None and psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE, "a stranger was killed"


def test_unreadable_argv_trusts_pid_alive(make_settings: Callable[..., Settings], tmp_path: Path,
                                          spawn: Callable[[list[str]], subprocess.Popen[bytes]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's process whose argv we may not read: cannot tell, so alive as pid_alive says."""
    executor = LocalExecutor(make_settings())
    proc = spawn(["sleep", "60"])

    def denied(self: psutil.Process) -> list[str]:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "cmdline", denied)
    assert executor._alive(attempt_of(proc, tmp_path / "runs" / "r1"))
    assert not executor._alive(Attempt(job_id="job", handle="0", pid=None, run_dir=str(tmp_path)))
