"""The model registry's limit under concurrency: loads in flight count toward `max_loaded_models`, and concurrent
requests for one checkpoint share one load, on real debug-preset checkpoints (copies of the session's `debug_run`).

Each load is held open a little (`SLOW_LOAD`) so that a burst of requests really overlaps: without that, loads of
these tiny models end too fast for a broken count to ever show.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from backend.registry import ModelRegistry
from backend.settings import Settings
from twm_core.checkpoint import CheckpointError

RUNS = ("run-a", "run-b", "run-c")
STEPS = (100, 200)  # the debug run's checkpoints
KEYS = [(run, step) for run in RUNS for step in STEPS]
SLOW_LOAD = 0.2
"""Seconds each load waits before reading its checkpoint."""
TIMEOUT = 120.0
"""Seconds a burst may take: a registry that loses a slot would otherwise hang the test."""


@pytest.fixture(scope="module")
def runs_dir(debug_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs with the debug run's two checkpoints each (six distinct models), and one with a corrupt one."""
    root = tmp_path_factory.mktemp("registry-runs")
    for name in RUNS:
        shutil.copytree(debug_run, root / name, ignore=shutil.ignore_patterns("replay"))
    broken = root / "broken"
    shutil.copytree(debug_run, broken, ignore=shutil.ignore_patterns("replay"))
    ckpt = broken / "ckpt" / "step_000000200.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # truncated: torch cannot read it
    return root


class LoadProbe:
    """Wraps a registry's `_load`: counts loads per key and the most models held at once (cached + loading).

    The in-flight count is the probe's own, taken inside `_load`, so it never exceeds the registry's loads in
    flight: a peak above the limit is a real overshoot, not an artefact of the measurement.
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry, self.load = registry, registry._load
        self.loads: Counter[tuple[str, int]] = Counter()
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()
        registry._load = self  # type: ignore[method-assign]

    def __call__(self, run: Any, step: int, path: Path) -> Any:
        with self.lock:
            self.loads[(run.run_id, step)] += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight + len(self.registry.cached_keys()))
        try:
            time.sleep(SLOW_LOAD)
            return self.load(run, step, path)
        finally:
            with self.lock:
                self.in_flight -= 1


def burst(registry: ModelRegistry, keys: list[tuple[str, int]]) -> list[Any]:
    """`registry.get` of every key at once, one thread each; each outcome is the agent or the exception raised.

    Daemon threads released together by a barrier: a registry that loses a slot fails the test after `TIMEOUT`
    instead of hanging it (and the process at exit).
    """
    outcomes: list[Any] = [None] * len(keys)
    start = threading.Barrier(len(keys))

    def get(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = registry.get(*keys[index])
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=get, args=(i,), daemon=True) for i in range(len(keys))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    if hung:
        pytest.fail(f"{hung} of {len(keys)} requests still waiting after {TIMEOUT}s (a slot was lost)")
    return outcomes


def make_registry(runs_dir: Path, limit: int) -> tuple[ModelRegistry, LoadProbe]:
    registry = ModelRegistry(Settings(runs_dir=runs_dir, device="cpu", max_loaded_models=limit))
    return registry, LoadProbe(registry)


def check_agents(keys: list[tuple[str, int]], agents: list[Any]) -> None:
    for (run_id, step), agent in zip(keys, agents, strict=True):
        assert not isinstance(agent, BaseException), agent
        assert (agent.run_id, agent.step) == (run_id, step)


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("limit", [1, 2, 4])
def test_a_burst_of_many_checkpoints_never_holds_more_than_the_limit(runs_dir: Path, limit: int) -> None:
    registry, probe = make_registry(runs_dir, limit)
    keys = KEYS * 4  # 24 requests over 6 checkpoints, in an order that keeps every one of them wanted
    agents = burst(registry, keys)
    check_agents(keys, agents)
    assert probe.peak == limit, f"held {probe.peak} models at once (cached + loading), limit {limit}"
    assert len(registry.cached_keys()) <= limit


def test_concurrent_requests_for_one_checkpoint_load_it_once(runs_dir: Path) -> None:
    registry, probe = make_registry(runs_dir, len(KEYS))  # room for all: nothing is evicted, so nothing reloads
    keys = [key for key in KEYS for _ in range(4)]
    agents = burst(registry, keys)
    check_agents(keys, agents)
    assert probe.loads == Counter(dict.fromkeys(KEYS, 1))
    for key in KEYS:
        assert len({id(agent) for k, agent in zip(keys, agents, strict=True) if k == key}) == 1, key
    assert probe.peak <= len(KEYS) and sorted(registry.cached_keys()) == sorted(KEYS)


def test_a_failed_load_is_shared_by_its_waiters_and_frees_its_slot(runs_dir: Path) -> None:
    registry, probe = make_registry(runs_dir, 1)
    outcomes = burst(registry, [("broken", 200)] * 6)
    assert all(isinstance(o, CheckpointError) for o in outcomes), outcomes
    assert probe.loads[("broken", 200)] == 1  # the waiters got that load's error; none loaded it again
    assert probe.peak == 1 and registry.cached_keys() == []
    # the failed load's slot is free again: the next loads neither wait for it forever nor overshoot
    keys = [("run-a", 100)] * 3 + [("run-b", 200)] * 3
    check_agents(keys, burst(registry, keys))
    assert probe.peak == 1 and len(registry.cached_keys()) == 1
