"""A run directory carries its own config: how a run is prepared, and which attempt `twm train --run-dir` makes.

Whoever starts a run (the `twm train` flags, the backend's job scheduler, a sweep) first validates its config and
writes it into the run directory with `prepare_run` (config.json plus status.json `queued`); the training process
is then `twm train --run-dir X`, which reads that file. A fresh start, a retry and a resume therefore read the same
config.json, and nothing about the config travels on a command line. `open_trainer` picks the attempt:

- the run has a checkpoint: resume from the latest one (weights, optimizers, replay, RNG, counters);
- the run never trained: start from config.json;
- an earlier attempt trained but left no checkpoint: refused, since its metrics and replay chunks would mix with the
  new attempt's. `set_aside` moves such a directory away (kept for its logs) and prepares a fresh one from the
  same config.json bytes; the backend does that before a retry.

`remove_run` deletes a run that no process writes any more: one rename into a trash directory (so readers see the
whole run or none of it), then the files.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from twm_core.config import TWMConfig
from twm_core.run_dir import (
    LIVE_STATES,
    RunDir,
    RunState,
    atomic_write,
    read_json,
    read_run_status,
    write_json_atomic,
    write_status,
)

if TYPE_CHECKING:  # the trainer pulls in torch, gymnasium and ALE
    from twm_core.trainer import Trainer

_ATTEMPT_FILES = ("metrics.jsonl", "scores.jsonl", "replay", "ckpt")
"""What a training attempt writes besides config.json and status.json."""


def prepare_run(run_dir: RunDir, cfg: TWMConfig) -> RunDir:
    """Create `run_dir` holding `cfg` as config.json and status `queued`; FileExistsError if it holds a run."""
    run_dir.create()
    if run_dir.config_path.exists() or run_dir.config_path.is_symlink():
        raise FileExistsError(f"{run_dir.path} already holds a run (config.json)")
    write_json_atomic(run_dir.config_path, cfg.to_dict())
    write_status(run_dir, state=RunState.QUEUED.value, step=0, total_steps=cfg.train.total_steps)
    return run_dir


def read_config(run_dir: RunDir) -> TWMConfig:
    """The run's config.json as a validated config (FileNotFoundError without one, ConfigError when invalid)."""
    raw = read_json(run_dir.config_path)
    if raw is None:
        raise FileNotFoundError(f"no config.json in {run_dir.path}: prepare the run first (twm train --game ...)")
    return TWMConfig.from_dict(raw)


def attempt_leftovers(run_dir: RunDir) -> list[str]:
    """Names of the files an earlier training attempt left in `run_dir` (empty for a run that never trained)."""
    found = []
    for name in _ATTEMPT_FILES:
        path = run_dir.path / name
        try:
            if path.is_dir() and any(path.iterdir()) or path.is_file() and path.stat().st_size > 0:
                found.append(name)
        except OSError:  # unreadable counts as left over: a fresh start must not write beside it
            found.append(name)
    return found


def open_trainer(run_dir: RunDir, device: str = "auto",
                 on_progress: Callable[[int, int, str], None] | None = None) -> Trainer:
    """The trainer of the attempt `run_dir` asks for (see the module docstring)."""
    from twm_core.checkpoint import latest_checkpoint
    from twm_core.trainer import Trainer

    if latest_checkpoint(run_dir) is not None:
        return Trainer.resume(run_dir, device, on_progress)
    cfg = read_config(run_dir)
    leftovers = attempt_leftovers(run_dir)
    if leftovers:
        raise ValueError(f"{run_dir.path} holds an earlier attempt with no checkpoint ({', '.join(leftovers)}): "
                         "move it aside and prepare the run again")
    return Trainer(cfg, run_dir, device, on_progress)


def set_aside(run_dir: RunDir, aside: Path) -> RunDir:
    """Move `run_dir` to `aside` and prepare `run_dir` again from the very same config.json bytes."""
    config = run_dir.config_path.read_bytes()
    cfg = TWMConfig.from_dict(read_json(run_dir.config_path) or {})  # the config's own check, before moving
    aside.parent.mkdir(parents=True, exist_ok=True)
    run_dir.path.rename(aside)
    try:
        run_dir.create()
        with atomic_write(run_dir.config_path) as f:
            f.write(config)
        write_status(run_dir, state=RunState.QUEUED.value, step=0, total_steps=cfg.train.total_steps)
    except BaseException:
        shutil.rmtree(run_dir.path, ignore_errors=True)
        aside.rename(run_dir.path)
        raise
    return run_dir


class RunInUse(RuntimeError):
    """The run's training process is alive: it cannot be removed."""


def remove_run(run_dir: RunDir, trash: Path) -> None:
    """Delete `run_dir` unless its status says a live process writes it, or an evaluation of one of its checkpoints
    runs (RunInUse). The directory is renamed into `trash` (on the same file system, e.g. `<runs>/.trash`) first, so
    it vanishes at once and whole; a symlink is unlinked, never followed."""
    from twm_core.checkpoint_evaluation import list_evaluations  # lazy: imports torch

    status = read_run_status(run_dir)
    if status is not None and status.state in LIVE_STATES:  # the stale rule already turned dead processes FAILED
        raise RunInUse(f"run {run_dir.run_id} is {status.state} (pid {status.get('pid')}): cancel its job first")
    running = [e.step for e in list_evaluations(run_dir) if e.state == "running"]  # a dead one reads as failed
    if running:
        raise RunInUse(f"run {run_dir.run_id} has checkpoint evaluations running (step {running[0]}): wait for them")
    if run_dir.path.is_symlink():
        run_dir.path.unlink()
        return
    trash.mkdir(parents=True, exist_ok=True)
    doomed = trash / f"{run_dir.run_id}.{time.time_ns()}"
    run_dir.path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
