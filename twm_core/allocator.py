"""Keep freed memory in the process (glibc `mallopt`): a training process reuses its tensors' pages.

By default glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh
`mmap` and returns it to the system on free, and it trims the heap top above 128 KiB. A training step allocates
and frees the same large activations every update, so each update faults all their pages in again: measured at
the paper config on 2 threads, 2.6 million page faults and 12 s of system time per world-model update (23 s wall);
with mmap off and no trimming, 0.34 million, 2.3 s and 17.6 s, for 9% more peak memory (5.35 → 5.85 GB). At the
catch size the update went from ~185 to ~155 ms. Nothing numeric changes: only where the bytes come from.

Why hand-written: this is three `mallopt` calls through ctypes; an allocator library (jemalloc, tcmalloc) would
need `LD_PRELOAD` before the process starts and a system package. Only for processes that train or benchmark
(`twm train`, the demo, `bench/`): the long-lived backend keeps glibc's defaults, so its memory goes back after a
large request. `TWM_KEEP_FREED_MEMORY=0` in the environment turns it off. A no-op where libc is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc malloc.h
TRIM_THRESHOLD = 1 << 30  # bytes free at the heap top before glibc gives them back
TOP_PAD = 256 << 20  # extra bytes asked of the system each time the heap grows


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed pages; True when the settings took effect."""
    if os.environ.get("TWM_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    return all(mallopt(option, value) == 1 for option, value in
               ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
