"""What a training run reports while it runs: metric rows, episode scores, status.json and the progress callback.

Training metrics are summed in place on their device between log rows and turned into numbers once per row (by
`MetricsWriter.write`): a per-step `.item()` would force a GPU sync at every update (STYLE convention 7). A log
row holds the means since the last row, the replay's size and visit entropy, and throughput and memory
(`perf/`). Episode scores go to scores.jsonl, each with a metrics row of its own (`env/`); evaluations write one
score per episode and one summary row. status.json is merged and replaced atomically (`write_status`) at each
state change and log row, and at most once per `STATUS_INTERVAL_S` on progress within a stage (pretraining
updates, evaluation episodes); the progress callback (the CLI's bar) follows each status write.

Pretraining (`PretrainLog`) writes rows as it goes, keys `pretrain/...`: their `step` is the replay's size, the
same in every row, so their x value is `pretrain/frames` (frames of pretraining budget used, summed over the
stages), with `pretrain/updates` beside it.

Stage progress in status.json (every write carries all seven fields; `StageProgress` reads them):
`stage` (prefill, pretrain/obs, pretrain/dyn, pretrain/ac, train, eval, final_eval), `stage_done` and
`stage_total` in `stage_unit` (env steps for prefill and train, counted from the stage's start: train runs from
0 to total_steps − prefill; frames of budget for the pretraining stages; episodes for evaluations),
`stage_started_at` (unix time the stage started in this attempt: train keeps its start across the evaluations
within it), and two estimates from this attempt's own rates (null until measurable):
`eta_s` = (stage_total − stage_done) / rate, the rate being the work done in the stage since it started in this
attempt over the wall time since then (for train that time includes the evaluations and checkpoints within it,
which recur); `run_eta_s` = during train or an evaluation within it: the train stage's remaining env steps at
that rate, plus the current evaluation's eta_s, plus final_eval_episodes × the seconds per episode of this
attempt's evaluations so far (0 when there are no final episodes; null before an evaluation has been measured);
during final_eval: its eta_s; during prefill and pretraining: null (the later stages' rates are not measured
yet). A finished run writes 0 for both, a failed or cancelled one null.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import psutil
import torch

from twm_core.metrics import MetricsWriter, ScoresWriter
from twm_core.run_dir import RunDir
from twm_core.run_status import write_status

if TYPE_CHECKING:
    from twm_core.evaluation import EpisodeResult

ProgressCallback = Callable[[int, int, str], None]
"""`on_progress(step, total_steps, phase)`, called after each status write."""
STATUS_INTERVAL_S = 1.0
"""Least seconds between two status writes made by `Recorder.progress` (state changes and log rows always write)."""
PRETRAIN_MIN_ROWS = 20
"""A pretraining stage's budget is cut into this many intervals at least (more where the main loop's log interval,
in frames, is shorter); a row is written at the first update past each boundary (one update may pass two)."""
ENV_STEPS, FRAMES, EPISODES = "env steps", "frames", "episodes"


@dataclass
class StageClock:
    """One stage of this attempt: its work done and total (in `unit`), and since when it runs."""

    name: str
    unit: str
    total: float | None
    started_at: float
    start_done: float
    """Work done when the stage started in this attempt (a resumed train stage starts part-way)."""
    done: float
    offset: int = 0
    """For env-steps stages: the replay size at which the stage's count is 0 (train: the prefill)."""

    def eta(self, now: float) -> float | None:
        """Seconds left at this attempt's rate in the stage; None before any work was measured."""
        if self.total is None:
            return None
        if self.done >= self.total:
            return 0.0
        elapsed, work = now - self.started_at, self.done - self.start_done
        if elapsed <= 0 or work <= 0:
            return None
        return (self.total - self.done) * elapsed / work


class Position(NamedTuple):
    """Where a run stands, as status.json reports it."""

    step: int
    """Env steps so far (the replay's rows)."""
    phase: str
    train_steps: int


class Recorder:
    """The run's metrics.jsonl, scores.jsonl and status.json writer; `position()` says where the run stands."""

    def __init__(self, run_dir: RunDir, total_steps: int, device: torch.device, position: Callable[[], Position],
                 on_progress: ProgressCallback | None = None, final_eval_episodes: int = 0) -> None:
        self.run_dir, self.total_steps, self.device = run_dir, total_steps, device
        self.position, self.on_progress = position, on_progress
        self.final_eval_episodes = final_eval_episodes
        self.state = "starting"
        """The run state written last (`status(None)` keeps it)."""
        self.stage: StageClock | None = None
        """The stage the run is in (None before the first)."""
        self._train_clock: StageClock | None = None
        self._eval_time = [0.0, 0]  # seconds and episodes of this attempt's finished evaluations
        self._last_status = -math.inf  # time.monotonic() of the last status write
        self._metrics: MetricsWriter | None = None
        self._scores: ScoresWriter | None = None
        self._pending: dict[str, list] = {}  # metric -> [sum tensor, count] since the last log row
        self._clock = (time.time(), 0, 0)  # time, env steps, train steps at the last log row

    # ------------------------------------------------------------------------------------------- files
    def open(self) -> None:
        """Open metrics.jsonl and scores.jsonl for appending (a torn last line is dropped first)."""
        self._metrics = MetricsWriter(self.run_dir.metrics_path)
        self._scores = ScoresWriter(self.run_dir.scores_path)

    def close(self) -> None:
        for writer in (self._metrics, self._scores):
            if writer is not None:
                writer.close()

    @property
    def metrics(self) -> MetricsWriter:
        if self._metrics is None:
            raise RuntimeError("the recorder is not open: call open() first")
        return self._metrics

    @property
    def scores(self) -> ScoresWriter:
        if self._scores is None:
            raise RuntimeError("the recorder is not open: call open() first")
        return self._scores

    # ------------------------------------------------------------------------------------------- metrics
    def accumulate(self, prefix: str, metrics: dict[str, torch.Tensor]) -> None:
        """Sum metrics in place on their device (no `.item()` sync per step). Keeping one small tensor per step
        instead fragments the heap between the large activation buffers: RSS grew by ~10 MB per update."""
        for key, value in metrics.items():
            name = f"{prefix}/{key}"
            if name not in self._pending:
                self._pending[name] = [torch.zeros((), device=value.device), 0]
            total = self._pending[name]
            total[0].add_(value.detach().float())
            total[1] += 1

    def pending_means(self, prefix: str = "") -> dict[str, float | torch.Tensor]:
        """The means of the accumulated metrics (keys prefixed), which are then cleared."""
        values: dict[str, float | torch.Tensor] = {
            f"{prefix}{k}": total / count for k, (total, count) in self._pending.items() if count}
        self._pending.clear()
        return values

    def write_pending(self, step: int, prefix: str = "", **values: float) -> None:
        """One metrics row of the accumulated means (keys prefixed) and `values` (a pretraining row)."""
        self.metrics.write(step, {**self.pending_means(prefix), **values})

    def log_row(self, visit_entropy: float) -> None:
        """One metrics row: the means of the training metrics since the last row, replay and performance."""
        now, (steps, _, train_steps) = time.time(), self.position()
        values = self.pending_means()
        last_time, last_steps, last_train = self._clock
        elapsed = max(now - last_time, 1e-9)
        values.update({
            "replay/size": steps, "replay/visit_entropy": visit_entropy,
            "perf/env_steps_per_s": (steps - last_steps) / elapsed,
            "perf/train_steps_per_s": (train_steps - last_train) / elapsed,
            "perf/train_steps": train_steps, "perf/ram_mb": rss_mb(),
        })
        if self.device.type == "cuda":
            values["perf/gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.metrics.write(steps, values)
        self._clock = (now, steps, train_steps)
        self.status(None)

    # ------------------------------------------------------------------------------------------- scores
    def train_episode(self, step: int, score: float, length: int, episodes: int) -> None:
        """A finished training episode (a whole game): its score row and its `env/` metrics row."""
        self.scores.write(step, "train", score, length)
        self.metrics.write(step, {"env/episode_return": score, "env/episode_length": length,
                                  "env/episodes": episodes})

    def evaluation(self, step: int, kind: str, results: Sequence[EpisodeResult], summary: dict[str, float]) -> None:
        """An evaluation (`kind` 'eval' or 'final_eval'): one score row per episode, then the summary row."""
        for r in results:
            self.scores.write(step, kind, r.score, r.length)
        self.metrics.write(step, summary)

    # ------------------------------------------------------------------------------------------- stages
    def begin_stage(self, name: str, unit: str, total: float | None, offset: int = 0) -> None:
        """Enter stage `name` (written with the next status). An env-steps stage counts the replay's size minus
        `offset`. Entering train again (after an evaluation within it) keeps its clock; any other stage starts a
        new one."""
        now = time.time()
        self._end_stage(now)
        if name == "train" and self._train_clock is not None:
            self.stage = self._train_clock
            return
        done = self.position().step - offset if unit == ENV_STEPS else 0
        self.stage = StageClock(name, unit, total, now, done, done, offset)
        if name == "train":
            self._train_clock = self.stage

    def progress(self, done: float) -> None:
        """The current stage's work done so far; writes status.json if the last write is `STATUS_INTERVAL_S` old."""
        if self.stage is not None:
            self.stage.done = done
        if time.monotonic() - self._last_status >= STATUS_INTERVAL_S:
            self.status(None)

    def _end_stage(self, now: float) -> None:
        if self.stage is not None and self.stage.unit == EPISODES and self.stage.done > 0:
            self._eval_time[0] += now - self.stage.started_at
            self._eval_time[1] += int(self.stage.done)

    def _seconds_per_episode(self, now: float) -> float | None:
        seconds, episodes = self._eval_time
        if self.stage is not None and self.stage.unit == EPISODES and self.stage.done > 0:
            seconds, episodes = seconds + now - self.stage.started_at, episodes + int(self.stage.done)
        return seconds / episodes if episodes else None

    def run_eta(self, now: float) -> float | None:
        """Seconds left for the whole run, or None where this attempt has not measured what it needs (see the
        module docstring)."""
        stage = self.stage
        if stage is None or stage.name not in ("train", "eval", "final_eval"):
            return None
        if stage.name == "final_eval":
            return stage.eta(now)
        per_episode = self._seconds_per_episode(now)
        final = 0.0 if self.final_eval_episodes == 0 else (
            None if per_episode is None else self.final_eval_episodes * per_episode)
        train = None if self._train_clock is None else self._train_clock.eta(now)
        parts = [final, train] + ([stage.eta(now)] if stage.name == "eval" else [])
        return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)

    def stage_fields(self, now: float) -> dict[str, Any]:
        """The seven stage fields of status.json (all None before the first stage)."""
        stage = self.stage
        if stage is None:
            return dict.fromkeys(("stage", "stage_done", "stage_total", "stage_unit", "stage_started_at", "eta_s",
                                  "run_eta_s"))
        if stage.unit == ENV_STEPS:  # counted from the replay's size, at each write
            stage.done = self.position().step - stage.offset
        eta: float | None
        run_eta: float | None
        if self.state == "finished":
            eta, run_eta = 0.0, 0.0
        elif self.state in ("failed", "cancelled"):
            eta = run_eta = None
        else:
            eta, run_eta = stage.eta(now), self.run_eta(now)
        return {"stage": stage.name, "stage_done": _number(stage.done), "stage_total": _number(stage.total),
                "stage_unit": stage.unit, "stage_started_at": stage.started_at,
                "eta_s": None if eta is None else round(eta, 1),
                "run_eta_s": None if run_eta is None else round(run_eta, 1)}

    # ------------------------------------------------------------------------------------------- status
    def status(self, state: str | None, **extra: object) -> None:
        """Write status.json (state, pid, step, stage progress, ...); `None` keeps the current state."""
        self.state = state or self.state
        step, phase, train_steps = self.position()
        write_status(self.run_dir, state=self.state, pid=os.getpid(), step=step, total_steps=self.total_steps,
                     phase=phase, train_steps=train_steps, device=str(self.device),
                     **self.stage_fields(time.time()), **extra)
        self._last_status = time.monotonic()
        if self.on_progress is not None:
            self.on_progress(step, self.total_steps, phase)


class PretrainLog:
    """Metric rows and status progress of the pretraining stages (one `stage` context per stage).

    A row of the means since the last one is written at the first update past each multiple of `row_frames`
    frames of a stage's budget (at most budget / `PRETRAIN_MIN_ROWS`) and at the stage's end, keys prefixed
    `pretrain/`, with `pretrain/frames` and
    `pretrain/updates` counted over all the stages: the x of a pretraining curve (every row's `step` is the
    prefill's size).
    """

    def __init__(self, recorder: Recorder, step: int, row_frames: float) -> None:
        self.recorder, self.step, self.row_frames = recorder, step, row_frames
        self.frames, self.updates = 0.0, 0  # of the stages before the current one

    @contextmanager
    def stage(self, name: str, budget: float) -> Iterator[Callable[[float], None]]:
        """Enter stage `name`; yields the `progress(frames)` callback for `twm_core.pretrain`."""
        every = max(min(self.row_frames, budget / PRETRAIN_MIN_ROWS), 1.0)
        state = {"next": every, "updates": 0, "logged": 0, "frames": 0.0}
        self.recorder.begin_stage(name, FRAMES, budget)
        self.recorder.status(None)

        def progress(frames: float) -> None:
            state["updates"] += 1
            state["frames"] = frames
            if frames >= state["next"]:
                self._row(frames, state)
                state["next"] = (math.floor(frames / every) + 1) * every
            self.recorder.progress(frames)

        yield progress
        if state["updates"] > state["logged"]:
            self._row(state["frames"], state)
        self.frames += state["frames"]
        self.updates += int(state["updates"])

    def _row(self, frames: float, state: dict[str, Any]) -> None:
        self.recorder.write_pending(self.step, prefix="pretrain/", **{
            "pretrain/frames": _number(self.frames + frames), "pretrain/updates": self.updates + state["updates"]})
        state["logged"] = state["updates"]


def _number(value: float | None) -> float | int | None:
    """A count as JSON: an int where it is whole (frames of a budget such as 14000.000000000002 included)."""
    if value is None:
        return None
    rounded = round(value, 6)
    return int(rounded) if rounded == int(rounded) else rounded


def rss_mb() -> float:
    """Resident set size of this process, in MiB (NaN where the platform will not say)."""
    try:
        return psutil.Process().memory_info().rss / 2**20
    except psutil.Error:
        return math.nan
