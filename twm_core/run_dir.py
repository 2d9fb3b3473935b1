"""A run directory: the only channel between a training process and the backend.

Layout (the training process writes, the backend reads while the run is live):

    <run_dir>/config.json      TWMConfig.to_dict(), written once
    <run_dir>/status.json      {state, pid, step, total_steps, error, updated, stage, eta_s, ...}, replaced
                               atomically
    <run_dir>/metrics.jsonl    append-only metric rows (twm_core.metrics)
    <run_dir>/scores.jsonl     append-only episode scores (twm_core.metrics)
    <run_dir>/ckpt/            step_{step:09d}.pt full checkpoints and snap_{step:09d}.pt weights-only snapshots,
                               written atomically (twm_core.checkpoint)
    <run_dir>/replay/          replay chunks, written atomically (twm_core.replay_store)
    <run_dir>/evals/           on-demand evaluations of checkpoints, one record each, replaced atomically
                               (twm_core.checkpoint_evaluation; the process that evaluates writes, not the trainer)

This module holds the paths (`RunDir`), run ids and the listing of runs. The file primitives (`atomic_write`,
`write_json_atomic`, `read_json`, the tolerant-reading helpers) live in `twm_core.file_io`, status.json (states,
`write_status`, the typed `read_run_status`) in `twm_core.run_status`, the other files' tolerant reading in
`twm_core.run_reader`; their names are re-exported here, so `from twm_core.run_dir import write_status` keeps working.
"""

from __future__ import annotations

import os
import re
import secrets
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from twm_core.file_io import (
    MAX_JSON_DEPTH,
    NON_FINITE,
    atomic_write,
    describe_error,
    fsync_dir,
    json_safe,
    read_json,
    write_json_atomic,
)
from twm_core.run_status import (
    FINAL_STATES,
    LIVE_STATES,
    UNFINISHED_STATES,
    WRITTEN_STATES,
    RunState,
    RunStatus,
    pid_alive,
    read_run_status,
    read_status,
    status_is_stale,
    write_status,
)

__all__ = [
    # defined here
    "RUN_ID_MAX_LENGTH", "RUN_ID_RE", "RunDir", "RunNotFoundError", "is_inside", "list_runs", "new_run_id",
    "remove_temporary_files", "valid_run_id",
    # re-exported from twm_core.file_io and twm_core.run_status (their home since the split of this module)
    "MAX_JSON_DEPTH", "NON_FINITE", "atomic_write", "describe_error", "fsync_dir", "json_safe", "read_json",
    "write_json_atomic",
    "FINAL_STATES", "LIVE_STATES", "UNFINISHED_STATES", "WRITTEN_STATES", "RunState", "RunStatus", "pid_alive",
    "read_run_status", "read_status", "status_is_stale", "write_status",
]

_SLUG_RE = re.compile(r"[^a-z0-9]+")
RUN_ID_MAX_LENGTH = 255
"""Longest run id: a run id names one directory, and Linux file names stop at 255 bytes (NAME_MAX)."""
RUN_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{RUN_ID_MAX_LENGTH - 1}}}")
"""The run-id rule (use with `fullmatch`): one plain path component of ASCII letters, digits and `._-`, starting
with a letter or digit, so never `.`, `..`, a hidden name, a separator or a NUL."""


def valid_run_id(run_id: str) -> bool:
    """Whether `run_id` can name a run directory (`RUN_ID_RE`): the one check every reader of a run id applies."""
    return RUN_ID_RE.fullmatch(run_id) is not None


class RunNotFoundError(LookupError):
    """No run of that id: no directory with a config.json (never made, deleted meanwhile, or not a plain name)."""


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory; creating it is explicit (`create()`), reading it never creates anything."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # accept str, store Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def scores_path(self) -> Path:
        return self.path / "scores.jsonl"

    @property
    def ckpt_dir(self) -> Path:
        return self.path / "ckpt"

    @property
    def replay_dir(self) -> Path:
        return self.path / "replay"

    @property
    def evals_dir(self) -> Path:
        return self.path / "evals"

    def create(self) -> RunDir:
        """Make the run directory (and its parents); returns self so `RunDir(p).create()` chains."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        """Whether the run directory exists (a listed run also has config.json, see `list_runs`)."""
        return self.path.is_dir()

    def name_of(self, path: Path) -> str:
        """`path` as `<run_id>/<relative path>`: how errors name files (never the server's absolute paths)."""
        try:
            return f"{self.run_id}/{Path(path).relative_to(self.path).as_posix()}"
        except ValueError:
            return f"{self.run_id}/{Path(path).name}"

    def contains(self, path: Path) -> bool:
        """Whether `path`, with every symlink resolved, lies inside this run directory (so it may be read)."""
        return is_inside(Path(path), self.path)


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path` resolves (symlinks followed) to `root` itself or to something below it."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def new_run_id(game: str, preset: str, seed: int, now: datetime | None = None) -> str:
    """A sortable, unique run id such as `20261125-205012-pong-debug-s0-1a2b` (UTC time unless `now` is given).

    The 4 random hex characters (from `secrets`) keep two runs started in the same second apart.
    """
    now = datetime.now(UTC) if now is None else now
    return f"{now:%Y%m%d-%H%M%S}-{_slug(game)}-{_slug(preset)}-s{int(seed)}-{secrets.token_hex(2)}"


def _slug(text: str) -> str:
    """Lowercase; each run of characters other than [a-z0-9] becomes one '-' ('ALE/Pong-v5' -> 'ale-pong-v5')."""
    slug = _SLUG_RE.sub("-", text.lower()).strip("-")
    if not slug:
        raise ValueError(f"cannot build a run id part from {text!r}")
    return slug


def list_runs(root: Path) -> list[RunDir]:
    """Subdirectories of `root` holding a config.json, newest first (config.json mtime, then run id).

    A config.json that is damaged (a directory, a dangling symlink) still makes a run, so that it is listed as
    damaged rather than vanishing; a run directory that is a symlink out of `root` is skipped, never followed.
    """
    runs: list[tuple[float, str, RunDir]] = []
    try:
        entries = list(Path(root).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        run = RunDir(entry)
        if entry.name.startswith(".") or not entry.is_dir() or not is_inside(entry, root):
            continue
        try:
            # config.json is written once, so its mtime is the run's creation time; the directory's own mtime
            # changes with every status.json replace. lstat: a dangling link is still a (damaged) run.
            mtime = run.config_path.lstat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            continue
        runs.append((mtime, run.run_id, run))
    runs.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [run for _, _, run in runs]


def remove_temporary_files(run_dir: RunDir) -> list[Path]:
    """Delete the hidden `.<name>.*.tmp` files `atomic_write` leaves when its process is killed mid-write.

    Only safe while no other process writes the run, which is why the trainer calls it as it (re)starts: a run has
    one training process, and the backend writes status.json only once that process is gone. Temporaries of replay
    chunks are swept by the next `twm_core.replay_store.flush`.
    """
    removed = []
    for directory in (run_dir.path, run_dir.ckpt_dir):
        try:
            entries = list(directory.iterdir())
        except OSError:  # absent (a fresh run has no ckpt/ yet) or not a directory
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and not entry.is_dir():
                with suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed
