"""A run directory: the only channel between a training process and the backend.

Layout (the training process writes, the backend reads while the run is live):

    <run_dir>/config.json      TWMConfig.to_dict(), written once
    <run_dir>/status.json      {state, pid, step, total_steps, error, updated, ...}, replaced atomically
    <run_dir>/metrics.jsonl    append-only metric rows (twm_core.metrics)
    <run_dir>/scores.jsonl     append-only episode scores (twm_core.metrics)
    <run_dir>/ckpt/            step_{step:09d}.pt checkpoints, written atomically (twm_core.checkpoint)
    <run_dir>/replay/          replay chunks (twm_core.replay)

Every file a reader may open while it is being written goes through `atomic_write`: the bytes land in a hidden
temporary file in the same directory, are fsynced, and `os.replace` swaps them in, so a reader sees the old file or
the new one, never a torn mix. `status.json` has one writer at a time (the training process, or the backend once the
process is gone); `write_status` is a read-merge-replace and takes no lock.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

LIVE_STATES = frozenset({"starting", "prefill", "pretrain", "training", "evaluating"})
"""States of a run whose process should still be running."""
FINAL_STATES = frozenset({"finished", "failed", "cancelled"})
"""States a run ends in."""

_SLUG_RE = re.compile(r"[^a-z0-9]+")


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

    def create(self) -> RunDir:
        """Make the run directory (and its parents); returns self so `RunDir(p).create()` chains."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        """Whether the run directory exists (a listed run also has config.json, see `list_runs`)."""
        return self.path.is_dir()


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


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Open a temporary file next to `path` for binary writing; on a clean exit, fsync it and `os.replace` it.

    On any exception the temporary file is removed and `path` is left as it was. Temporary names start with '.'
    and end in '.tmp', so directory listings can skip them.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600 files; the backend may run as another user
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as JSON to `path` atomically (strict JSON: NaN/inf raise ValueError)."""
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8")
    with atomic_write(path) as f:
        f.write(data)


def read_json(path: Path, retries: int = 3) -> dict[str, Any] | None:
    """Read a JSON object, or None if the file does not exist.

    Files written with `write_json_atomic` are never torn; a decode error can still come from a file written by
    other means, so it is retried a few times (20 ms apart) before the ValueError is raised.
    """
    for attempt in range(retries + 1):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            if attempt == retries:
                raise
            time.sleep(0.02)
            continue
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
        return obj
    raise AssertionError("unreachable")


def read_status(run_dir: RunDir) -> dict[str, Any] | None:
    """The run's status.json, or None before the first `write_status`."""
    return read_json(run_dir.status_path)


def write_status(run_dir: RunDir, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json, set `updated` (unix time), replace the file atomically; returns the status."""
    if "state" in fields and fields["state"] not in LIVE_STATES | FINAL_STATES:
        raise ValueError(f"unknown run state {fields['state']!r}; expected one of {sorted(LIVE_STATES | FINAL_STATES)}")
    status = read_status(run_dir) or {}
    status.update(fields)
    status["updated"] = time.time()
    write_json_atomic(run_dir.status_path, status)
    return status


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (exited, waiting to be reaped by its parent)."""
    if pid <= 0:  # os.kill(0, ...) and negative pids address process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # with procfs, a missing entry means it has just exited
    except OSError:
        return True
    # Format: "pid (comm) S ..."; comm may hold spaces or ')', so the state follows the LAST ')'.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def status_is_stale(status: dict[str, Any] | None) -> bool:
    """True when the status claims a live state but its process is gone (it crashed or was killed)."""
    if not status or status.get("state") not in LIVE_STATES:
        return False
    pid = status.get("pid")
    return not (isinstance(pid, int) and pid_alive(pid))


def list_runs(root: Path) -> list[RunDir]:
    """Subdirectories of `root` holding a config.json, newest first (config.json mtime, then run id)."""
    runs: list[tuple[float, str, RunDir]] = []
    try:
        entries = list(Path(root).iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        run = RunDir(entry)
        try:
            # config.json is written once, so its mtime is the run's creation time; the directory's own mtime
            # changes with every status.json replace.
            mtime = run.config_path.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            continue
        runs.append((mtime, run.run_id, run))
    runs.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [run for _, _, run in runs]
