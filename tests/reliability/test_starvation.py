"""Starvation: `GET /api/health` stays fast while 50 slow inspect requests run on a real backend.

A uvicorn subprocess (own port, temp runs dir) serves a checkpoint of the `debug` preset on Pong (untrained
weights, saved with `save_checkpoint`). 50 `POST /api/runs/{id}/imagine` of horizon `HORIZON` are sent at once
while a prober calls `/api/health` every 10 ms. Each request has its own seed, as a user trying seeds has, so each
needs a new env reset start: the ALE ROM loads of such a start hold the GIL ~0.2 s each and stall the event loop
when they run in the backend process. Asserted: every inspect request is answered 200, or 503 with `Retry-After`
when the inspect pool is full (never another status, never a timeout); health never fails and the backend still
answers afterwards; the health p99 over the load stays under `HEALTH_P99_MS`. 20-50 s on 2 cores.

The same measurement on a paper-size model is `python -m bench.starvation --preset atari100k` (README, Performance).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import backend_server

from twm_core.agent import Agent
from twm_core.checkpoint import save_checkpoint
from twm_core.presets import make_config
from twm_core.run_dir import RunDir, write_json_atomic

REQUESTS = 50
HORIZON = 40
PONG_ACTIONS = 6  # Pong's minimal action set
HEALTH_P99_MS = 150.0
"""Bound on the health p99. Measured on a 2-core machine that other test runs kept at load 4-6 (so noisy): 18 and
42 ms with emulator builds out of the backend process, 296 and 338 ms with the ROM loads of each new start in it
(they hold the GIL ~0.2 s each), and probes timing out (over 10 s) with model work on the event loop."""
RUN_ID = "starved"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("starvation-runs")
    cfg = make_config("debug", "Pong", seed=0)
    agent = Agent.build(cfg, PONG_ACTIONS)
    run = RunDir(root / RUN_ID).create()
    write_json_atomic(run.config_path, cfg.to_dict())  # a directory without config.json is no run
    save_checkpoint(run, 0, {
        "config": cfg.to_dict(), "num_actions": PONG_ACTIONS, "world_model": agent.world_model.state_dict(),
        "actor_critic": agent.actor_critic.state_dict()})
    return root


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@pytest.mark.slow
def test_health_stays_fast_under_50_slow_inspect_requests(runs_dir: Path) -> None:
    with backend_server(runs_dir) as url:
        body = {"checkpoint": 0, "horizon": HORIZON}
        with httpx.Client(base_url=url, timeout=60.0) as client:  # load the model before the clock starts
            warm = client.post(f"/api/runs/{RUN_ID}/imagine", json={**body, "seed": 0, "horizon": 1})
            assert warm.status_code == 200, warm.text
        done = threading.Event()
        health: list[float] = []
        failures: list[str] = []

        def probe() -> None:
            with httpx.Client(base_url=url, timeout=10.0) as client:
                while not done.is_set():
                    t0 = time.perf_counter()
                    try:
                        response = client.get("/api/health")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    health.append((time.perf_counter() - t0) * 1e3)
                    if response.status_code != 200:
                        failures.append(f"health {response.status_code}")
                    time.sleep(0.01)

        def inspect(seed: int) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=120.0) as client:
                return client.post(f"/api/runs/{RUN_ID}/imagine", json={**body, "seed": seed})

        prober = threading.Thread(target=probe)
        started = time.perf_counter()
        prober.start()
        try:
            with ThreadPoolExecutor(REQUESTS) as pool:  # a timeout or a dropped connection raises here
                responses = list(pool.map(inspect, range(1, REQUESTS + 1)))
        finally:
            done.set()
            prober.join()
        elapsed = time.perf_counter() - started
        with httpx.Client(base_url=url, timeout=10.0) as client:
            assert client.get("/api/health").status_code == 200, "the backend no longer answers after the load"

    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, f"inspect answers other than 200/503: {sorted(set(codes))}"
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503), "a 503 without Retry-After"
    assert codes.count(200) >= 2, f"only {codes.count(200)} of {REQUESTS} requests were served"
    assert not failures, f"health failed under load: {failures[:3]}"
    p50, p99 = percentile(health, 50), percentile(health, 99)
    summary = (f"{len(health)} probes in {elapsed:.1f} s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(health):.0f} ms;"
               f" {codes.count(200)} served, {codes.count(503)} refused")
    print(summary)  # shown with -rP: the numbers behind HEALTH_P99_MS
    assert len(health) >= 100, f"too few probes for a p99: {summary}"
    assert p99 <= HEALTH_P99_MS, f"health p99 over {HEALTH_P99_MS:.0f} ms: {summary}"
