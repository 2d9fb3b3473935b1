"""The `local` executor: each attempt is a `python -m twm_core.cli train` subprocess of this machine.

Each attempt runs in its own process group (`start_new_session=True`), so a signal reaches the trainer and anything
it spawned, and a backend restart or Ctrl-C leaves it running: a new backend reattaches through the pid, checking
the process's argv (psutil) so that a reused pid is not mistaken for the job.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from contextlib import suppress
from typing import Any

import psutil

from backend.executors.base import Attempt, ExecutorError, Launch, Outcome, Started
from backend.settings import Settings
from twm_core.run_dir import pid_alive

_DEVICE_RE = re.compile(r"(auto|cpu|cuda)(?::(\d+))?")


class LocalExecutor:
    """Subprocesses on this machine; GPUs are this machine's."""

    kind = "local"

    def __init__(self, settings: Settings) -> None:
        self.python = settings.python_executable or sys.executable
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # our own children, by handle
        self._gpus: int | None = None

    def gpu_count(self) -> int:
        if self._gpus is None:
            import torch  # lazy: only to count GPUs, and only once

            self._gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return self._gpus

    def capacity(self) -> int:
        return max(1, self.gpu_count())

    def check_device(self, device: str) -> None:
        check_device_name(device)
        match = _DEVICE_RE.fullmatch(device)
        assert match is not None
        if match.group(1) == "cuda":
            count = self.gpu_count()
            if count == 0:
                raise ValueError(f"device {device!r}: CUDA is not available on this server")
            if match.group(2) is not None and int(match.group(2)) >= count:
                raise ValueError(f"device {device!r}: this server has {count} CUDA device(s)")

    def start(self, launch: Launch) -> Started:
        command = [self.python, "-m", "twm_core.cli", "train", *launch.args, "--device", launch.device]
        try:
            launch.run_dir.mkdir(parents=True, exist_ok=True)
            with open(launch.log_path, "ab") as log:
                log.write(f"=== job {launch.job_id} attempt {launch.attempt} at {time.ctime()}: "
                          f"{shlex.join(command)}\n".encode())
                log.flush()
                proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, env={**os.environ, **launch.env})
        except OSError as e:
            raise ExecutorError(f"could not start {shlex.join(command)}: {e}") from e
        self._procs[str(proc.pid)] = proc
        return Started(handle=str(proc.pid), pid=proc.pid, device=launch.device)

    def poll(self, attempt: Attempt) -> Outcome:
        proc = self._procs.get(attempt.handle)
        if proc is not None:
            code = proc.poll()
            return Outcome(running=code is None, exit_code=code, pid=proc.pid)
        # Reattached after a restart: not our child, so no exit code.
        return Outcome(running=self._alive(attempt), exit_code=None, pid=attempt.pid)

    def signal(self, attempt: Attempt, sig: signal.Signals) -> None:
        if attempt.handle in self._procs or self._alive(attempt):
            # start_new_session=True made the job's pid its process group id: signal the trainer and its children.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(int(attempt.handle), sig)

    def release(self, attempt: Attempt) -> None:
        self._procs.pop(attempt.handle, None)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "python": self.python}

    def _alive(self, attempt: Attempt) -> bool:
        """Whether the attempt's pid is alive and really its `twm_core.cli train` process (not a reused pid)."""
        pid = attempt.pid
        if not isinstance(pid, int) or not pid_alive(pid):
            return False
        try:
            argv = psutil.Process(pid).cmdline()
        except psutil.NoSuchProcess:  # exited (or became a zombie) since pid_alive looked
            return False
        except psutil.AccessDenied:
            return True  # cannot tell: trust pid_alive
        return "twm_core.cli" in argv and "train" in argv and attempt.run_dir in argv


def check_device_name(device: str) -> None:
    """Raise ValueError unless `device` is `auto`, `cpu`, `cuda` or `cuda:N`."""
    match = _DEVICE_RE.fullmatch(device)
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
