"""Process facts through psutil: `pid_alive` (live, zombie, gone, another user's) and the trainer's RSS metric."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from twm_core.recorder import rss_mb as _rss_mb
from twm_core.run_dir import pid_alive


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A child that sleeps until the test kills it; always reaped at teardown."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_exited_unreaped(pid: int) -> None:
    """Block until child `pid` has exited, leaving it a zombie (WNOWAIT: its parent has not reaped it yet)."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def test_pid_alive_live_zombie_reaped(child: subprocess.Popen[bytes]) -> None:
    assert pid_alive(os.getpid())
    assert pid_alive(child.pid)
    child.kill()
    wait_exited_unreaped(child.pid)
    assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, "the child must still be in the process table"
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)


def test_pid_alive_non_positive_and_out_of_range() -> None:
    # 0 and negative pids address process groups for os.kill: never "a process".
    assert not pid_alive(0) and not pid_alive(-1)
    assert not pid_alive(2**40)  # a damaged status.json may hold any integer


def test_pid_alive_other_users_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process whose details we may not read (another user's, under hidepid) exists: alive."""

    def denied(self: psutil.Process) -> str:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "status", denied)
    assert pid_alive(os.getpid())


def test_pid_alive_zombie_refused_by_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where psutil answers a zombie with ZombieProcess instead of its state, it is still not alive."""

    def zombie(self: psutil.Process) -> str:
        raise psutil.ZombieProcess(self.pid)

    monkeypatch.setattr(psutil.Process, "status", zombie)
    assert not pid_alive(os.getpid())


def test_rss_mb() -> None:
    rss = _rss_mb()
    assert math.isfinite(rss) and rss > 1  # a Python process with torch loaded holds far more than 1 MiB
    assert abs(rss - psutil.Process().memory_info().rss / 2**20) < 64


def test_rss_mb_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: psutil.Process) -> None:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_info", denied)
    assert math.isnan(_rss_mb())
