"""Sweeps: one training job per (game, seed), submitted together, followed and cancelled as one.

A sweep is a row in the job database's `sweeps` table plus its jobs (`jobs.sweep_id`); its state and progress are
derived from its jobs on every read, so there is nothing to keep in step. Failed jobs of a sweep are retried by the
job manager up to the sweep's `max_retries` (from their last checkpoint when they have one). Nothing here imports
FastAPI: the router and `twm sweep` both drive a `SweepManager`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.jobs import ENDED_STATES, JOB_STATES, InvalidJob, Job, JobConflict, JobManager

MAX_SWEEP_JOBS = 1000
MAX_RETRIES = 10
_SEED_RANGE = re.compile(r"(\d+)-(\d+)")


class SweepNotFound(KeyError):
    """No sweep has this id."""


@dataclass(frozen=True)
class Sweep:
    """A sweep's request, its jobs, and where they stand together."""

    sweep_id: str
    name: str
    preset: str
    games: list[str]
    seeds: list[int]
    steps: int | None
    device: str
    executor: str
    max_retries: int
    created_at: float
    cancel_requested_at: float | None
    state: str
    counts: dict[str, int]
    progress: float
    """Mean over jobs of their run's progress (1 for ended jobs that finished)."""
    jobs: list[Job]

    @property
    def run_dirs(self) -> list[Path]:
        return [Path(job.run_dir) for job in self.jobs]


def parse_games(spec: str | Sequence[str]) -> list[str]:
    """Game names, resolved and deduplicated: a list, a comma-separated string, or `atari100k` (all 26)."""
    from twm_core.envs.games import ATARI100K_GAMES, resolve_game  # lazy: pulls in gymnasium and ALE

    names = [part.strip() for part in spec.split(",")] if isinstance(spec, str) else list(spec)
    games: list[str] = []
    for name in names:
        if not name:
            continue
        expanded = ATARI100K_GAMES if name.lower() == "atari100k" else (name,)
        for game in expanded:
            try:
                resolved = resolve_game(game)
            except ValueError as e:
                raise InvalidJob(f"games: {e}") from e
            if resolved not in games:
                games.append(resolved)
    if not games:
        raise InvalidJob("games: name at least one game (or 'atari100k')")
    return games


def parse_seeds(spec: str | Sequence[int]) -> list[int]:
    """Seeds, deduplicated in order: a list, or text such as `0-4`, `0,2,5` or `0-2,7`."""
    seeds: list[int] = []
    if isinstance(spec, str):
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if (match := _SEED_RANGE.fullmatch(part)) is not None:
                low, high = int(match.group(1)), int(match.group(2))
                if high < low or high - low >= MAX_SWEEP_JOBS:
                    raise InvalidJob(f"seeds: bad range {part!r} (want low-high, at most {MAX_SWEEP_JOBS} seeds)")
                seeds += range(low, high + 1)
            elif part.isdigit():
                seeds.append(int(part))
            else:
                raise InvalidJob(f"seeds: {part!r} is not a seed or a range like 0-4")
    else:
        seeds = list(spec)
    if any(not isinstance(seed, int) or isinstance(seed, bool) or seed < 0 for seed in seeds):
        raise InvalidJob(f"seeds must be integers >= 0, got {seeds}")
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        raise InvalidJob("seeds: name at least one seed")
    return seeds


class SweepManager:
    """Sweeps on top of a `JobManager` (same database, same executor)."""

    def __init__(self, jobs: JobManager) -> None:
        self.jobs = jobs

    def submit(self, games: str | Sequence[str], seeds: str | Sequence[int], preset: str = "atari100k",
               steps: int | None = None, device: str | None = None, overrides: dict[str, Any] | None = None,
               max_retries: int = 1, name: str | None = None) -> Sweep:
        """Validate every (game, seed) job first, then record the sweep and queue all its jobs at once."""
        game_list, seed_list = parse_games(games), parse_seeds(seeds)
        if len(game_list) * len(seed_list) > MAX_SWEEP_JOBS:
            raise InvalidJob(f"a sweep has at most {MAX_SWEEP_JOBS} jobs, this one {len(game_list) * len(seed_list)}")
        if not 0 <= max_retries <= MAX_RETRIES:
            raise InvalidJob(f"max_retries must lie in [0, {MAX_RETRIES}], got {max_retries}")
        sweep_id = uuid.uuid4().hex[:12]
        jobs = [self.jobs.prepare(game, preset, seed, steps, device, overrides)
                for game in game_list for seed in seed_list]
        for job in jobs:
            job.row.update(sweep_id=sweep_id, max_retries=max_retries)
        name = name or f"{preset}: {len(game_list)} game(s) × {len(seed_list)} seed(s)"
        record = {
            "sweep_id": sweep_id, "name": name, "preset": preset, "games": json.dumps(game_list),
            "seeds": json.dumps(seed_list), "steps": steps, "device": jobs[0].row["device"],
            "overrides": json.dumps(dict(overrides or {})), "max_retries": max_retries,
            "executor": self.jobs.executor.kind, "created_at": time.time(),
        }
        self.jobs.store.insert_sweep(record)
        try:
            self.jobs.enqueue(jobs)
        except BaseException:  # no run directory was left behind: leave no sweep either
            self.jobs.store.delete_sweep(sweep_id)
            raise
        return self.get(sweep_id)

    def list_sweeps(self) -> list[Sweep]:
        """Every sweep, newest first."""
        return [self._sweep(row) for row in self.jobs.store.sweeps()]

    def get(self, sweep_id: str) -> Sweep:
        """The sweep `sweep_id`; raises `SweepNotFound`."""
        row = self.jobs.store.sweep(sweep_id)
        if row is None:
            raise SweepNotFound(sweep_id)
        return self._sweep(row)

    def cancel(self, sweep_id: str) -> Sweep:
        """Cancel every job of the sweep that has not ended; `JobConflict` when all had ended."""
        sweep = self.get(sweep_id)
        live = [job for job in sweep.jobs if job.state not in ENDED_STATES]
        if not live:
            raise JobConflict(f"sweep {sweep_id} already ended ({sweep.state}): nothing to cancel")
        self.jobs.store.request_sweep_cancel(sweep_id)
        for job in live:
            try:
                self.jobs.cancel(job.job_id)
            except JobConflict:  # it ended meanwhile
                pass
        return self.get(sweep_id)

    def _sweep(self, row: Any) -> Sweep:
        jobs = self.jobs.list_jobs(sweep_id=row["sweep_id"])
        counts = {state: 0 for state in JOB_STATES}
        for job in jobs:
            counts[job.state] += 1
        fractions = [1.0 if job.state == "finished" else job.progress.fraction for job in jobs]
        return Sweep(
            sweep_id=row["sweep_id"], name=row["name"], preset=row["preset"], games=json.loads(row["games"]),
            seeds=json.loads(row["seeds"]), steps=row["steps"], device=row["device"], executor=row["executor"],
            max_retries=row["max_retries"], created_at=row["created_at"],
            cancel_requested_at=row["cancel_requested_at"], state=_sweep_state(counts, row["cancel_requested_at"]),
            counts=counts, progress=sum(fractions) / len(fractions) if fractions else 0.0,
            jobs=sorted(jobs, key=lambda job: (job.game, job.seed)),
        )


def _sweep_state(counts: dict[str, int], cancel_requested_at: float | None) -> str:
    """queued (nothing started) → running → finished | failed (a job failed for good) | cancelled."""
    if counts["queued"] + counts["running"] > 0:
        started = counts["running"] + sum(counts[state] for state in ENDED_STATES)
        return "running" if started else "queued"
    if cancel_requested_at is not None:
        return "cancelled"
    if counts["failed"]:
        return "failed"
    return "cancelled" if counts["cancelled"] else "finished"
