"""Backend test fixtures: settings on a tmp runs dir, and cleanup of job processes a failed test left behind."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from backend.settings import Settings
from twm_core.run_dir import pid_alive


@pytest.fixture
def make_settings(tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Settings on a tmp runs dir; at teardown, SIGKILL every job process a failed test may have left behind."""
    made: list[Settings] = []

    def make(**changes: Any) -> Settings:
        settings = Settings(**{"runs_dir": tmp_path / "runs", "device": "cpu", "job_poll_seconds": 0.2, **changes})
        made.append(settings)
        return settings

    yield make
    for settings in made:
        if not settings.jobs_db.exists():
            continue
        with sqlite3.connect(settings.jobs_db) as db:
            pids = [pid for (pid,) in db.execute("SELECT pid FROM jobs WHERE pid IS NOT NULL")]
        for pid in pids:
            if pid_alive(pid):
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
