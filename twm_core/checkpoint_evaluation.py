"""Evaluations of a saved checkpoint, on demand: `<run_dir>/evals/step_{step:09d}_n{episodes}_seed{seed}.json`.

A training run evaluates itself on its schedule (`Trainer._evaluate`, scores.jsonl). This is the other kind: any
checkpoint, any number of episodes, any seed, asked for later (`twm eval --record`, the Checkpoints page). It uses
the same protocol (`twm_core.evaluation.evaluate`: no no-op starts, all lives, raw scores, the stochastic policy)
and writes one record per (step, episodes, seed):

    {"step", "episodes", "seed", "state": "running" | "finished" | "failed", "pid", "started_at", "ended_at",
     "done": episodes finished so far, "scores": [...], "summary": {score_mean, score_std, ..., hns?}, "error"}

The record is replaced atomically at the start, after each finished batch of episodes, and at the end; readers are
tolerant (`list_evaluations`): a damaged file is listed as `damaged`, and a `running` record whose process is gone
reads as `failed`, so one bad file never hides the others and a killed evaluation never looks alive.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from twm_core.agent import Agent, load_agent
from twm_core.checkpoint import resolve_checkpoint
from twm_core.evaluation import EpisodeResult, evaluate, summarize
from twm_core.file_io import describe_error, read_json, write_json_atomic
from twm_core.run_dir import RunDir
from twm_core.run_status import pid_alive

_RECORD_RE = re.compile(r"^step_(\d{9})_n(\d+)_seed(\d+)\.json$")
MAX_EPISODES = 1000
"""The most episodes one evaluation may play (the paper's final evaluation plays 100)."""


@dataclass(frozen=True)
class EvaluationRecord:
    """One on-demand evaluation of a checkpoint, as read from its file."""

    step: int
    episodes: int
    seed: int
    state: str
    """running, finished, failed, or damaged (the file cannot be read)."""
    done: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    scores: list[float] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def record_path(run_dir: RunDir, step: int, episodes: int, seed: int) -> Path:
    return run_dir.evals_dir / f"step_{step:09d}_n{episodes}_seed{seed}.json"


def check_request(episodes: int, seed: int) -> None:
    """ValueError unless 1 ≤ episodes ≤ MAX_EPISODES and seed ≥ 0."""
    if not 1 <= episodes <= MAX_EPISODES:
        raise ValueError(f"episodes must be between 1 and {MAX_EPISODES}, got {episodes}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def play(agent: Agent, episodes: int, seed: int, on_batch: Callable[[list[EpisodeResult]], None] | None = None,
         batch: int = 8, temperature: float = 1.0) -> list[EpisodeResult]:
    """`episodes` evaluation episodes of the agent's policy, in lockstep batches of `batch` (as the training
    evaluation plays them), each batch with its own seed; `on_batch(results so far)` after each batch.
    `temperature` 1 samples the actions (as `twm eval`); 0 plays the policy's argmax."""
    check_request(episodes, seed)
    torch.manual_seed(seed)  # the policy samples from torch's global generator (`PolicyRunner`)
    results: list[EpisodeResult] = []
    for round_index in range((episodes + batch - 1) // batch):
        n = min(batch, episodes - len(results))
        results += evaluate(agent.world_model, agent.actor_critic, agent.config, n, seed + 7919 * round_index,
                            agent.device, max_parallel=n, temperature=temperature)
        if on_batch is not None:
            on_batch(results)
    return results


def evaluate_checkpoint(run_dir: RunDir, step: int, episodes: int, seed: int, device: str | torch.device = "cpu",
                        agent: Agent | None = None) -> EvaluationRecord:
    """Evaluate the checkpoint at `step` (`play`; `agent`: that checkpoint, already loaded), recording progress
    after each batch; returns the finished record. A failure is recorded as `failed` with its reason, then raised."""
    check_request(episodes, seed)
    path = record_path(run_dir, step, episodes, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"step": step, "episodes": episodes, "seed": seed, "state": "running",
                              "pid": os.getpid(), "started_at": time.time(), "ended_at": None, "done": 0,
                              "scores": [], "summary": {}, "error": None}
    write_json_atomic(path, record)

    def progress(results: list[EpisodeResult]) -> None:
        record.update(done=len(results), scores=[r.score for r in results])
        write_json_atomic(path, record)

    try:
        if agent is None:
            agent = load_agent(resolve_checkpoint(run_dir, step), device, run_dir=run_dir)
        results = play(agent, episodes, seed, progress)
        record.update(state="finished", ended_at=time.time(),
                      summary=summarize(agent.config.env.game, results, prefix=""))
    except Exception as exc:
        record.update(state="failed", ended_at=time.time(),
                      error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
        write_json_atomic(path, record)
        raise
    write_json_atomic(path, record)
    return _to_record(record)


def list_evaluations(run_dir: RunDir) -> list[EvaluationRecord]:
    """Every evaluation record of the run by (step, episodes, seed); tolerant (see the module docstring)."""
    directory = run_dir.evals_dir
    if not directory.is_dir() or not run_dir.contains(directory):
        return []
    records = []
    for path in sorted(directory.iterdir()):
        match = _RECORD_RE.match(path.name)
        if match:
            records.append(read_record(path, *map(int, match.groups())))
    return records


def read_record(path: Path, step: int, episodes: int, seed: int) -> EvaluationRecord:
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        record = _to_record({**data, "step": step, "episodes": episodes, "seed": seed})
    except (OSError, ValueError, TypeError) as exc:
        return EvaluationRecord(step, episodes, seed, "damaged", error=describe_error(exc))
    if record.state == "running" and not pid_alive(int(data.get("pid") or 0)):
        return EvaluationRecord(**{**record.__dict__, "state": "failed",
                                   "error": "the evaluation process ended without a result"})
    return record


def _to_record(data: dict[str, Any]) -> EvaluationRecord:
    state = data.get("state")
    if state not in ("running", "finished", "failed"):
        raise ValueError(f"unknown state {state!r}")
    return EvaluationRecord(
        step=int(data["step"]), episodes=int(data["episodes"]), seed=int(data["seed"]), state=str(state),
        done=int(data.get("done") or 0), started_at=data.get("started_at"), ended_at=data.get("ended_at"),
        scores=[float(s) for s in data.get("scores") or []],
        summary={str(k): float(v) for k, v in (data.get("summary") or {}).items()}, error=data.get("error"))
