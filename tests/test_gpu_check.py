"""`make gpu-check` (`bench/gpu_check.py`) on a CPU: the pure parts (extrapolation, segment phases, TF32 flags,
a switch's outcome) in-process, and the whole `--dry-run` end to end as a subprocess, checked through its record.

`bench` is not an installed package, so the module is imported with the repository root put on `sys.path` for the
import only (its modules import only the standard library at the top); the dry run is a subprocess from the
repository root, as `make gpu-check` runs it.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = ["environment", "gpu_tests", "bench_fp32", "bench_tf32", "bench_bf16", "bench_compile",
         "bench_channels_last", "bench_fused_attention", "bench_cuda_graphs", "training", "peak_memory"]
BENCHES = {"wm_update": "update", "ac_update": "total", "policy": "act", "train_step": "train_step"}


@pytest.fixture(scope="module")
def gc() -> ModuleType:
    """`bench.gpu_check` (which re-exports the pure parts of bench/gpu_segment.py and bench/gpu_switches.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO_ROOT))
        return importlib.import_module("bench.gpu_check")


def target(**changes: float) -> dict[str, float]:
    """The atari100k schedule as `segment_config` reports it (pretraining budget 5e7 × (0.6 + 0.3 + 0.7))."""
    base = {"total_steps": 100_000, "prefill": 5000, "pretrain_frames": 8e7, "segment_pretrain_frames": 1.6e6,
            "eval_every": 5000, "eval_episodes": 10, "final_eval_episodes": 100, "eval_parallel": 8,
            "segment_eval_episodes": 8}
    return {**base, **changes}


def test_extrapolation_of_known_rates(gc: ModuleType) -> None:
    measured = {"prefill_env_steps_per_s": 500.0, "pretrain_frames_per_s": 80_000.0, "pretrain_frames": 1.6e6,
                "train_env_steps_per_s": 9.5, "eval_s": 12.0}
    out = gc.extrapolate_full_run(measured, target())
    # evaluations: the one after pretraining, then at 10k, 15k, ..., 95k (none at 100k: the loop has ended) = 19,
    # each 2 rounds of ≤ 8 parallel episodes; the final 100 episodes 13 rounds; the segment measured 1 round
    assert out["evaluations"] == 19 and out["eval_rounds"] == 19 * 2 + 13
    parts = out["parts"]
    assert parts["prefill_s"] == pytest.approx(10.0)
    assert parts["pretrain_s"] == pytest.approx(1000.0)
    assert parts["train_s"] == pytest.approx(10_000.0)
    assert parts["eval_s"] == pytest.approx(51 * 12.0)
    assert out["total_s"] == pytest.approx(10.0 + 1000.0 + 10_000.0 + 612.0)
    assert out["total_h"] == pytest.approx(out["total_s"] / 3600)
    assert out["missing"] == [] and out["partial"] == [] and "total_steps" in out["formula"]


def test_extrapolation_says_what_it_could_not_measure(gc: ModuleType) -> None:
    measured = {"prefill_env_steps_per_s": 500.0, "pretrain_frames_per_s": 80_000.0, "pretrain_frames": 4e5,
                "train_env_steps_per_s": None, "eval_s": None}
    out = gc.extrapolate_full_run(measured, target())
    assert out["total_s"] is None and out["total_h"] is None
    assert out["missing"] == ["train_s", "eval_s"] and out["partial"] == ["pretraining"]
    # no evaluations at all: nothing to measure, 0 s
    out = gc.extrapolate_full_run({**measured, "train_env_steps_per_s": 10.0},
                                  target(eval_episodes=0, final_eval_episodes=0, segment_eval_episodes=0))
    assert out["parts"]["eval_s"] == 0.0 and out["total_s"] == pytest.approx(10.0 + 1000.0 + 9500.0)


def test_segment_phases_from_metrics_rows(gc: ModuleType) -> None:
    rows = [{"step": s, "time": 100.0 + s / 100, "perf/env_steps_per_s": 100.0, "perf/train_steps": 0}
            for s in range(20, 101, 20)]  # prefill: 100 env steps/s, last row at t = 101
    rows += [{"step": 100, "time": 103.0 + i, "pretrain/frames": 1000 * (i + 1)} for i in range(4)]  # 1000 frames/s
    rows.append({"step": 100, "time": 110.0, "eval/score_mean": 1.0, "eval/episodes": 1.0})
    rows.append({"step": 101, "time": 110.5, "env/episode_return": 3.0})  # an episode row: no perf keys
    rows += [{"step": 120 + 20 * i, "time": 120.0 + 10 * i, "perf/env_steps_per_s": 2.0, "perf/train_steps_per_s": 3.0,
              "perf/train_steps": 20 + 30 * i, "perf/gpu_mem_mb": 100.0 + i} for i in range(3)]
    m = gc.measure_segment(rows)
    assert m["prefill_env_steps_per_s"] == pytest.approx(100.0) and m["prefill_rows"] == 5
    assert m["pretrain_s"] == pytest.approx(106.0 - 101.0) and m["pretrain_frames"] == 4000
    assert m["pretrain_frames_per_s"] == pytest.approx(1000.0)
    assert m["eval_s"] == pytest.approx(110.0 - 106.0) and m["eval_episodes"] == 1.0
    assert m["train_env_steps_per_s"] == pytest.approx(2.0) and m["train_steps_per_s"] == pytest.approx(3.0)
    assert (m["train_rows"], m["train_env_steps"], m["train_steps"]) == (3, 40, 80)
    assert m["peak_gpu_mem_mb"] == 102.0
    assert gc.measure_segment([])["train_env_steps_per_s"] is None


def test_tf32_flags_read_back_through_both_apis(gc: ModuleType) -> None:
    """The flags are set with the legacy API: afterwards neither API's getter may raise (inductor reads
    `cudnn.allow_tf32`; setting `cudnn.conv.fp32_precision` instead makes that getter raise)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for enabled in (False, True):
            flags = gc.set_tf32(enabled)
            assert flags["matmul_allow_tf32"] is enabled and flags["cudnn_allow_tf32"] is enabled
            assert torch.backends.cudnn.allow_tf32 is enabled  # the getter inductor's conv lowering calls
            if "matmul_fp32_precision" in flags:  # torch >= 2.9 (the legacy 'off' leaves conv at 'none': not tf32)
                want = {"tf32"} if enabled else {"ieee", "none"}
                assert flags["matmul_fp32_precision"] in want and flags["cudnn_conv_fp32_precision"] in want
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_switch_fails_when_a_bench_left_no_record(gc: ModuleType, tmp_path: Path) -> None:
    record = {"sizes": {}, "settings": {}, "machine": {}, "measurements": {"act": {"median": 1.0}}}
    for name in ("wm_update", "ac_update", "policy"):
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    (tmp_path / "times.json").write_text(json.dumps({"start": 10.0, "end": 12.5}))
    options = {"set": [], "tf32": False, "repeats": {}}
    step = gc.switch_step(tmp_path, options, None)
    assert step.status == "failed" and "train_step: no record" in step.error and step.seconds == 2.5
    (tmp_path / "train_step.json").write_text(json.dumps(record))
    assert gc.switch_step(tmp_path, options, None).status == "ok"


def test_no_budget_fails_the_steps_and_the_exit_code(tmp_path: Path) -> None:
    """Steps that get no time fail (with the reason) and the check exits 1; the not-implemented step still says so."""
    out = tmp_path / "check.json"
    proc = run_check(["--dry-run", "--budget-s", "1", "--out", str(out)], timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    steps = json.loads(out.read_text())["steps"]
    assert list(steps) == STEPS
    for name in ("environment", "gpu_tests", "bench_fp32", "training"):
        assert steps[name]["status"] == "failed" and "no time left" in steps[name]["error"], name
    assert steps["bench_cuda_graphs"]["status"] == "skipped"


def run_check(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench.gpu_check", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path: Path) -> None:
    """~1.5 min on a loaded 2-core machine: every step runs on the CPU and the record says what each did."""
    out = tmp_path / "gpu-check.json"
    proc = run_check(["--dry-run", "--out", str(out)], timeout=420)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "full run, extrapolated:" in proc.stdout
    record = json.loads(out.read_text())
    assert record["mode"] == "dry-run" and record["ok"] is True
    assert 0 < record["wall_s"] <= record["budget_s"]
    steps = record["steps"]
    assert list(steps) == STEPS
    for name, step in steps.items():
        assert step["status"] in ("ok", "skipped"), (name, step["error"])
        assert isinstance(step["seconds"], float) and step["seconds"] >= 0, name
        assert step["limit_s"] is None or step["limit_s"] > 0, name

    env = steps["environment"]["data"]
    assert env["torch"] == torch.__version__ and env["cpu_count"] > 0 and env["device"] == "cpu"
    assert env["device_name"] is None and env["capability"] is None and env["memory_mb"] is None

    tests = steps["gpu_tests"]["data"]
    assert "-m gpu" in tests["command"] and "--collect-only" in tests["command"] and tests["returncode"] in (0, 5)

    for switch in ("fp32", "tf32", "bf16", "compile", "channels_last", "fused_attention"):
        data = steps[f"bench_{switch}"]["data"]
        assert set(data["benches"]) == set(BENCHES), switch
        for name, measure in BENCHES.items():
            m = data["benches"][name]["measurements"][measure]
            assert m["median"] > 0 and len(m["samples"]) == 1, (switch, name)
            assert data["benches"][name]["settings"]["preset"] == "debug"
        assert data["precision"]["matmul_allow_tf32"] is (switch == "tf32"), switch
    assert "train.amp=bf16" in steps["bench_bf16"]["data"]["set"]
    assert "eager" in steps["bench_compile"]["data"]["compile_backend"]

    graphs = steps["bench_cuda_graphs"]
    assert graphs["status"] == "skipped" and "not implemented" in graphs["error"]
    assert graphs["data"]["implemented"] is False

    training = steps["training"]["data"]
    assert training["end"] in ("stopped", "finished") and training["rows"] > 0
    assert training["measured"]["train_rows"] >= 2 and training["measured"]["peak_gpu_mem_mb"] is None
    ex = record["extrapolation"]
    assert ex == training["extrapolation"] and ex["missing"] == []
    assert ex["total_s"] > 0 and all(v > 0 for v in ex["parts"].values()), ex["parts"]
    assert math.isclose(ex["total_s"], sum(ex["parts"].values()))

    memory = steps["peak_memory"]["data"]
    assert memory["max_mb"] is None and memory["training_mb"] is None  # CUDA only
    assert set(memory["bench"]) == {"fp32", "tf32", "bf16", "compile", "channels_last", "fused_attention"}
