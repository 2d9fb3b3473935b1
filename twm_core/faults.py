"""Deterministic crash points for the kill -9 tests: the process SIGKILLs itself at a named point of a write.

`TWM_FAULT=<point>[:<n>]` in the environment of a training process makes it kill itself with SIGKILL the n-th time
(default: the first) it reaches `<point>`, so a test can crash a real trainer at exactly the moment that matters
instead of racing a timer against it. Unset (always, outside those tests), `reached` is one dict lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = {
    "checkpoint.before_rename": "a checkpoint's bytes are in its temporary file, not yet renamed to step_*.pt",
    "checkpoint.after_replay": "the replay chunks of a checkpoint are written, the checkpoint itself is not",
    "replay.chunk_before_rename": "a replay chunk's bytes are in its temporary file, not yet renamed to chunk_*.npz",
}
"""The crash points and where each one is."""

_SPEC = os.environ.get("TWM_FAULT", "")
_POINT, _, _NTH = _SPEC.partition(":")
_seen = 0


def reached(point: str) -> None:
    """Mark `point` (a key of POINTS); dies here if `TWM_FAULT` names it and this is the n-th time."""
    global _seen
    if point != _POINT:
        return
    _seen += 1
    if _seen == int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
