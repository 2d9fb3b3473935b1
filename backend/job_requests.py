"""A job request, validated into the config its run will train, and the caps on what HTTP may ask for.

`prepare_job` resolves the game, builds and checks the config (`twm_core.presets.make_config`), checks the device
and the resource caps, and returns the job's first record with the config; the scheduler (`backend.jobs`) writes
that config into the run directory (`twm_core.launch.prepare_run`) before it records the job.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backend.executors import Executor, ExecutorError
from backend.settings import Settings
from twm_core.config import TWMConfig
from twm_core.presets import make_config
from twm_core.run_dir import new_run_id

_MAX_INT = 2**63 - 1
_MODEL_SIZE_FIELDS = ("obs.z_categoricals", "obs.z_categories", "obs.channels", "obs.mlp_dims", "dyn.embed_dim",
                      "dyn.num_heads", "dyn.head_dim", "dyn.num_layers", "dyn.feedforward_dim", "dyn.z_dims",
                      "dyn.reward_dims", "dyn.discount_dims", "dyn.input_rewards", "ac.actor_dims", "ac.critic_dims",
                      "ac.input_h", "ac.critic_target_interval")
_MEMORY_FIELDS = ("replay.capacity", "train.total_steps", "train.wm_batch_size", "train.wm_sequence_length",
                  "dyn.memory_length", "ac.batch_size", "ac.horizon", "env.frame_stack", *_MODEL_SIZE_FIELDS)


class InvalidJob(ValueError):
    """A job request that can never run (unknown game or preset, bad override, unavailable device, over a cap)."""


@dataclass(frozen=True)
class PreparedJob:
    """A valid job, not yet recorded: its first database row and the config its run directory will hold."""

    row: dict[str, Any]
    config: TWMConfig


def prepare_job(settings: Settings, executor: Executor, game: str, preset: str, seed: int | None = None,
                steps: int | None = None, device: str | None = None,
                overrides: dict[str, Any] | None = None) -> PreparedJob:
    """Validate a request by building its config; raises `InvalidJob` naming what is wrong."""
    from twm_core.envs.games import resolve_game  # lazy: pulls in gymnasium and ALE

    try:
        game = resolve_game(game)
    except ValueError as e:
        raise InvalidJob(f"game: {e}") from e
    seed = secrets.randbelow(2**31) if seed is None else seed  # a seed is always set, and saved
    overrides = dict(overrides or {})
    all_overrides = {**overrides, **({"train.total_steps": steps} if steps is not None else {})}
    try:
        cfg = make_config(preset, game, seed, all_overrides)
        if cfg.env.game != game:  # overridden as `env.game`: must name a real game too
            resolve_game(cfg.env.game)
    except (ValueError, OverflowError) as e:  # ConfigError included; int("1e400") overflows
        raise InvalidJob(str(e)) from e
    resolved = cfg.to_dict()
    sections = [key for key in overrides if isinstance(_lookup(resolved, key), dict)]
    if sections:  # a whole section would silently reset the preset's other fields of that section
        raise InvalidJob(f"overrides name config sections, not fields: {sections} (use e.g. 'train.total_steps')")
    for name, value in (("seed", cfg.seed), ("train.total_steps", cfg.train.total_steps)):
        if not 0 <= value <= _MAX_INT:  # SQLite stores signed 64-bit integers, torch seeds fit in them too
            raise InvalidJob(f"{name} must lie in [0, {_MAX_INT}], got {value}")
    device = device or settings.device
    try:
        executor.check_device(device)
    except (ValueError, ExecutorError) as e:
        raise InvalidJob(str(e)) from e
    check_resources(settings, cfg, device, all_overrides, executor.kind)
    run_id = new_run_id(cfg.env.game, cfg.preset, cfg.seed)
    now = time.time()
    row = {
        "job_id": uuid.uuid4().hex[:12], "run_id": run_id, "run_dir": str(settings.runs_dir / run_id),
        "game": cfg.env.game, "preset": preset, "seed": cfg.seed, "device": device, "steps": steps,
        "overrides": json.dumps(overrides), "total_steps": cfg.train.total_steps, "state": "queued", "attempt": 1,
        "created_at": now, "queued_at": now, "executor": executor.kind,
    }
    return PreparedJob(row, cfg)


def check_resources(settings: Settings, cfg: TWMConfig, device: str, overrides: dict[str, Any],
                    executor: str) -> None:
    """The caps on jobs submitted over HTTP (`Settings.max_*`, `job_memory_fraction`); raises `InvalidJob`."""
    from twm_core.resources import memory_breakdown  # lazy: builds the models (on the meta device)

    errors = []
    for name, value, cap, env in (
            ("train.total_steps", cfg.train.total_steps, settings.max_job_steps, "TWM_MAX_JOB_STEPS"),
            ("replay.capacity", cfg.replay.capacity, settings.max_replay_capacity, "TWM_MAX_REPLAY_CAPACITY")):
        if cap is not None and value > cap:
            errors.append(f"{name} must be <= {cap} ({env}), got {value}")
    if errors:  # before the estimate: a capacity of 1e12 makes every other number moot
        raise InvalidJob("; ".join(errors))
    try:
        estimate = memory_breakdown(cfg)
    except ValueError as e:  # too many layers (twm_core.resources.MAX_LAYERS)
        raise InvalidJob(str(e)) from e
    except (RuntimeError, OverflowError) as e:  # a width so large that even a meta tensor cannot hold its size
        raise InvalidJob(f"model sizes out of range ({_named(overrides, _MODEL_SIZE_FIELDS, cfg.preset)}): {e}") from e
    cap = settings.max_model_params
    if cap is not None and estimate.num_parameters > cap:
        raise InvalidJob(f"the model has {estimate.num_parameters:,} parameters, more than {cap:,} "
                         f"(TWM_MAX_MODEL_PARAMS); {_named(overrides, _MODEL_SIZE_FIELDS, cfg.preset)}")
    fraction = settings.job_memory_fraction
    if fraction is None or executor != "local":
        return
    ram = _total_ram()
    gpu = _device_memory(device)
    checks = [("this machine's RAM", estimate.host if gpu else estimate.total, ram)]
    if gpu is not None:
        checks.append((f"the memory of {gpu[0]}", estimate.device, gpu[1]))
    for where, need, have in checks:
        if need > fraction * have:
            raise InvalidJob(f"the job needs about {_gib(need)} (estimate: replay {_gib(estimate.replay)}, model and "
                             f"Adam state {_gib(estimate.parameters + estimate.optimizer)}, activations "
                             f"{_gib(estimate.activations)}), more than {fraction:g} of {where} ({_gib(have)}, "
                             f"TWM_JOB_MEMORY_FRACTION); {_named(overrides, _MEMORY_FIELDS, cfg.preset)}")


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _named(overrides: dict[str, Any], names: Sequence[str], preset: str) -> str:
    """Which of the request's overrides set the size (or the preset's own values, when none did)."""
    given = [f"{key}={overrides[key]!r}" for key in overrides if key in names]
    return f"set by {', '.join(given)}" if given else f"the preset {preset!r} itself"


def _total_ram() -> int:
    """Bytes of this machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _device_memory(device: str) -> tuple[str, int] | None:
    """(name, total bytes) of the CUDA device a job on `device` uses; None for a CPU job."""
    import torch  # lazy, as `Settings.resolved_device`

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not device.startswith("cuda"):
        return None
    index = int(device.partition(":")[2] or 0)
    return device, int(torch.cuda.get_device_properties(index).total_memory)


def _lookup(config: dict[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value
