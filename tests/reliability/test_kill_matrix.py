"""kill -9 matrix: a trainer killed mid-checkpoint or mid-replay-chunk, and a backend killed with a running job.

The trainer is killed by its own hand at the exact point of a write (`twm_core.faults`, `TWM_FAULT=<point>:<n>`),
a real SIGKILL with no cleanup. After it, `twm train --run-dir` (what a job's retry runs) must finish the run with
nothing lost and nothing written twice: the metric rows of every logged step exactly once and in order (the same
steps as an uninterrupted run), each episode score once, no temporary file left, the replay chunk chain whole and
the last checkpoint loadable. The backend case kills uvicorn itself while its job trains; a new backend on the same
runs directory reattaches to the job, which finishes once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import FAST_TRAIN, REPO_ROOT, backend_process, backend_server

from twm_core.checkpoint import latest_checkpoint, load_checkpoint
from twm_core.faults import POINTS
from twm_core.replay import ReplayBuffer
from twm_core.run_dir import RunDir, pid_alive, read_status

STEPS = 160
OVERRIDES = {**FAST_TRAIN, "train.checkpoint_every": 50}
"""Checkpoints fall at 100 (prefill), 100 (pretrain), 150 (train) and 160 (final); the faults hit the one at 150."""
FAULTS = {  # point: which occurrence is the step-150 checkpoint's
    "checkpoint.before_rename": 3,
    "checkpoint.after_replay": 3,
    "replay.chunk_before_rename": 2,  # the pretrain checkpoint at 100 has no new replay rows to write
}
TIMEOUT = 300


def _train(run: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TWM_FAULT", None)
    if fault is not None:
        env["TWM_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "twm_core.cli", "train", "--run-dir", str(run), "--no-progress",
                           "--device", "cpu", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def _new_run_args() -> list[str]:
    sets = [arg for key, value in OVERRIDES.items() for arg in ("--set", f"{key}={value}")]
    return ["--game", "Catch", "--preset", "debug", "--seed", "0", "--steps", str(STEPS), *sets]


def _steps_by_key(path: Path) -> dict[str, list[int]]:
    """The env steps each key was logged at; a pretraining key's x is `pretrain/frames` (its rows share the
    prefill's step)."""
    out: dict[str, list[int]] = defaultdict(list)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for key in row:
            if key not in ("step", "time"):
                out[key].append(row["pretrain/frames"] if key.startswith("pretrain/") else row["step"])
    return out


def _assert_whole(run: RunDir, reference: dict[str, list[int]]) -> None:
    """Nothing lost, nothing twice (see the module docstring)."""
    steps = _steps_by_key(run.metrics_path)
    for key, logged in steps.items():
        assert logged == sorted(set(logged)), f"{key}: duplicated or unordered steps {logged}"
    assert steps["replay/size"] == reference["replay/size"], "a gap or a restart in the logged steps"
    assert set(steps) == set(reference)
    scores = [json.loads(line) for line in run.scores_path.read_text().splitlines()]
    episodes = [(s["kind"], s["step"], s.get("episode")) for s in scores]
    assert len(episodes) == len(set(episodes)), f"an episode score written twice: {episodes}"
    leftovers = [p for p in run.path.rglob(".*.tmp")]
    assert leftovers == [], f"temporary files left: {leftovers}"
    step, path = latest_checkpoint(run) or (None, None)
    assert step == STEPS and path is not None
    state = load_checkpoint(path)
    assert state["counters"]["phase"] == "finished" and state["counters"]["resumes"] == 1
    replay = ReplayBuffer.load(run.replay_dir, STEPS, upto=STEPS)
    assert replay.size == STEPS
    assert (read_status(run) or {}).get("state") == "finished"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    """The logged steps of an uninterrupted run."""
    run = tmp_path_factory.mktemp("reference") / "run"
    done = _train(run, *_new_run_args())
    assert done.returncode == 0, done.stderr[-3000:]
    return _steps_by_key(RunDir(run).metrics_path)


def test_every_fault_point_is_covered() -> None:
    assert set(FAULTS) == set(POINTS)


@pytest.mark.parametrize("point", sorted(FAULTS))
def test_trainer_killed_mid_write_resumes_with_nothing_lost_or_doubled(
    point: str, tmp_path: Path, reference: dict[str, list[int]],
) -> None:
    run = RunDir(tmp_path / "run")
    killed = _train(run.path, *_new_run_args(), fault=f"{point}:{FAULTS[point]}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (latest_checkpoint(run) or (None,))[0] == 100, "the step-150 checkpoint must not exist"
    if point.endswith("before_rename"):
        assert list(run.path.rglob(".*.tmp")), "the kill came while a temporary file was open"
    resumed = _train(run.path)  # the config comes from config.json, the state from the step-100 checkpoint
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"finished: {STEPS} env steps" in resumed.stdout
    _assert_whole(run, reference)


def _wait(url: str, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT,
          ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s: {job}"
        time.sleep(0.3)


def test_backend_killed_with_a_running_job_reattaches_and_the_job_finishes_once(
    tmp_path: Path, reference: dict[str, list[int]],
) -> None:
    runs = tmp_path / "runs"
    body = {"game": "Catch", "preset": "debug", "seed": 0, "steps": STEPS, "device": "cpu", "overrides": OVERRIDES}
    pid = None
    try:
        with backend_process(runs) as (url, server):
            job = httpx.post(f"{url}/api/jobs", json=body, timeout=60).json()
            job = _wait(url, job["job_id"], lambda j: j["progress"]["run_state"] in ("pretrain", "training"))
            pid = int(job["pid"])
            os.kill(server.pid, signal.SIGKILL)  # uvicorn alone: the job's trainer runs in a session of its own
            server.wait(timeout=30)
            assert pid_alive(pid), "the trainer outlives the backend"
        with backend_server(runs) as url:  # a new backend on the same runs directory and job database
            again = httpx.get(f"{url}/api/jobs/{job['job_id']}", timeout=10).json()
            assert again["state"] == "running" and again["pid"] == pid and again["attempt"] == 1, again
            done = _wait(url, job["job_id"], lambda j: j["state"] in ("finished", "failed", "cancelled"))
            assert done["state"] == "finished" and done["attempt"] == 1 and done["error"] is None, done
            jobs = httpx.get(f"{url}/api/jobs", timeout=10).json()["jobs"]
            assert [j["job_id"] for j in jobs] == [job["job_id"]]
    finally:
        if pid is not None and pid_alive(pid):  # only the trainer this test started
            os.killpg(pid, signal.SIGKILL)
    run = RunDir(runs / job["run_id"])
    steps = _steps_by_key(run.metrics_path)
    for key, logged in steps.items():
        assert logged == sorted(set(logged)), f"{key}: duplicated or unordered steps {logged}"
    assert steps["replay/size"] == reference["replay/size"]
    assert (latest_checkpoint(run) or (None,))[0] == STEPS
