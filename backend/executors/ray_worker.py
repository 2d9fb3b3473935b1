"""The Ray actor behind the `ray` executor: it starts one `twm train` process on its node and watches it.

A plain class (no Ray import here): `RayExecutor` wraps it with `ray.remote`. Workers import it by reference, so
the `twm` package must be installed on every node, and the run directories must live on storage every node sees.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from contextlib import suppress

START_FAILED = 127
"""Exit code `poll` reports when the training process could not even start (the reason is in the log)."""


class TrainProcess:
    """One attempt of `python -m twm_core.cli train`, in its own process group, logging to the run directory."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed = False

    def start(self, args: list[str], log_path: str, env: dict[str, str]) -> int | None:
        """Start the training process (the worker's own interpreter runs it); its pid, None if it failed."""
        command = [sys.executable, "-m", "twm_core.cli", "train", *args]
        header = f"=== {time.ctime()} on {os.uname().nodename}: {shlex.join(command)}\n"
        try:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            with open(log_path, "ab") as log:
                log.write(header.encode())
                log.flush()
                self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              env={**os.environ, **env})
        except OSError as e:
            self._failed = True
            with suppress(OSError), open(log_path, "ab") as log:
                log.write(f"could not start the training process: {e}\n".encode())
            return None
        return self._proc.pid

    def poll(self) -> tuple[int | None, int | None]:
        """(pid, exit code): the exit code is None while the process runs."""
        if self._failed:
            return None, START_FAILED
        if self._proc is None:
            return None, None
        return self._proc.pid, self._proc.poll()

    def signal(self, sig: int) -> None:
        """Signal the process group of the training process (no-op once it ended)."""
        if self._proc is not None and self._proc.poll() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)
