"""`GET /api/health` latency while many slow inspect requests run, against a real uvicorn backend (own port, temp
runs dir), on a checkpoint of `--preset` (untrained weights, saved with `save_checkpoint`).

`--requests` (50) concurrent `POST /api/runs/{id}/imagine` with `--horizon` (100) are sent at once while a prober
calls `/api/health` every 20 ms; reported: the health latencies (ms) while the load lasts, the imagine latencies,
and how many imagine requests were served (200) or refused at once by the full inspect pool (503 + Retry-After).
The backend runs with its defaults (`TWM_INSPECT_WORKERS=2`, `TWM_INSPECT_QUEUE=32`, one torch thread) plus any
`--backend-env KEY=VALUE`, so a setting can be compared on and off in interleaved runs. `slow_at` lists when (s
after the load began) each probe over 50 ms was sent, to line stalls up with what the backend was doing. The
prober shares this process with the 50 client threads; a prober in a process of its own, run alongside, saw the
same latencies (p50 12.0 vs 12.6 ms, p99 78 vs 72 ms on a loaded 2-core machine), so they do not skew it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO_ROOT, Report, make_parser, parse_overrides, setup
from twm_core.agent import Agent
from twm_core.checkpoint import save_checkpoint
from twm_core.envs import action_meanings, make_env
from twm_core.run_dir import RunDir, write_json_atomic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the backend exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the backend did not become healthy")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("starvation", __doc__, repeats=1, warmup=0, game="Pong")
    parser.add_argument("--requests", type=int, default=50, help="concurrent slow inspect requests")
    parser.add_argument("--horizon", type=int, default=100, help="imagined steps per request")
    parser.add_argument("--backend-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the backend, e.g. TWM_INSPECT_WORKERS=1 (repeatable)")
    ctx = setup(parser.parse_args(argv))
    args = ctx.args
    env = make_env(ctx.cfg.env, seed=0, eval=True)
    num_actions = len(action_meanings(env))
    env.close()
    agent = Agent.build(ctx.cfg, num_actions)
    with tempfile.TemporaryDirectory(prefix="twm-starvation-") as tmp:
        run = RunDir(Path(tmp) / "runs" / "paper-size").create()
        write_json_atomic(run.config_path, ctx.cfg.to_dict())  # a directory without config.json is no run
        save_checkpoint(run, 0, {"config": ctx.cfg.to_dict(), "num_actions": num_actions,
                                 "world_model": agent.world_model.state_dict(),
                                 "actor_critic": agent.actor_critic.state_dict()})
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env_vars = {**os.environ, "TWM_RUNS_DIR": str(run.path.parent), "TWM_DB_PATH": str(Path(tmp) / "jobs.db"),
                    "TWM_DEVICE": str(ctx.device), "OMP_NUM_THREADS": "1", **parse_overrides(args.backend_env)}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
                                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                  cwd=REPO_ROOT, env=env_vars, start_new_session=True)
        try:
            _wait_healthy(url, server)
            body = {"checkpoint": 0, "seed": 0, "horizon": args.horizon}
            with httpx.Client(base_url=url, timeout=600.0) as client:  # warm: the model is loaded
                client.post(f"/api/runs/{run.run_id}/imagine", json={**body, "horizon": 1}).raise_for_status()
            done = threading.Event()
            health: list[tuple[float, float]] = []  # (sent, seconds), sent relative to the load's start
            began = time.perf_counter()

            def probe() -> None:
                with httpx.Client(base_url=url, timeout=60.0) as client:
                    while not done.is_set():
                        t0 = time.perf_counter()
                        client.get("/api/health").raise_for_status()
                        health.append((t0 - began, time.perf_counter() - t0))
                        time.sleep(0.02)

            def inspect(seed: int) -> tuple[int, float]:
                with httpx.Client(base_url=url, timeout=600.0) as client:
                    t0 = time.perf_counter()
                    response = client.post(f"/api/runs/{run.run_id}/imagine", json={**body, "seed": seed})
                    return response.status_code, time.perf_counter() - t0

            prober = threading.Thread(target=probe)
            prober.start()
            with ThreadPoolExecutor(args.requests) as pool:
                results = list(pool.map(inspect, range(args.requests)))
            done.set()
            prober.join()
        finally:  # the whole group: helper processes the backend started go with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    codes = [code for code, _ in results]
    report = Report("starvation", ctx, sizes={
        "requests": args.requests, "horizon": args.horizon, "served": codes.count(200),
        "refused_503": codes.count(503), "other": len(codes) - codes.count(200) - codes.count(503)})
    latencies = sorted(h for _, h in health)
    percentiles = {q: latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] * 1e3 for q in (50, 95, 99)}
    report.sizes.update({f"health_p{q}_ms": round(v, 1) for q, v in percentiles.items()})
    report.sizes["slow_at"] = [round(sent, 2) for sent, h in health if h > 0.05]
    report.add("health", [h * 1e3 for _, h in health], "ms", "GET /api/health while the inspect requests run")
    report.add("imagine_served", [t * 1e3 for c, t in results if c == 200], "ms", "imagine requests answered 200")
    refused = [t * 1e3 for c, t in results if c == 503]
    if refused:
        report.add("imagine_refused", refused, "ms", "imagine requests answered 503 (pool full)")
    report.add("health_p99", [percentiles[99]], "ms", "99th percentile of the health latencies")
    return report.finish()


if __name__ == "__main__":
    main()
