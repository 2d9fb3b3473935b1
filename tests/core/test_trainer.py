"""End-to-end training on CPU: the CLI smoke run, kill-and-resume, and determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from twm_core.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from twm_core.presets import make_config
from twm_core.replay import ReplayBuffer
from twm_core.run_dir import RunDir, read_status
from twm_core.trainer import Trainer

QUICK = ["--set", "train.eval_episodes=0", "--set", "train.final_eval_episodes=1"]


def twm(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "twm_core.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def steps_by_key(rows: list[dict]) -> dict[str, list[int]]:
    """The env steps each key was logged at; a pretraining key's x is `pretrain/frames` (its rows share the
    prefill's step)."""
    out = defaultdict(list)
    for row in rows:
        for key in row:
            if key not in ("step", "time"):
                out[key].append(row["pretrain/frames"] if key.startswith("pretrain/") else row["step"])
    return out


@pytest.mark.slow
def test_cli_smoke_run_writes_everything(tmp_path):
    run = tmp_path / "run"
    proc = twm("train", "--game", "Pong", "--preset", "debug", "--steps", "300", "--run-dir", str(run),
               "--no-progress")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "finished: 300 env steps" in out
    rd = RunDir(run)
    cfg = json.loads(rd.config_path.read_text())
    assert cfg["preset"] == "debug" and cfg["train"]["total_steps"] == 300 and cfg["env"]["game"] == "Pong"
    rows = read_rows(rd.metrics_path)
    keys = set().union(*rows)
    assert {"wm/dec_loss", "wm/z_pred_ce", "ac/actor_loss", "ac/critic_loss", "perf/env_steps_per_s",
            "eval/final_score_mean"} <= keys
    assert any(r["kind"] == "final_eval" for r in read_rows(rd.scores_path))
    assert read_status(rd)["state"] == "finished"
    step, path = latest_checkpoint(rd)
    state = load_checkpoint(path)
    assert step == 300 and state["counters"]["phase"] == "finished"
    assert set(state["optimizers"]) == {"obs", "dyn", "actor", "critic"}


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = twm("train", "--game", "Pong", "--preset", "debug", "--steps", "360", "--run-dir", str(run),
               "--no-progress", *QUICK)
    rd = RunDir(run)
    deadline = time.time() + 300
    while not any(step >= 200 for step, _ in list_checkpoints(rd)):  # a main-loop checkpoint, not the prefill one
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint at step 200 in time"
        time.sleep(0.2)
    time.sleep(1.0)  # let it run past the checkpoint, so there is work to throw away
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_status(rd)["step"]
    ckpt_step = latest_checkpoint(rd)[0]
    assert killed_at >= ckpt_step >= 200

    resumed = twm("train", "--resume", str(run), "--no-progress")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert "finished: 360 env steps" in out
    rows = read_rows(rd.metrics_path)
    for key, steps in steps_by_key(rows).items():
        assert steps == sorted(set(steps)), f"{key} has duplicated or unordered steps: {steps}"
    log_steps = steps_by_key(rows)["replay/size"]
    assert log_steps == list(range(20, 361, 20))  # no gap, no restart: continued from the checkpoint
    state = load_checkpoint(latest_checkpoint(rd)[1])
    assert state["counters"]["resumes"] == 1 and state["counters"]["interrupted_rows"] == [ckpt_step - 1]
    replay = ReplayBuffer.load(rd.replay_dir, 2000, upto=360)
    data = replay.get_data(torch.tensor([ckpt_step - 1]), 1, prefix=0)
    assert bool(data.truncated[0, 0]), "the episode cut by the kill is marked truncated on disk"


def _metrics_without_timing(run_dir: RunDir) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time" and not k.startswith("perf/")}
            for row in read_rows(run_dir.metrics_path)]


def test_same_seed_gives_identical_metrics(tmp_path):
    overrides = {"train.total_steps": 140, "train.eval_episodes": 0, "train.final_eval_episodes": 0,
                 "replay.prefill": 100, "train.pretrain_budget": 3000}
    runs = []
    for name in ("a", "b"):
        cfg = make_config("debug", "Catch", seed=7, overrides=overrides)
        rd = RunDir(tmp_path / name)
        Trainer(cfg, rd, "cpu").run()
        runs.append(_metrics_without_timing(rd))
    assert len(runs[0]) > 5 and any("ac/actor_loss" in r for r in runs[0])
    assert runs[0] == runs[1]
    cfg = make_config("debug", "Catch", seed=8, overrides=overrides)
    Trainer(cfg, RunDir(tmp_path / "c"), "cpu").run()
    assert _metrics_without_timing(RunDir(tmp_path / "c")) != runs[0]
