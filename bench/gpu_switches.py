"""The GPU check's bench switches (`bench_<switch>` steps of `bench/gpu_check.py`): each switch alone on the fp32
baseline, the worker process that sets its TF32 flags and runs the bench modules' `main`, and each switch's outcome
read back from what the worker wrote. `bench_cuda_graphs` is a placeholder step (not implemented).

The worker runs in a fresh process, started as `python -m bench.gpu_check --bench-worker DIR` (the check's entry
point hands it to `bench_worker`), so one switch's CUDA state or crash never reaches the others.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.gpu_steps import BENCHES, Plan, Step, read_json, run_process, tail

SWITCHES: dict[str, dict[str, Any]] = {  # each on the fp32 baseline (TF32 off), one at a time
    "fp32": {"tf32": False, "set": []},
    "tf32": {"tf32": True, "set": []},
    "bf16": {"tf32": False, "set": ["train.amp=bf16"]},
    "compile": {"tf32": False, "set": ["train.compile=true"]},
    "channels_last": {"tf32": False, "set": ["train.channels_last=true"]},
    "fused_attention": {"tf32": False, "set": ["train.fused_attention=true"]},
}

CUDA_GRAPHS_NOTE = "not implemented: twm_core has no CUDA-graph capture yet (issue #14), so there is nothing to time"


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
                            "precision": read_json(out / "precision.json"), "benches": {}}
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
    times = read_json(out / "times.json")
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

