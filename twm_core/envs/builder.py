"""Emulator resets in a helper process: `EnvBuilder.reset_snapshot(cfg, seed)` → (first observation, snapshot).

Why: the ALE loads its ROM in C++ without releasing the GIL, ~0.2 s on a 2-core CPU, once when an env is built and
again at every seeded reset. In a process that also serves HTTP (the backend) each load froze every other thread,
the event loop included: `/api/health` took 0.2-0.4 s twice per new dream start (p99 173-179 ms while 50 imagine
requests ran, `bench.starvation`). The helper pays for the loads instead; the caller restores the snapshot into an
env it already has (`restore` makes any env built with the same arguments bit-identical).

One helper, one request at a time, started on first use as `python -m twm_core.envs.builder FD`: a fresh
interpreter (a fork of a threaded torch process is unsafe), and not multiprocessing's `spawn`, which re-runs the
parent's `__main__` in the child (under a test runner that can be any script). The two talk over a socket pair
(pickled tuples, `multiprocessing.connection.Connection`); the helper holds only its end, so it exits when the
parent dies, even by SIGKILL.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

import numpy as np

from twm_core.config import EnvConfig
from twm_core.envs.atari import EnvSnapshot, make_env, snapshot


class EnvBuilder:
    """A helper process that builds evaluation envs, resets them once and sends back their state. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def reset_snapshot(self, cfg: EnvConfig, seed: int) -> tuple[np.ndarray, EnvSnapshot]:
        """`make_env(cfg, seed=seed, eval=True)` then `reset()`, in the helper: the observation and a snapshot.

        Shapes: observation (F, 64, 64) uint8
        """
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            assert self._conn is not None
            self._conn.send((cfg, seed))
            ok, value = self._conn.recv()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the helper (a later call starts a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the helper reads EOF and exits
            if self._process is not None:
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._conn = self._process = None

    def _start(self) -> None:
        if self._conn is not None:  # a helper that died: its end is dead too
            self._conn.close()
        parent, child = socket.socketpair()
        with child:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "twm_core.envs.builder", str(child.fileno())], pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL)
        # only the helper holds the other end now: its EOF tells the parent the helper died
        self._conn = Connection(parent.detach())


def _serve(conn: Connection) -> None:
    while True:
        try:
            cfg, seed = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe or died
            return
        try:
            env = make_env(cfg, seed=seed, eval=True)
            try:
                obs, _ = env.reset()
                reply: tuple[bool, object] = (True, (np.asarray(obs), snapshot(env)))
            finally:
                env.close()
        except Exception as exc:  # noqa: BLE001 (sent to the caller, which raises it)
            reply = (False, exc)
        conn.send(reply)


if __name__ == "__main__":  # the helper: `python -m twm_core.envs.builder FD`
    _serve(Connection(int(sys.argv[1])))
