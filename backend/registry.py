"""ModelRegistry: an LRU cache of loaded agents (`twm_core.agent.Agent`), keyed by (run_id, checkpoint step).

A request for a run's checkpoint ('latest' or a step) resolves the step first, so 'latest' and the same step
share one entry. Loads go through `twm_core.agent.load_agent` (`weights_only=True`, the checkpoint's own config,
finite weights, eval mode on the settings' device).

Threads: model work runs in the inspect pool (`backend.pool`), several requests at once: the agents are read-only
and every dream session draws from its own generators, so there is no global model lock. One lock guards the
cache; a per-key lock makes concurrent requests for one checkpoint load it once; and loads in flight count against
`max_loaded_models`, so a burst of requests for many checkpoints never holds more models than the limit (a load
waits until a slot is free). Each entry also keeps the agent's `StartCache` (env starts and idle emulators).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from backend.settings import Settings
from twm_core.run_dir import RunDir, valid_run_id

if TYPE_CHECKING:  # torch and the models load on the first model request, not with the app
    from twm_core.agent import Agent
    from twm_core.dream import StartCache

_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


class RunNotFoundError(LookupError):
    """No run directory of that id under the runs directory."""


class ModelRegistry:
    """Bounded LRU of loaded agents (`settings.max_loaded_models`, loads in flight included)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.capacity = max(1, settings.max_loaded_models)
        self._cache: OrderedDict[tuple[str, int], Agent] = OrderedDict()
        self._starts: dict[tuple[str, int], StartCache] = {}
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self._lock = threading.Condition()

    def run_dir(self, run_id: str) -> RunDir:
        """The run directory of `run_id`; RunNotFoundError if it is not a directory directly under runs_dir."""
        if not valid_run_id(run_id):
            raise RunNotFoundError(f"invalid run id {run_id[:80]!r}")
        run = RunDir(self.settings.runs_dir / run_id)
        if not run.exists():
            raise RunNotFoundError(f"no run {run_id!r}")
        return run

    def resolve(self, run_id: str, checkpoint: int | str = "latest") -> tuple[RunDir, int, Path]:
        """(run dir, step, path) of a checkpoint; raises RunNotFoundError or CheckpointNotFoundError."""
        from twm_core.checkpoint import resolve_checkpoint

        run = self.run_dir(run_id)
        path = resolve_checkpoint(run, checkpoint)
        match = _STEP_RE.match(path.name)
        assert match is not None, path  # resolve_checkpoint only returns step_*.pt files
        return run, int(match.group(1)), path

    def get(self, run_id: str, checkpoint: int | str = "latest") -> Agent:
        """The agent of a run's checkpoint ('latest' or a step), loading it on a miss (and evicting the LRU)."""
        run, step, path = self.resolve(run_id, checkpoint)
        key = (run_id, step)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            key_lock = self._loading.get(key)
            if key_lock is None:
                # a new load takes a slot: evict the least recently used models, or wait for other loads to end
                while len(self._cache) + len(self._loading) >= self.capacity:
                    if self._cache:
                        evicted, _ = self._cache.popitem(last=False)
                        self._starts.pop(evicted, None)
                    else:
                        self._lock.wait()
                key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # requests for the same checkpoint wait here for one load
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            try:
                model = self._load(run, step, path)
                with self._lock:
                    self._cache[key] = model
            finally:
                with self._lock:
                    self._loading.pop(key, None)
                    self._lock.notify_all()
            return model

    def starts(self, agent: Agent) -> StartCache:
        """The start cache of a loaded agent (made on first use)."""
        from twm_core.dream import StartCache

        key = (agent.run_id, agent.step)
        with self._lock:
            cache = self._starts.get(key)
            if cache is None or cache.agent is not agent:
                cache = self._starts[key] = StartCache(agent)
            return cache

    def cached_keys(self) -> list[tuple[str, int]]:
        """Keys in the cache, least recently used first."""
        with self._lock:
            return list(self._cache)

    def _load(self, run: RunDir, step: int, path: Path) -> Agent:
        from twm_core.agent import load_agent

        return load_agent(path, self.settings.resolved_device(), run_dir=run, step=step)
