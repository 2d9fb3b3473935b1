"""What a training run reports while it runs: metric rows, episode scores, status.json and the progress callback.

Training metrics are summed in place on their device between log rows and turned into numbers once per row (by
`MetricsWriter.write`): a per-step `.item()` would force a GPU sync at every update (STYLE convention 7). A log
row holds the means since the last row, the replay's size and visit entropy, and throughput and memory
(`perf/`). Episode scores go to scores.jsonl, each with a metrics row of its own (`env/`); evaluations write one
score per episode and one summary row. status.json is merged and replaced atomically (`write_status`) at each
state change and log row; the progress callback (the CLI's bar) follows each status write.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import psutil
import torch

from twm_core.metrics import MetricsWriter, ScoresWriter
from twm_core.run_dir import RunDir
from twm_core.run_status import write_status

if TYPE_CHECKING:
    from twm_core.evaluation import EpisodeResult

ProgressCallback = Callable[[int, int, str], None]
"""`on_progress(step, total_steps, phase)`, called after each status write."""


class Position(NamedTuple):
    """Where a run stands, as status.json reports it."""

    step: int
    """Env steps so far (the replay's rows)."""
    phase: str
    train_steps: int


class Recorder:
    """The run's metrics.jsonl, scores.jsonl and status.json writer; `position()` says where the run stands."""

    def __init__(self, run_dir: RunDir, total_steps: int, device: torch.device, position: Callable[[], Position],
                 on_progress: ProgressCallback | None = None) -> None:
        self.run_dir, self.total_steps, self.device = run_dir, total_steps, device
        self.position, self.on_progress = position, on_progress
        self.state = "starting"
        """The run state written last (`status(None)` keeps it)."""
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

    def write_pending(self, step: int, prefix: str = "") -> None:
        """One metrics row of the accumulated means alone (the pretraining phases' row)."""
        self.metrics.write(step, self.pending_means(prefix))

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

    # ------------------------------------------------------------------------------------------- status
    def status(self, state: str | None, **extra: object) -> None:
        """Write status.json (state, pid, step, ...); `None` keeps the current state."""
        self.state = state or self.state
        step, phase, train_steps = self.position()
        write_status(self.run_dir, state=self.state, pid=os.getpid(), step=step, total_steps=self.total_steps,
                     phase=phase, train_steps=train_steps, device=str(self.device), **extra)
        if self.on_progress is not None:
            self.on_progress(step, self.total_steps, phase)


def rss_mb() -> float:
    """Resident set size of this process, in MiB (NaN where the platform will not say)."""
    try:
        return psutil.Process().memory_info().rss / 2**20
    except psutil.Error:
        return math.nan
