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
import importlib
import inspect
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHES = ("wm_update", "ac_update", "policy", "train_step")
SWITCHES: dict[str, dict[str, Any]] = {  # each on the fp32 baseline (TF32 off), one at a time
    "fp32": {"tf32": False, "set": []},
    "tf32": {"tf32": True, "set": []},
    "bf16": {"tf32": False, "set": ["train.amp=bf16"]},
    "compile": {"tf32": False, "set": ["train.compile=true"]},
    "channels_last": {"tf32": False, "set": ["train.channels_last=true"]},
    "fused_attention": {"tf32": False, "set": ["train.fused_attention=true"]},
}
STEPS = ("environment", "gpu_tests", *(f"bench_{s}" for s in SWITCHES), "bench_cuda_graphs", "training",
         "peak_memory")
"""The record's step order (the dry run collects the gpu tests while the benches run, so it finishes them later)."""
CUDA_GRAPHS_NOTE = "not implemented: twm_core has no CUDA-graph capture yet (issue #14), so there is nothing to time"


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


# ------------------------------------------------------------------------------------------------------ 3. bench
def set_tf32(enabled: bool) -> dict[str, Any]:
    """TF32 for CUDA matmuls and cuDNN convolutions on or off; the flags as read back through both torch APIs.

    The legacy `allow_tf32` setters on purpose: they keep the new `fp32_precision` getters consistent, while
    setting `cudnn.conv.fp32_precision` makes the legacy getter `cudnn.allow_tf32` raise ("a mix of the legacy
    and new APIs"), and inductor's convolution lowering reads that getter: the compile switch would crash.
    """
    import torch

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    matmul.allow_tf32 = enabled
    cudnn.allow_tf32 = enabled
    flags: dict[str, Any] = {"matmul_allow_tf32": matmul.allow_tf32, "cudnn_allow_tf32": cudnn.allow_tf32,
                             "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        flags.update(matmul_fp32_precision=matmul.fp32_precision, cudnn_conv_fp32_precision=cudnn.conv.fp32_precision)
    return flags


def bench_worker(work: Path) -> int:
    """In a fresh process, for each switch of `work/spec.json` in turn: its TF32 flags, then each bench module's
    `main`, writing `<switch>/<bench>.json` or `<switch>/<bench>.error.txt`, and `<switch>/times.json` (unix
    start and end). Returns 1 if any bench failed."""
    import torch

    spec = json.loads((work / "spec.json").read_text())
    if spec.get("compile_backend"):  # dry run: dynamo traces our modules, but no inductor codegen (minutes on a CPU)
        compile_module = torch.nn.Module.compile

        def compile_with_backend(self: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("backend", spec["compile_backend"])
            compile_module(self, *args, **kwargs)

        torch.nn.Module.compile = compile_with_backend  # type: ignore[method-assign]
    failed = 0
    for switch, options in spec["switches"].items():
        out = work / switch
        out.mkdir(parents=True, exist_ok=True)
        started = time.time()
        (out / "precision.json").write_text(json.dumps(set_tf32(options["tf32"])))
        for name in BENCHES:
            failed |= _run_bench(name, spec, options, out)
        (out / "times.json").write_text(json.dumps({"start": started, "end": time.time()}))
    return failed


def _run_bench(name: str, spec: dict[str, Any], options: dict[str, Any], out: Path) -> int:
    import torch

    repeats, warmup = options["repeats"][name]
    argv = ["--preset", spec["preset"], "--game", spec["game"], "--device", spec["device"], "--repeats",
            str(repeats), "--warmup", str(warmup), "--json", str(out / f"{name}.json")]
    for item in options["set"]:
        argv += ["--set", item]
    try:
        if spec["device"].startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()  # each record's peak_gpu_memory_mb is its own bench's
        importlib.import_module(f"bench.{name}").main(argv)
    except BaseException:  # SystemExit of a bad option included: record it, go on with the next bench
        (out / f"{name}.error.txt").write_text(traceback.format_exc())
        return 1
    return 0


def bench_group(plan: Plan, limits: dict[str, float], timeout: float, work: Path) -> dict[str, Step]:
    """One worker process for the switches of `limits` (in order; on the GPU one switch each), killed at
    `timeout`; then each switch's records (kept when the worker timed out or a bench failed)."""
    work.mkdir(parents=True)
    switches = {}
    for switch in limits:
        warm = plan.compile_warmup if switch == "compile" else 0
        switches[switch] = {**SWITCHES[switch], "repeats": {k: (r, w + warm) for k, (r, w) in plan.repeats.items()}}
    (work / "spec.json").write_text(json.dumps({
        "switches": switches, "preset": plan.preset, "game": plan.bench_game, "device": plan.device,
        "compile_backend": plan.compile_backend}))
    rc, timed_out = run_process([sys.executable, "-m", "bench.gpu_check", "--bench-worker", str(work)], timeout,
                                work / "worker.log")
    steps = {}
    head = f"timed out (worker killed at {timeout:.0f} s)" if timed_out else f"worker exit code {rc}"
    for switch, options in switches.items():
        backend = plan.compile_backend if switch == "compile" else None
        step = steps[switch] = switch_step(work / switch, options, backend)
        step.limit_s = round(limits[switch], 1)
        if step.status == "failed":
            step.error = f"{head}\n{step.error}\nworker log: {tail(work / 'worker.log', 1500)}"
    if rc != 0 and not timed_out and all(s.status == "ok" for s in steps.values()):
        for step in steps.values():
            step.status, step.error = "failed", f"{head}\n{tail(work / 'worker.log', 1500)}"
    return steps


def switch_step(out: Path, options: dict[str, Any], compile_backend: str | None) -> Step:
    """One switch's outcome from its directory: ok when all four benches wrote a record."""
    data: dict[str, Any] = {"set": options["set"], "tf32": options["tf32"], "repeats": options["repeats"],
                            "precision": _read_json(out / "precision.json"), "benches": {}}
    if compile_backend:
        data["compile_backend"] = f"{compile_backend} (dry run: no inductor code generation)"
    errors = []
    for name in BENCHES:
        record, err = out / f"{name}.json", out / f"{name}.error.txt"
        if record.exists():
            data["benches"][name] = bench_summary(json.loads(record.read_text()))
        elif err.exists():
            errors.append(f"{name}: {tail(err, 1500)}")
        else:
            errors.append(f"{name}: no record")
    times = _read_json(out / "times.json")
    seconds = round(times["end"] - times["start"], 2) if times else 0.0
    if errors:
        return Step("failed", seconds=seconds, error="\n".join(errors), data=data)
    return Step(seconds=seconds, data=data)


def bench_summary(record: dict[str, Any]) -> dict[str, Any]:
    """A bench record without its config (the same for every switch): sizes, settings, statistics, samples."""
    return {"sizes": record["sizes"], "settings": record["settings"],
            "peak_gpu_memory_mb": record["machine"].get("peak_gpu_memory_mb"),
            "gpu_name": record["machine"].get("gpu_name"), "measurements": record["measurements"]}


def cuda_graphs() -> Step:
    return Step("skipped", error=CUDA_GRAPHS_NOTE, data={"implemented": False})


# ------------------------------------------------------------------------------------------------------ 4. training
def segment_config(plan: Plan) -> tuple[list[str], dict[str, Any]]:
    """The segment's `--set` overrides, and the preset's own schedule (what the extrapolation is for)."""
    from twm_core.evaluation import evaluate
    from twm_core.presets import make_config

    cfg = make_config(plan.preset, plan.train_game)
    t, parallel = cfg.train, int(inspect.signature(evaluate).parameters["max_parallel"].default)
    pretrain = min(plan.segment_pretrain, t.pretrain_budget)
    shares = t.pretrain_obs_p + t.pretrain_dyn_p + t.pretrain_ac_p  # the stages' budgets, summed
    overrides = [f"train.pretrain_budget={pretrain!r}", f"train.budget={t.budget - t.pretrain_budget + pretrain!r}",
                 f"train.eval_episodes={min(t.eval_episodes, parallel)}", *plan.segment_set]
    target = {"total_steps": t.total_steps, "prefill": cfg.replay.prefill,
              "pretrain_frames": t.pretrain_budget * shares, "segment_pretrain_frames": pretrain * shares,
              "eval_every": t.eval_every, "eval_episodes": t.eval_episodes,
              "final_eval_episodes": t.final_eval_episodes, "eval_parallel": parallel,
              "segment_eval_episodes": min(t.eval_episodes, parallel)}
    return overrides, target


def training(plan: Plan, timeout: float, work: Path) -> Step:
    """Run the segment for `timeout - grace` s, SIGTERM it, read its metrics and extrapolate the full run."""
    overrides, target = segment_config(plan)
    work.mkdir(parents=True)
    run_dir = work / "run"
    cmd = [sys.executable, "-m", "twm_core.cli", "train", "--game", plan.train_game, "--preset", plan.preset,
           "--device", plan.device, "--steps", str(plan.train_steps), "--run-dir", str(run_dir), "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    segment_s = max(timeout - plan.stop_grace_s, 1.0)
    started = time.monotonic()
    with (work / "train.log").open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None and time.monotonic() - started < segment_s:
                time.sleep(0.5)
                if plan.segment_enough_rows and train_rows(run_dir) >= plan.segment_enough_rows:
                    break
            ran_s = time.monotonic() - started
            how = "finished" if proc.poll() is not None else "stopped"
            if how == "stopped":
                os.kill(proc.pid, signal.SIGTERM)  # the trainer checkpoints and exits (status 'cancelled')
                try:
                    proc.wait(timeout=plan.stop_grace_s)
                except subprocess.TimeoutExpired:
                    how = "killed"
        finally:
            kill_group(proc)
            proc.wait()
    rows = read_rows(run_dir / "metrics.jsonl")
    measured = measure_segment(rows)
    data = {"command": " ".join(cmd[1:]), "overrides": overrides, "segment_s": round(ran_s, 1),
            "stop_s": round(time.monotonic() - started - ran_s, 1), "end": how, "returncode": proc.returncode,
            "status": _read_json(run_dir / "status.json"), "rows": len(rows), "measured": measured,
            "target": target, "extrapolation": extrapolate_full_run(measured, target)}
    missing = data["extrapolation"]["missing"]
    if how == "killed" or proc.returncode != 0 or missing:  # a SIGTERM stop exits 0
        problem = f"the segment did not measure {', '.join(missing)}; " if missing else ""
        return Step("failed", error=f"{problem}segment {how}, exit code {proc.returncode}\n"
                    f"{tail(work / 'train.log')}", data=data)
    return Step(data=data)


def train_rows(run_dir: Path) -> int:
    """Training-phase metrics rows the segment wrote so far."""
    return sum(1 for r in read_rows(run_dir / "metrics.jsonl") if r.get("perf/train_steps", 0) > 0)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows (a torn last line is dropped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _rate(rows: list[dict[str, Any]], key: str) -> float | None:
    """(last − first value of `key`) / (last − first time) over `rows`; None with fewer than two rows."""
    if len(rows) < 2 or rows[-1]["time"] <= rows[0]["time"]:
        return None
    return (rows[-1][key] - rows[0][key]) / (rows[-1]["time"] - rows[0]["time"])


def measure_segment(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The segment's phases from metrics.jsonl. Prefill rows: `perf/` rows before any pretraining row; pretraining:
    rows with `pretrain/frames`, timed from the last prefill row; the initial evaluation: the `eval/` summary row,
    timed from the last pretraining row; training: `perf/` rows with `perf/train_steps` > 0."""
    perf = [r for r in rows if "perf/env_steps_per_s" in r]
    pretrain = [r for r in rows if "pretrain/frames" in r]
    first_pretrain = pretrain[0]["time"] if pretrain else math.inf
    prefill = [r for r in perf if r["time"] <= first_pretrain and r.get("perf/train_steps", 0) == 0]
    train = [r for r in perf if r.get("perf/train_steps", 0) > 0]
    evals = [r for r in rows if "eval/score_mean" in r]
    pretrain_s = pretrain[-1]["time"] - prefill[-1]["time"] if pretrain and prefill else None
    # the rate from the first to the last pretraining row leaves out the checkpoint written after the prefill
    pretrain_rate = _rate(pretrain, "pretrain/frames") if len(pretrain) > 1 else None
    eval_s = evals[0]["time"] - pretrain[-1]["time"] if evals and pretrain else None
    mem = [r["perf/gpu_mem_mb"] for r in perf if r.get("perf/gpu_mem_mb") is not None]
    return {
        "prefill_env_steps_per_s": _rate(prefill, "step"), "prefill_rows": len(prefill),
        "pretrain_s": pretrain_s, "pretrain_frames": pretrain[-1]["pretrain/frames"] if pretrain else None,
        "pretrain_frames_per_s": pretrain_rate,
        "eval_s": eval_s, "eval_episodes": evals[0].get("eval/episodes") if evals else None,
        "train_env_steps_per_s": _rate(train, "step"), "train_steps_per_s": _rate(train, "perf/train_steps"),
        "train_rows": len(train), "train_env_steps": train[-1]["step"] - train[0]["step"] if train else 0,
        "train_steps": train[-1]["perf/train_steps"] if train else 0,
        "median_row_env_steps_per_s": _median([r["perf/env_steps_per_s"] for r in train[1:]]),
        "median_row_train_steps_per_s": _median([r["perf/train_steps_per_s"] for r in train[1:]]),
        "peak_gpu_mem_mb": max(mem) if mem else None,
    }


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


FORMULA = ("total_s = prefill/prefill_rate + pretrain_frames/pretrain_rate "
           "+ (total_steps − prefill)/train_rate + rounds·eval_s_per_round; rounds = n_evals·⌈eval_episodes/P⌉ + "
           "⌈final_eval_episodes/P⌉, n_evals = 1 + #{k ≥ 1: prefill + k·eval_every < total_steps}, P = parallel "
           "eval episodes. Not counted: process start, checkpoints (every checkpoint_every steps), snapshots.")


def extrapolate_full_run(measured: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Seconds of a full run of `target` (the preset's schedule) from the segment's measured rates; the parts
    that could not be measured are listed in `missing` and make `total_s` null. See `FORMULA`."""
    parts: dict[str, float | None] = {}
    rate = measured.get("prefill_env_steps_per_s")
    parts["prefill_s"] = target["prefill"] / rate if rate else None
    rate = measured.get("pretrain_frames_per_s")
    parts["pretrain_s"] = target["pretrain_frames"] / rate if rate else None
    rate = measured.get("train_env_steps_per_s")
    parts["train_s"] = (target["total_steps"] - target["prefill"]) / rate if rate else None
    parallel = target["eval_parallel"]
    evals = 1 + len(range(target["prefill"] + target["eval_every"], target["total_steps"], target["eval_every"]))
    rounds = (evals * math.ceil(target["eval_episodes"] / parallel) if target["eval_episodes"] else 0) + math.ceil(
        target["final_eval_episodes"] / parallel)
    measured_rounds = math.ceil(target["segment_eval_episodes"] / parallel) if target["segment_eval_episodes"] else 0
    eval_s = measured.get("eval_s")
    if rounds == 0:
        parts["eval_s"] = 0.0
    else:
        parts["eval_s"] = rounds * eval_s / measured_rounds if eval_s is not None and measured_rounds else None
    missing = [k for k, v in parts.items() if v is None]
    total = None if missing else sum(v for v in parts.values() if v is not None)
    done = measured.get("pretrain_frames") or 0
    partial = ["pretraining"] if done < 0.99 * target["segment_pretrain_frames"] else []  # rate of its early stages
    return {"total_s": total, "total_h": None if total is None else total / 3600, "parts": parts,
            "evaluations": evals, "eval_rounds": rounds, "missing": missing, "partial": partial,
            "formula": FORMULA}


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
