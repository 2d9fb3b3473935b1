"""SessionStore: the live dream sessions of the backend, bounded in number and time, one lock per session.

A session is a `twm_core.dream.DreamSession` plus what the HTTP layer needs to find and report it: an id, the run
and checkpoint it dreams with, its parent (for forks) and when it was last used. At most `max_sessions` live at
once (creating one more deletes the least recently used) and a session unused for `session_ttl_seconds` is
deleted. Work on one session holds its lock (a session is not thread-safe); different sessions run in parallel.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backend.settings import Settings

if TYPE_CHECKING:
    from twm_core.dream import DreamSession


class SessionNotFoundError(LookupError):
    """No live session of that id (never created, deleted, or expired)."""


@dataclass
class SessionEntry:
    id: str
    session: DreamSession
    run_id: str
    checkpoint_step: int
    parent: tuple[str, int] | None = None
    """(parent session id, fork step) of a fork."""
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class SessionStore:
    def __init__(self, settings: Settings) -> None:
        self.capacity = settings.max_sessions
        self.ttl = settings.session_ttl_seconds
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: DreamSession, run_id: str, checkpoint_step: int,
            parent: tuple[str, int] | None = None) -> SessionEntry:
        entry = SessionEntry(secrets.token_hex(8), session, run_id, checkpoint_step, parent)
        with self._lock:
            dropped = self._expired()
            self._entries[entry.id] = entry
            while len(self._entries) > self.capacity:
                dropped.append(self._entries.popitem(last=False)[1])
        _close(dropped)
        return entry

    @contextmanager
    def use(self, session_id: str) -> Iterator[SessionEntry]:
        """The entry of `session_id`, held under its lock (SessionNotFoundError if it is not live)."""
        with self._lock:
            dropped = self._expired()
            entry = self._entries.get(session_id)
            if entry is not None:
                self._entries.move_to_end(session_id)
        _close(dropped)
        if entry is None:
            raise SessionNotFoundError(f"no dream session {session_id[:64]!r} (deleted, expired or never made)")
        with entry.lock:
            entry.last_used = time.monotonic()
            yield entry
            entry.last_used = time.monotonic()

    def delete(self, session_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(session_id, None)
        if entry is None:
            raise SessionNotFoundError(f"no dream session {session_id[:64]!r} (deleted, expired or never made)")
        _close([entry])

    def entries(self) -> list[SessionEntry]:
        """Live sessions, most recently used last."""
        with self._lock:
            dropped = self._expired()
            entries = list(self._entries.values())
        _close(dropped)
        return entries

    def clear(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        _close(entries)

    def _expired(self) -> list[SessionEntry]:
        """Remove and return the expired entries (caller holds the lock). A session in use never expires."""
        now = time.monotonic()
        old = [e for e in self._entries.values() if now - e.last_used > self.ttl and not e.lock.locked()]
        for entry in old:
            del self._entries[entry.id]
        return old


def _close(entries: list[SessionEntry]) -> None:
    for entry in entries:
        with entry.lock:  # wait for work in progress on it
            entry.session.close()
