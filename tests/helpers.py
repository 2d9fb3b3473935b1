"""Test helpers: free ports and real server subprocesses (uvicorn, streamlit) that are always cleaned up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST_TRAIN = {"replay.prefill": 100, "train.pretrain_budget": 1000, "train.eval_episodes": 0,
              "train.final_eval_episodes": 1, "train.checkpoint_every": 100}
"""Overrides that make a `debug` run of 110 env steps take about 10 s on a 2-core machine (one final episode)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 2xx; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.is_success:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = repr(exc)
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last_error})")


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group started with `start_new_session=True`; SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


@contextmanager
def running_server(
    args: Sequence[str], ready_url: str, env: Mapping[str, str] | None = None, timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` from the repo root in its own process group, wait for `ready_url`, and stop it on exit.

    Output goes to a temporary file (a pipe nobody reads would block a chatty server); it is attached to the
    error when the server fails to come up.
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            list(args), cwd=REPO_ROOT, env={**os.environ, **(env or {})}, start_new_session=True,
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            try:
                wait_for_http(ready_url, timeout, proc)
            except (RuntimeError, TimeoutError) as exc:
                log.seek(0)
                output = log.read().decode(errors="replace")[-4000:]
                raise RuntimeError(f"{exc}\n--- output of {' '.join(args)} ---\n{output}") from exc
            yield proc
        finally:
            stop_process_group(proc)


@contextmanager
def backend_process(runs_dir: Path, env: Mapping[str, str] | None = None,
                    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real backend (`uvicorn backend.main:create_app`) on a free port over `runs_dir`, on CPU; yields its URL
    and its process."""
    url = f"http://127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
    env = {"TWM_RUNS_DIR": str(runs_dir), "TWM_DEVICE": "cpu", "OMP_NUM_THREADS": "1", **(env or {})}
    with running_server(args, f"{url}/api/health", env=env) as proc:
        yield url, proc


@contextmanager
def backend_server(runs_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """`backend_process`, yielding only the URL."""
    with backend_process(runs_dir, env) as (url, _):
        yield url


@contextmanager
def dashboard_server(backend_url: str) -> Iterator[str]:
    """A real Streamlit dashboard on a free port talking to `backend_url`; yields its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "streamlit", "run", "frontend/streamlit_app.py",
            "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", url.rsplit(":", 1)[1],
            "--browser.gatherUsageStats", "false"]
    with running_server(args, f"{url}/_stcore/health", env={"TWM_BACKEND_URL": backend_url}, timeout=90):
        yield url
