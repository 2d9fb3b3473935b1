"""The GPU check's shared pieces (`bench/gpu_check.py`): the two plans (GPU and dry run), a step's record, the
time budget, and the helpers its steps share (a subprocess in its own process group, a log's tail, a JSON file).

Standard library only: the check's driver imports this before anything that loads torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHES = ("wm_update", "ac_update", "policy", "train_step")


@dataclass(frozen=True)
class Plan:
    """Sizes and time plan of one mode (GPU or dry run)."""

    device: str
    preset: str
    bench_game: str
    repeats: dict[str, tuple[int, int]]
    """bench -> (repeats, warmup); the compile switch adds `compile_warmup` warmup repetitions."""
    compile_warmup: int
    train_game: str
    train_steps: int
    """`--steps` of the segment (train.total_steps): the paper's 100k, so the segment is stopped, never done."""
    segment_pretrain: float
    """The segment's train.pretrain_budget (the extrapolation scales the measured pretraining to the preset's)."""
    seconds: dict[str, float]
    """Planned limit of each step at the default budget (scaled to --budget-s); training = segment + grace."""
    minimum: dict[str, float]
    """Least seconds each step needs: an earlier step's limit is cut so that the later ones keep these."""
    stop_grace_s: float
    """After SIGTERM, how long the segment may take to checkpoint and exit before it is killed."""
    one_bench_process: bool = False
    """All switches in one worker process (dry run: its imports alone take ~10 s on a loaded CPU); on the GPU each
    switch gets its own, so a CUDA error or a crash of one leaves the others' context clean."""
    overlap_tests: bool = False
    """Collect the gpu tests while the benches run (dry run: the collection imports every test module, ~60 s
    on a loaded 2-core machine); on the GPU the tests run alone, so they never disturb a timing."""
    compile_backend: str | None = None
    """torch.compile backend of the compile switch; None: torch's default (inductor)."""
    segment_set: tuple[str, ...] = ()
    """More `--set` overrides of the segment (dry run: a metrics row every 5 env steps, so ~20 s give a rate)."""
    segment_enough_rows: int | None = None
    """Stop the segment early once it wrote this many training-phase metrics rows (dry run: a rate is all it
    needs, however loaded the machine); None: it runs its whole time (GPU: the rates over ~3 minutes)."""


GPU_PLAN = Plan(
    device="cuda", preset="atari100k", bench_game="Pong",
    repeats={"wm_update": (10, 2), "ac_update": (10, 2), "policy": (100, 10), "train_step": (5, 2)},
    compile_warmup=3, train_game="Pong", train_steps=100_000, segment_pretrain=1e6,
    seconds={"environment": 10, "gpu_tests": 50, "fp32": 25, "tf32": 25, "bf16": 25, "compile": 75,
             "channels_last": 25, "fused_attention": 25, "training": 215},
    minimum={"environment": 5, "gpu_tests": 20, "fp32": 15, "tf32": 10, "bf16": 10, "compile": 15,
             "channels_last": 10, "fused_attention": 10, "training": 90},
    stop_grace_s=30)
DRY_PLAN = Plan(
    device="cpu", preset="debug", bench_game="Catch",
    repeats={name: (1, 0) for name in BENCHES}, compile_warmup=0, train_game="Catch", train_steps=300,
    segment_pretrain=2e3,
    seconds={"environment": 20, "gpu_tests": 150, "fp32": 30, "tf32": 30, "bf16": 30, "compile": 60,
             "channels_last": 30, "fused_attention": 30, "training": 75},
    minimum={"environment": 2, "gpu_tests": 0, "fp32": 5, "tf32": 5, "bf16": 5, "compile": 10,
             "channels_last": 5, "fused_attention": 5, "training": 30},
    stop_grace_s=15, one_bench_process=True, overlap_tests=True, compile_backend="eager",
    segment_set=("train.log_every=5",), segment_enough_rows=4)
DEFAULT_BUDGET_S = {"gpu": 480.0, "dry-run": 300.0}
"""The dry run takes ~100 s on a loaded 2-core machine; its budget is a safety cap, not a plan."""


@dataclass
class Step:
    """One step's outcome in the record."""

    status: str = "ok"
    """ok, failed or skipped."""
    seconds: float = 0.0
    limit_s: float | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Budget:
    """The check's deadline; each step's limit is its plan, cut so the steps after it keep their minimum."""

    def __init__(self, total_s: float, plan: Plan, scale: float) -> None:
        self.start, self.total_s = time.monotonic(), total_s
        self.planned = {k: v * scale for k, v in plan.seconds.items()}
        self.minimum = plan.minimum

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start)

    def limit(self, *names: str) -> float:
        """Seconds for the steps `names` (consecutive in the plan), run now: their planned sum, cut so that the
        steps after the last of them keep their minimum."""
        order = list(self.planned)
        later = sum(self.minimum[k] for k in order[order.index(names[-1]) + 1:])
        return max(0.0, min(sum(self.planned[k] for k in names), self.left() - later))


# ------------------------------------------------------------------------------------------------------ subprocesses
def run_process(cmd: Sequence[str], timeout: float, log: Path, env: dict[str, str] | None = None) -> tuple[int, bool]:
    """Run `cmd` in its own process group, output to `log`; kill the group at `timeout`. (returncode, timed out)."""
    with log.open("w") as out:
        proc = subprocess.Popen(list(cmd), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return proc.wait(), True
        finally:
            kill_group(proc)  # when the check itself is stopped (SIGTERM, Ctrl-C) while waiting


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL our own child's process group (start_new_session made the child its leader), if it still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def read_json(path: Path) -> Any:
    """The JSON in `path`; None when it is missing or not (yet) valid JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
