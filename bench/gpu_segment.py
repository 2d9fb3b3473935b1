"""The GPU check's training segment (the `training` step of `bench/gpu_check.py`): `twm train` at the preset's
config (pretraining cut, one evaluation round) for a fixed wall time, stopped with SIGTERM; its metrics.jsonl read
back into the phases' rates (`measure_segment`), and a full run of the preset extrapolated from them
(`extrapolate_full_run`, a pure function; see `FORMULA`).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gpu_steps import REPO_ROOT, Plan, Step, kill_group, read_json, tail


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
            "status": read_json(run_dir / "status.json"), "rows": len(rows), "measured": measured,
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
