"""Checkpoints on disk: `<run_dir>/ckpt/step_{step:09d}.pt`, saved atomically, loaded with `weights_only=True`.

Two kinds share the format and these functions. A *full* checkpoint (`step_{step:09d}.pt`) holds everything a run
resumes from (`twm_core.training_state`). A *snapshot* (`snap_{step:09d}.pt`, payload `"kind": "snapshot"`) holds
only `config`, `num_actions`, `world_model` and `actor_critic`: the weights at a step, for inspection (the
checkpoint film); `twm_core.agent.load_agent` opens both. Listings (`scan_checkpoints`, `list_checkpoints`,
`resolve_checkpoint`) show both kinds; the resume point (`latest_checkpoint`) and pruning consider full ones only.

A checkpoint is an explicit dict (nanoGPT's pattern), e.g.
`{"format_version", "step", "config", "world_model", "actor", "critic", "critic_target", "optimizers", "rng",
"replay"}`, holding only tensors, dicts, lists, tuples and str/int/float/bool/None. That is what
`torch.load(weights_only=True)` can rebuild without running pickle code, so the backend can open checkpoints of any
run safely; `save_checkpoint` checks it before writing rather than leaving a file that cannot be loaded.
"""

from __future__ import annotations

import os
import random
import re
import stat as stat_module
from collections import OrderedDict
from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twm_core import faults
from twm_core.run_dir import RunDir, atomic_write, describe_error

FORMAT_VERSION = 1
FULL, SNAPSHOT = "full", "snapshot"
CHECKPOINT_KINDS: tuple[str, ...] = (FULL, SNAPSHOT)
"""The kinds of checkpoint file, in the order a listing prefers them when both exist at one step."""
_PREFIXES = {FULL: "step", SNAPSHOT: "snap"}
_CKPT_RE = re.compile(r"^(step|snap)_(\d{9})\.pt$")  # temporary files (".step_*.tmp", ".snap_*.tmp") never match
_KIND_OF_PREFIX = {prefix: kind for kind, prefix in _PREFIXES.items()}
_SCALARS = (str, int, float, bool, type(None))


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used: corrupt, truncated, or of another format version."""


class CheckpointNotFoundError(CheckpointError, LookupError):
    """The requested checkpoint does not exist (the message lists the available steps)."""


def checkpoint_path(run_dir: RunDir, step: int, kind: str = FULL) -> Path:
    """The file name of the checkpoint of `kind` ('full' or 'snapshot') at env step `step`."""
    if kind not in _PREFIXES:
        raise ValueError(f"checkpoint kind must be one of {list(CHECKPOINT_KINDS)}, got {kind!r}")
    return run_dir.ckpt_dir / f"{_PREFIXES[kind]}_{step:09d}.pt"


def validate_payload(obj: Any, key_path: str = "payload") -> None:
    """Raise TypeError naming the key path of the first value `torch.load(weights_only=True)` could not rebuild."""
    if isinstance(obj, torch.Tensor) or type(obj) in _SCALARS:
        return
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in (str, int):
                raise TypeError(f"{key_path}: dict key {key!r} has type {type(key).__name__}; use str or int")
            validate_payload(value, f"{key_path}[{key!r}]")
        return
    if type(obj) in (list, tuple, torch.Size):
        for index, value in enumerate(obj):
            validate_payload(value, f"{key_path}[{index}]")
        return
    raise TypeError(
        f"{key_path}: {type(obj).__module__}.{type(obj).__qualname__} cannot be saved in a weights-only checkpoint; "
        "use tensors, dicts, lists, tuples, str, int, float, bool or None"
    )


def save_checkpoint(run_dir: RunDir, step: int, payload: Mapping[str, Any]) -> Path:
    """Write `payload` (+ `format_version`, `step`) to `ckpt/step_{step:09d}.pt` atomically; returns the path.
    A payload with `"kind": "snapshot"` goes to `ckpt/snap_{step:09d}.pt` instead.

    torch.save goes to a temporary file in the same directory, which is fsynced and then renamed over the final name
    (then the directory is fsynced), so a crash mid-write never leaves a half-written file under a checkpoint name.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if payload.get("step", step) != step:
        raise ValueError(f"payload['step'] = {payload['step']!r} disagrees with step = {step}")
    kind = payload.get("kind", FULL)
    if kind not in _PREFIXES:
        raise ValueError(f"payload['kind'] must be one of {list(CHECKPOINT_KINDS)}, got {kind!r}")
    data = {**payload, "format_version": FORMAT_VERSION, "step": int(step)}
    validate_payload(data)
    run_dir.ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(run_dir, step, kind)
    with atomic_write(path) as f:
        torch.save(data, f)
        faults.reached("checkpoint.before_rename")
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)` (never plain pickle).

    Raises FileNotFoundError for a missing file, CheckpointError for a corrupt/truncated file, a file holding
    anything but plain containers and tensors, or another `format_version`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError, UnpicklingError... for bad files
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r}, this code reads version {FORMAT_VERSION}")
    return data


@dataclass(frozen=True)
class CheckpointFile:
    """One checkpoint on disk, as listed (loading it may still fail: `load_checkpoint` says why)."""

    step: int
    path: Path
    size_bytes: int
    mtime: float
    kind: str = FULL
    """'full' (`step_*.pt`, a resume point) or 'snapshot' (`snap_*.pt`, weights only)."""


def scan_checkpoints(run_dir: RunDir, kinds: Collection[str] = CHECKPOINT_KINDS,
                     ) -> tuple[list[CheckpointFile], list[str]]:
    """The run's checkpoint files of `kinds` by increasing step (full before snapshot at one step), and what was
    wrong with the entries that are not.

    Only regular files inside the run directory count: a `step_*.pt` or `snap_*.pt` that is a directory, a dangling
    symlink or a symlink out of the run is reported (named `<run_id>/ckpt/...`), not listed, so nothing tries to
    load or prune it. Temporary files (`.step_*.tmp`) and a checkpoint pruned while we look are skipped silently.
    """
    found: list[CheckpointFile] = []
    problems: list[str] = []
    ckpt_dir = run_dir.ckpt_dir
    if not os.path.lexists(ckpt_dir):
        return found, problems
    try:
        if not run_dir.contains(ckpt_dir):
            raise OSError(0, "a symlink out of the run directory (not followed)")
        entries = list(ckpt_dir.iterdir())
    except OSError as exc:
        return found, [f"{run_dir.name_of(ckpt_dir)}: {describe_error(exc)}"]
    for path in entries:
        match = _CKPT_RE.match(path.name)
        if not match or _KIND_OF_PREFIX[match.group(1)] not in kinds:
            continue
        try:
            stat = path.lstat()
            if stat_module.S_ISLNK(stat.st_mode):
                if not run_dir.contains(path):
                    raise OSError(0, "a symlink out of the run directory (not followed)")
                stat = path.stat()  # FileNotFoundError when dangling
            if not stat_module.S_ISREG(stat.st_mode):
                raise OSError(0, "not a regular file")
        except FileNotFoundError:
            if os.path.lexists(path):  # still there: a dangling symlink (else: pruned meanwhile)
                problems.append(f"{run_dir.name_of(path)}: a dangling symlink")
            continue
        except OSError as exc:
            problems.append(f"{run_dir.name_of(path)}: {describe_error(exc)}")
            continue
        kind = _KIND_OF_PREFIX[match.group(1)]
        found.append(CheckpointFile(int(match.group(2)), path, stat.st_size, stat.st_mtime, kind))
    return sorted(found, key=lambda c: (c.step, CHECKPOINT_KINDS.index(c.kind))), problems


def list_checkpoints(run_dir: RunDir, *, kinds: Collection[str] = CHECKPOINT_KINDS) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints of `kinds`, one per step (the full one where a snapshot shares its
    step), by increasing step (see `scan_checkpoints`)."""
    by_step: dict[int, Path] = {}
    for c in scan_checkpoints(run_dir, kinds)[0]:
        by_step.setdefault(c.step, c.path)  # the scan puts the full checkpoint of a step first
    return list(by_step.items())


def latest_checkpoint(run_dir: RunDir, *, kinds: Collection[str] = (FULL,)) -> tuple[int, Path] | None:
    """(step, path) of the newest *full* checkpoint (the resume point), or None if the run has none.

    Snapshots are left out by default: they hold no optimizer, replay or RNG state to resume from. Pass
    `kinds=CHECKPOINT_KINDS` for the newest weights of either kind.
    """
    checkpoints = list_checkpoints(run_dir, kinds=kinds)
    return checkpoints[-1] if checkpoints else None


def resolve_checkpoint(run_dir: RunDir, which: int | str, *, kinds: Collection[str] = CHECKPOINT_KINDS) -> Path:
    """Path of checkpoint `which`: 'latest', or a step (int or decimal string); snapshots count (an inspection
    needs only the weights), and where both kinds exist at a step the full checkpoint is the one."""
    checkpoints = dict(list_checkpoints(run_dir, kinds=kinds))
    if which == "latest":
        if not checkpoints:
            raise CheckpointNotFoundError(f"run {run_dir.run_id} has no checkpoints yet")
        return checkpoints[max(checkpoints)]
    if isinstance(which, str) and not which.isdecimal():
        raise ValueError(f"checkpoint must be 'latest' or a step, got {which!r}")
    step = int(which)
    if step not in checkpoints:
        available = ", ".join(str(s) for s in sorted(checkpoints)) or "none"
        raise CheckpointNotFoundError(f"run {run_dir.run_id} has no checkpoint at step {step}; available: {available}")
    return checkpoints[step]


def prune_checkpoints(run_dir: RunDir, keep_last: int, keep_steps: AbstractSet[int] = frozenset(),
                      keep_every: int = 0) -> list[Path]:
    """Delete the full checkpoints except the `keep_last` newest, those at `keep_steps` and (when `keep_every` >
    0) those whose step is a multiple of `keep_every`; returns the deleted paths. Snapshots are never deleted."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 (the newest checkpoint is the resume point), got {keep_last}")
    if keep_every < 0:
        raise ValueError(f"keep_every must be >= 0 (0: none), got {keep_every}")
    checkpoints = list_checkpoints(run_dir, kinds=(FULL,))
    removed = []
    for step, path in checkpoints[:-keep_last]:
        if step not in keep_steps and not (keep_every and step % keep_every == 0):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """States of Python's `random`, numpy's global RNG, torch's CPU (and CUDA) RNGs, and the named Generators.

    Everything is a tensor or a plain Python value (numpy's key array becomes a list), so it fits a weights-only
    checkpoint.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": {"name": str(name), "keys": np.asarray(keys).tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "generators": {key: g.get_state() for key, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore what `capture_rng_state` captured; `generators` are set in place from the entries of the same name."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np.asarray(np_state["keys"], dtype=np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())  # .cpu(): the checkpoint may have been loaded with map_location=cuda
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)
    saved = state.get("generators", {})
    for key, generator in (generators or {}).items():
        if key not in saved:
            raise KeyError(f"no RNG state saved for generator {key!r}; saved: {sorted(saved)}")
        generator.set_state(saved[key].cpu())
