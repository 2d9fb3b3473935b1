"""`make gpu-check`: everything a lent GPU machine should tell us, in one script under a time budget (8 min).

    python -m bench.gpu_check [--dry-run] [--out FILE.json] [--budget-s 480]

Steps, in order; each is timed and guarded (a failing step is recorded with its error and the next one runs; the
exit code is 1 if any step failed) and each gets its own time limit, cut so that the later steps keep theirs:

1. `environment`: torch and CUDA versions, the device's name, capability and memory, CPU count.
2. `gpu_tests`: `pytest -m gpu -q` (dry run: `--collect-only`, which lists them without running).
3. `bench_<switch>`: bench.wm_update, ac_update, policy and train_step at the paper config on CUDA, one process
   per switch, each switch alone on the fp32 baseline: fp32 (TF32 off), tf32 (TF32 matmuls and convolutions),
   bf16 (`train.amp=bf16`), compile, channels_last, fused_attention. TF32 is no config field: the worker sets
   the torch backend flags in-process, then runs the bench modules' `main`. `bench_cuda_graphs` is recorded as
   skipped, "not implemented" (twm_core has no CUDA-graph path yet).
4. `training`: `twm train` (Pong, atari100k) in a temporary run dir for a fixed wall time, then SIGTERM (it
   checkpoints and stops), its metrics.jsonl read back and a full run extrapolated (`extrapolate_full_run`).
   The segment keeps the paper config except: pretraining budget cut to `SEGMENT_PRETRAIN` (train.budget cut by
   the same amount, so train_every, the env-steps-per-training-step ratio, is unchanged) and one evaluation
   round (at most 8 episodes, played in parallel by `twm_core.evaluation.evaluate`).
5. `peak_memory`: peak CUDA memory of each bench and of the training segment.
Then one JSON record (written after every step, so a killed check leaves what it did) and a summary table.

`--dry-run` runs the same steps on the CPU at tiny size (debug preset, one repetition, a ~20 s Catch segment), so
CI proves the script end to end; CUDA-only facts are null there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Redundant aliases (`x as x`): the pure parts that tests/test_gpu_check.py checks in-process, re-exported on purpose.
from bench.gpu_segment import extrapolate_full_run as extrapolate_full_run
from bench.gpu_segment import measure_segment as measure_segment
from bench.gpu_segment import training
from bench.gpu_steps import (
    BENCHES,
    DEFAULT_BUDGET_S,
    DRY_PLAN,
    GPU_PLAN,
    REPO_ROOT,
    Budget,
    Plan,
    Step,
    kill_group,
    tail,
)
from bench.gpu_switches import SWITCHES, bench_group, bench_worker, cuda_graphs
from bench.gpu_switches import set_tf32 as set_tf32
from bench.gpu_switches import switch_step as switch_step

STEPS = ("environment", "gpu_tests", *(f"bench_{s}" for s in SWITCHES), "bench_cuda_graphs", "training",
         "peak_memory")
"""The record's step order (the dry run collects the gpu tests while the benches run, so it finishes them later)."""


# ------------------------------------------------------------------------------------------------------ 1. environment
def environment_facts(device: str) -> dict[str, Any]:
    """Versions, the device (null fields on a CPU) and the CPU count."""
    import torch

    facts: dict[str, Any] = {
        "torch": torch.__version__, "cuda_version": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "git_commit": _git_commit(),
        "device": device, "device_name": None, "capability": None, "memory_mb": None, "multiprocessors": None,
        "cudnn_version": None, "bf16_supported": None, "device_count": None,
    }
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available (torch.cuda.is_available() is False)")
        props = torch.cuda.get_device_properties(0)
        facts.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                     memory_mb=props.total_memory / 2**20, multiprocessors=props.multi_processor_count,
                     cudnn_version=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported(),
                     device_count=torch.cuda.device_count())
    return facts


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# ------------------------------------------------------------------------------------------------------ 2. gpu tests
class GpuTests:
    """`pytest -m gpu -q` (dry run: `--collect-only`, which lists them); started by `start`, judged by `finish`
    (pytest's exit code 5, nothing selected, is 'skipped')."""

    def __init__(self, dry_run: bool, work: Path) -> None:
        self.cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
        if dry_run:
            self.cmd.append("--collect-only")
        self.dry_run, self.log = dry_run, work / "gpu_tests.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started = time.monotonic()

    def finish(self, limit: float) -> Step:
        """Wait until `limit` s after the start, then kill the tests' process group."""
        if self.proc is None:
            self.start()
        assert self.proc is not None
        try:
            rc, timed_out = self.proc.wait(timeout=max(0.0, limit - (time.monotonic() - self.started))), False
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            rc, timed_out = self.proc.wait(), True
        text = tail(self.log, 20000)
        lines = text.strip().splitlines()
        data: dict[str, Any] = {"command": " ".join(self.cmd[1:]), "returncode": rc,
                                "summary": lines[-1] if lines else "",
                                "ran_s": round(time.monotonic() - self.started, 1),
                                "tests": [ln for ln in lines if "::" in ln] if self.dry_run else None}
        if timed_out:
            return Step("failed", error=f"timed out after {limit:.0f} s\n{text[-2000:]}", data=data)
        if rc == 5:
            return Step("skipped", error="no tests are marked gpu (pytest exit code 5)", data=data)
        if rc != 0:
            return Step("failed", error=f"pytest exit code {rc}\n{text[-2000:]}", data=data)
        return Step(data=data)


# 3. bench: bench/gpu_switches.py; 4. training: bench/gpu_segment.py
# ------------------------------------------------------------------------------------------------------ 5. memory
def peak_memory(steps: dict[str, Step]) -> Step:
    """Peak CUDA memory (MB) of each bench (its own process's `max_memory_allocated`) and of the segment."""
    bench: dict[str, dict[str, Any]] = {}
    for name, step in steps.items():
        if name.startswith("bench_") and "benches" in step.data:
            bench[name[len("bench_"):]] = {b: r["peak_gpu_memory_mb"] for b, r in step.data["benches"].items()}
    values = [v for per in bench.values() for v in per.values() if v is not None]
    train = steps["training"].data.get("measured", {}).get("peak_gpu_mem_mb") if "training" in steps else None
    both = [*values, *([train] if train is not None else [])]
    return Step(data={"bench": bench, "bench_max_mb": max(values) if values else None, "training_mb": train,
                      "max_mb": max(both) if both else None})


# ------------------------------------------------------------------------------------------------------ driver
class Check:
    """Runs the steps in order under the budget; the record is rewritten after each step."""

    def __init__(self, args: argparse.Namespace, plan: Plan, work: Path) -> None:
        self.args, self.plan, self.work = args, plan, work
        default = DEFAULT_BUDGET_S["dry-run" if args.dry_run else "gpu"]
        budget = args.budget_s if args.budget_s is not None else default
        self.budget = Budget(budget, plan, budget / default)
        self.steps: dict[str, Step] = {}
        self.created = datetime.now(UTC).isoformat(timespec="seconds")

    def step(self, name: str, plan_key: str | None, fn: Callable[[float], Step]) -> None:
        """Run `fn(limit)` guarded and timed; a limit of 0 (no time left) fails the step without running it."""
        limit = self.budget.limit(plan_key) if plan_key else math.inf
        start = time.monotonic()
        if limit < 1.0:
            result = Step("failed", error=f"no time left in the budget ({self.budget.total_s:.0f} s)")
        else:
            try:
                result = fn(limit)
            except Exception as e:  # a failing step is recorded and the check goes on
                result = Step("failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}")
        result.seconds = round(time.monotonic() - start, 2)
        result.limit_s = None if math.isinf(limit) else round(limit, 1)
        self.steps[name] = result
        self._say(name, result)
        self.write()

    def record(self) -> dict[str, Any]:
        training = self.steps.get("training")
        return {
            "check": "gpu_check", "created": self.created, "mode": "dry-run" if self.args.dry_run else "gpu",
            "budget_s": self.budget.total_s, "wall_s": round(time.monotonic() - self.budget.start, 1),
            "ok": all(s.status != "failed" for s in self.steps.values()),
            "plan": {**asdict(self.plan), "limits_s": {k: round(v, 1) for k, v in self.budget.planned.items()}},
            "steps": {name: asdict(self.steps[name]) for name in STEPS if name in self.steps},
            "extrapolation": training.data.get("extrapolation") if training else None,
        }

    def write(self) -> None:
        if self.args.out is not None:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.args.out.with_name(f".{self.args.out.name}.tmp")
            tmp.write_text(json.dumps(self.record(), indent=2) + "\n")
            os.replace(tmp, self.args.out)

    def run(self) -> dict[str, Any]:
        tests = GpuTests(self.args.dry_run, self.work)
        try:
            return self._run(tests)
        finally:
            if tests.proc is not None:
                kill_group(tests.proc)

    def _run(self, tests: GpuTests) -> dict[str, Any]:
        plan, work = self.plan, self.work
        tests_limit = self.budget.limit("gpu_tests") if plan.overlap_tests else 0.0
        if plan.overlap_tests and tests_limit >= 1.0:
            tests.start()
        self.step("environment", "environment", lambda limit: Step(data=environment_facts(plan.device)))
        if not plan.overlap_tests:
            self.step("gpu_tests", "gpu_tests", tests.finish)
        groups = [list(SWITCHES)] if plan.one_bench_process else [[s] for s in SWITCHES]
        for i, group in enumerate(groups):
            self.bench_steps(group, work / f"bench{i}")
        self.step("bench_cuda_graphs", None, lambda limit: cuda_graphs())
        if plan.overlap_tests:
            self.step("gpu_tests", None, lambda limit: tests.finish(tests_limit) if tests.proc else Step(
                "failed", error=f"no time left in the budget ({self.budget.total_s:.0f} s)"))
            self.steps["gpu_tests"].limit_s = round(tests_limit, 1)
            self.steps["gpu_tests"].data["overlapped"] = "collected while the benches ran (dry run)"
        self.step("training", "training", lambda limit: training(plan, limit, work / "training"))
        self.step("peak_memory", None, lambda limit: peak_memory(self.steps))
        return self.record()

    def bench_steps(self, group: list[str], work: Path) -> None:
        """The switches of one worker process, guarded as one (a failed launch fails each of its switches)."""
        limits = {s: self.budget.planned[s] for s in group}
        timeout = self.budget.limit(*group)
        try:
            if timeout < 1.0:
                raise RuntimeError(f"no time left in the budget ({self.budget.total_s:.0f} s)")
            results = bench_group(self.plan, limits, timeout, work)
        except Exception as e:
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"
            results = {s: Step("failed", error=error, limit_s=round(limits[s], 1)) for s in group}
        for switch, result in results.items():
            self.steps[f"bench_{switch}"] = result
            self._say(f"bench_{switch}", result)
        self.write()

    def _say(self, name: str, result: Step) -> None:
        print(f"[gpu-check] {name}: {result.status} in {result.seconds:.1f} s"
              + (f" ({result.error.splitlines()[0]})" if result.error else ""), flush=True)

def summary_table(record: dict[str, Any]) -> str:
    """Steps (status, seconds, limit, first error line), bench medians per switch, and the extrapolation."""
    lines = [f"gpu-check ({record['mode']}): {'ok' if record['ok'] else 'FAILED'} in {record['wall_s']:.0f} s "
             f"of {record['budget_s']:.0f} s", f"{'step':<24}{'status':<9}{'s':>8}{'limit':>8}  note"]
    for name, s in record["steps"].items():
        limit = "" if s["limit_s"] is None else f"{s['limit_s']:.0f}"
        note = (s["error"] or "").splitlines()[0][:70] if s["error"] else ""
        lines.append(f"{name:<24}{s['status']:<9}{s['seconds']:>8.1f}{limit:>8}  {note}")
    columns = [(b, m) for b in BENCHES for m in (("update",) if b == "wm_update" else ("total",) if b == "ac_update"
                                                 else ("act",) if b == "policy" else ("train_step",))]
    lines.append("bench medians (ms): " + ", ".join(f"{b}.{m}" for b, m in columns) + ", peak MB")
    for switch in SWITCHES:
        benches = record["steps"].get(f"bench_{switch}", {}).get("data", {}).get("benches", {})
        cells = [f"{benches[b]['measurements'][m]['median']:.2f}" if b in benches else "-" for b, m in columns]
        peaks = [v["peak_gpu_memory_mb"] for v in benches.values() if v.get("peak_gpu_memory_mb") is not None]
        lines.append(f"  {switch:<16}" + "".join(f"{c:>12}" for c in cells) + f"{max(peaks) if peaks else '-':>10}")
    ex = record.get("extrapolation")
    if ex:
        parts = ", ".join(f"{k} {'?' if v is None else f'{v:.0f}'}" for k, v in ex["parts"].items())
        total = "unknown (missing " + ", ".join(ex["missing"]) + ")" if ex["total_s"] is None else \
            f"{ex['total_s']:.0f} s = {ex['total_h']:.2f} h"
        lines.append(f"full run, extrapolated: {total} ({parts})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at tiny size (CI)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON record here (after every step)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="whole check's time limit in s (default 480; dry run 600); step limits scale with it")
    parser.add_argument("--bench-worker", type=Path, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.bench_worker is not None:
        return bench_worker(args.bench_worker)
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    # SIGTERM (a timeout from outside) as SystemExit, so the `finally`s kill the children and the record stays
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="twm-gpu-check-") as tmp:
        record = Check(args, plan, Path(tmp)).run()
    print(summary_table(record))
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
