"""The inspect pool: model work (dream sessions, imagine, attention) on its own bounded set of threads.

Why not FastAPI's threadpool: model requests there take the same threads as every other request, so 50 slow
inspect calls starve `/api/health` and the listings. Here at most `inspect_workers` run at once and
`inspect_queue` more wait; a request beyond that is refused at once with 503 and `Retry-After` instead of
piling up. Torch's intra-op threads are set to `inspect_threads` (default 1) when the pool starts: see
`Settings.inspect_threads`.

The pool bounds threads, not the GIL: a C call that keeps the GIL stops the event loop however few workers run.
The ALE's ROM load is one (~0.2 s at each env build and seeded reset; it set the health p99 at 150-180 ms in
`bench.starvation`), so emulator builds for new dream starts must not run in this process. Lowering the workers'
OS priority (per-thread nice 10) was measured too and did not pay: the p99 stayed within noise, and inspect
requests took up to 3x longer while other processes kept the machine busy.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from backend.settings import Settings

T = TypeVar("T")


class PoolFull(RuntimeError):
    """Every worker is busy and the queue is full (answered 503 with `Retry-After`)."""

    retry_after = 1


class InspectPool:
    """A bounded thread pool awaited from async routes."""

    def __init__(self, settings: Settings) -> None:
        self.workers = settings.inspect_workers
        self.capacity = settings.inspect_workers + settings.inspect_queue
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="inspect",
                                            initializer=_set_threads, initargs=(settings.inspect_threads,))
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Requests running or waiting."""
        return self._pending

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work` on a worker; PoolFull when `capacity` requests are already running or waiting."""
        with self._lock:
            if self._pending >= self.capacity:
                raise PoolFull(f"the backend is busy with {self._pending} model requests; retry shortly")
            self._pending += 1
        try:
            future = self._executor.submit(work)
        except BaseException:
            self._done(None)
            raise
        # counted until the work itself ends, even when the client goes away and the await is cancelled
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _: object) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # A worker between two torch ops holds the GIL for up to the switch interval (5 ms by default) before the event
    # loop may run; with every core busy, a request waits for several such hand-overs. 1 ms keeps the loop responsive.
    sys.setswitchinterval(0.001)
