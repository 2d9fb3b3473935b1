"""ModelRegistry: an LRU cache of loaded agents (`twm_core.agent.Agent`), keyed by (run_id, checkpoint step).

A request for a run's checkpoint ('latest' or a step) resolves the step first, so 'latest' and the same step
share one entry. Loads go through `twm_core.agent.load_agent` (`weights_only=True`, the checkpoint's own config,
finite weights, eval mode on the settings' device).

Threads: model work runs in the inspect pool (`backend.pool`), several requests at once: the agents are read-only
and every dream session draws from its own generators, so there is no global model lock. One lock (a condition)
guards the cache and the loads in flight. A load in flight is a `Future` that every concurrent request for the
same checkpoint waits on, so one checkpoint is loaded once and its waiters get that model (or that load's error)
even if it is evicted before they wake. Loads in flight count against `max_loaded_models` next to the loaded
models, so a burst of requests for many checkpoints never holds more models than the limit: a new load first
evicts the least recently used model, and waits for a load to end when every slot is a load. Each entry also keeps
the agent's `StartCache` (env starts and idle emulators).

Which runs and checkpoints exist is `backend.runs.resolve_run` (the run-id rule of `twm_core.run_dir`) and
`twm_core.checkpoint`, as for every other endpoint, so a run is found here exactly when `GET /api/runs/{id}` finds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from backend.runs import resolve_run
from backend.settings import Settings
from twm_core.run_dir import RunDir, RunNotFoundError

if TYPE_CHECKING:  # torch and the models load on the first model request, not with the app
    from twm_core.agent import Agent
    from twm_core.dream import StartCache
    from twm_core.envs.builder import EnvBuilder

__all__ = ["ModelRegistry", "RunNotFoundError"]


class ModelRegistry:
    """Bounded LRU of loaded agents (`settings.max_loaded_models`, loads in flight included)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.capacity = max(1, settings.max_loaded_models)
        self._cache: OrderedDict[tuple[str, int], Agent] = OrderedDict()
        self._starts: dict[tuple[str, int], StartCache] = {}
        self._builder: EnvBuilder | None = None  # one helper process for every start cache (made on first use)
        self._loading: dict[tuple[str, int], Future[Agent]] = {}
        self._lock = threading.Condition()

    def run_dir(self, run_id: str) -> RunDir:
        """The run directory of `run_id` (`backend.runs.resolve_run`); RunNotFoundError when there is no such run."""
        return resolve_run(self.settings.runs_dir, run_id)

    def resolve(self, run_id: str, checkpoint: int | str = "latest") -> tuple[RunDir, int, Path]:
        """(run dir, step, path) of a checkpoint; raises RunNotFoundError or CheckpointNotFoundError."""
        from twm_core.checkpoint import CheckpointNotFoundError, list_checkpoints, resolve_checkpoint

        run = self.run_dir(run_id)
        path = resolve_checkpoint(run, checkpoint)
        steps = {found: step for step, found in list_checkpoints(run)}
        if path not in steps:  # pruned between the two directory scans
            raise CheckpointNotFoundError(f"run {run.run_id} has no checkpoint {path.name} any more")
        return run, steps[path], path

    def get(self, run_id: str, checkpoint: int | str = "latest") -> Agent:
        """The agent of a run's checkpoint ('latest' or a step), loading it on a miss (and evicting the LRU)."""
        run, step, path = self.resolve(run_id, checkpoint)
        key, loads = (run.run_id, step), False
        with self._lock:
            while True:  # each pass re-reads the state: a wait for a slot lets other requests in
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
                pending = self._loading.get(key)
                if pending is not None:
                    break
                if len(self._cache) + len(self._loading) < self.capacity:  # a slot: this request loads
                    pending, loads = Future(), True
                    self._loading[key] = pending
                    break
                if self._cache:
                    evicted, _ = self._cache.popitem(last=False)  # least recently used
                    self._starts.pop(evicted, None)
                else:
                    self._lock.wait()  # every slot is a load in flight
        if not loads:
            return pending.result()  # the checkpoint is being loaded: share that load (or its error)
        try:
            model = self._load(run, step, path)
        except BaseException as exc:
            self._finish(key, None)
            pending.set_exception(exc)
            raise
        self._finish(key, model)
        pending.set_result(model)
        return model

    def _finish(self, key: tuple[str, int], model: Agent | None) -> None:
        """End the load of `key`: cache its model (None: it failed) and wake the loads waiting for a slot."""
        with self._lock:
            if model is not None:
                self._cache[key] = model
            del self._loading[key]
            self._lock.notify_all()

    def starts(self, agent: Agent) -> StartCache:
        """The start cache of a loaded agent (made on first use)."""
        from twm_core.dream import StartCache
        from twm_core.envs.builder import EnvBuilder

        key = (agent.run_id, agent.step)
        with self._lock:
            if self._builder is None:
                self._builder = EnvBuilder()
            cache = self._starts.get(key)
            if cache is None or cache.agent is not agent:
                cache = self._starts[key] = StartCache(agent, builder=self._builder)
            return cache

    def close(self) -> None:
        """Stop the env builder's helper process (on shutdown)."""
        with self._lock:
            builder, self._builder = self._builder, None
        if builder is not None:
            builder.close()

    def forget(self, run_id: str) -> None:
        """Drop the loaded models of a run (it was deleted); sessions that hold one keep it until they end."""
        with self._lock:
            for key in [key for key in self._cache if key[0] == run_id]:
                del self._cache[key]
                self._starts.pop(key, None)

    def cached_keys(self) -> list[tuple[str, int]]:
        """Keys in the cache, least recently used first."""
        with self._lock:
            return list(self._cache)

    def _load(self, run: RunDir, step: int, path: Path) -> Agent:
        from twm_core.agent import load_agent

        return load_agent(path, self.settings.resolved_device(), run_dir=run, step=step)
