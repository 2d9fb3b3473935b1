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
process is gone); `write_status` is a read-merge-replace and takes no lock. A kill between `mkstemp` and `os.replace`
leaves the hidden temporary file behind; `remove_temporary_files` sweeps them when a trainer (re)starts.

Reading is tolerant (`read_run_status` here, the other files in `twm_core.run_reader`): a file of the wrong shape
reads as a typed value plus a `problem` string naming it relative to the runs directory, never as an exception, so
one damaged run cannot break a listing of all of them. A symlink that leads out of the run directory is not read.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import psutil


class RunState(StrEnum):
    """`status.json` `state` values; UNKNOWN is never written, it is what a missing or unreadable state reads as."""

    QUEUED = "queued"  # config.json written (`twm_core.launch.prepare_run`), no attempt has started yet
    STARTING = "starting"
    PREFILL = "prefill"
    PRETRAIN = "pretrain"
    TRAINING = "training"
    EVALUATING = "evaluating"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


LIVE_STATES = frozenset({RunState.STARTING, RunState.PREFILL, RunState.PRETRAIN, RunState.TRAINING,
                         RunState.EVALUATING})
"""States of a run whose process should still be running (StrEnum members: `"training" in LIVE_STATES` holds)."""
FINAL_STATES = frozenset({RunState.FINISHED, RunState.FAILED, RunState.CANCELLED})
"""States a run ends in."""
WRITTEN_STATES = frozenset({RunState.QUEUED}) | LIVE_STATES | FINAL_STATES
"""Every state a writer may put in status.json."""
MAX_JSON_DEPTH = 32
"""Deeper JSON than this in a run file is damage (our writers nest 3 levels); it would also overflow recursive code."""

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
    """The run's status.json, or None before the first `write_status` (strict: a bad file raises)."""
    return read_json(run_dir.status_path)


def write_status(run_dir: RunDir, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json, set `updated` (unix time), replace the file atomically; returns the status.

    A damaged status.json is not merged but replaced: the writer's own fields are the whole truth from then on.
    """
    if "state" in fields and fields["state"] not in WRITTEN_STATES:
        known = sorted(map(str, WRITTEN_STATES))
        raise ValueError(f"unknown run state {fields['state']!r}; expected one of {known}")
    current = read_run_status(run_dir)
    status = dict(current.fields) if current is not None else {}
    status.update(fields)
    status["updated"] = time.time()
    write_json_atomic(run_dir.status_path, status)
    return status


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (exited, waiting to be reaped by its parent)."""
    if pid <= 0:  # os.kill(0, ...) and negative pids address process groups
        return False
    try:
        # A zombie may fail with ZombieProcess (a NoSuchProcess) or report its state: both mean it has exited.
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:  # also a pid out of the platform's range
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by another user whose process table entries we may not read


def status_is_stale(status: dict[str, Any] | None) -> bool:
    """True when the status claims a live state but its process is gone (it crashed or was killed)."""
    if not status or not isinstance(status.get("state"), str) or status["state"] not in LIVE_STATES:
        return False
    pid = status.get("pid")
    return not (isinstance(pid, int) and not isinstance(pid, bool) and pid_alive(pid))


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


# ------------------------------------------------------------------------------------------------ typed status
_STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,), "step": (int,), "total_steps": (int,), "train_steps": (int,), "phase": (str,),
    "error": (str,), "device": (str,), "updated": (int, float),
}
"""Types of the status fields readers rely on; one of another type is dropped (and reported) on reading."""


@dataclass(frozen=True)
class RunStatus:
    """status.json as read: its checked fields, the state it reports, and the state that holds (the stale rule).

    The stale rule: a live state whose pid is not a running process reads as FAILED (`stale`), since a crashed or
    killed trainer cannot write its own final state and nobody else may be around to do it (a CLI run, a
    restarted backend).
    """

    fields: dict[str, Any]
    """The file's object, JSON-safe; a known field of the wrong type and an invalid `state` are left out."""
    reported: RunState
    """The state the file says (UNKNOWN when missing, invalid or unreadable)."""
    state: RunState
    """The state that holds: `reported`, or FAILED when stale."""
    stale: bool = False
    problems: list[str] = field(default_factory=list)
    """Why (part of) the file could not be used, naming it `<run_id>/status.json`."""

    @property
    def error(self) -> str | None:
        """The file's error; else why the status cannot be trusted (unreadable file, a process that is gone)."""
        if self.fields.get("error"):
            return str(self.fields["error"])
        if self.problems and not self.fields:
            return f"status.json is unreadable: {'; '.join(self.problems)}"
        if self.stale:
            return f"the training process (pid {self.fields.get('pid')}) is gone while {self.reported}"
        return None

    @property
    def final(self) -> bool:
        """Whether a run in this status will write nothing more."""
        return self.state in FINAL_STATES

    def get(self, key: str) -> Any:
        return self.fields.get(key)

    def as_dict(self) -> dict[str, Any]:
        """The status as the API shows it: the file's fields, with the effective state (and why) folded in."""
        out = {**self.fields, "state": str(self.state)}
        if self.stale:
            out.update(stale=True, reported_state=str(self.reported))
        if self.error is not None:
            out["error"] = self.error
        return out


def read_run_status(run_dir: RunDir) -> RunStatus | None:
    """status.json, typed and checked (see `RunStatus`), or None when there is none; never raises."""
    path, name = run_dir.status_path, run_dir.name_of(run_dir.status_path)
    if not os.path.lexists(path):
        return None
    try:
        if not run_dir.contains(path):
            raise ValueError("a symlink out of the run directory (not followed)")
        raw = read_json(path, retries=1)
        if raw is None:
            raise ValueError("a dangling symlink")
        replaced: list[str] = []
        fields = json_safe(raw, replaced)
    except (OSError, ValueError, RecursionError) as exc:
        return RunStatus({}, RunState.UNKNOWN, RunState.UNKNOWN, problems=[f"{name}: {describe_error(exc)}"])
    problems = [f"{name}: {NON_FINITE}"] if replaced else []
    for key, types in _STATUS_TYPES.items():
        value = fields.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            problems.append(f"{name}: {key} is {type(value).__name__}, expected {types[0].__name__}")
            del fields[key]
    state = fields.pop("state", None)
    reported = _state(state)
    if reported is RunState.UNKNOWN:
        if state is not None:
            problems.append(f"{name}: state {str(state)[:40]!r} is not a run state")
    else:
        fields["state"] = str(reported)
    stale = status_is_stale(fields)
    return RunStatus(fields, reported, RunState.FAILED if stale else reported, stale, problems)


def _state(value: Any) -> RunState:
    try:
        return RunState(value) if isinstance(value, str) else RunState.UNKNOWN
    except ValueError:
        return RunState.UNKNOWN


# ------------------------------------------------------------------------------------------------ helpers
def json_safe(obj: Any, replaced: list[str] | None = None, depth: int = 0) -> Any:
    """A copy of parsed JSON with NaN/±inf as None (a JSON response cannot hold them); ValueError when too deep.

    Our writers never write NaN/Infinity tokens (strict JSON), so each replacement is noted in `replaced`.
    """
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(obj, float) and not math.isfinite(obj):
        if replaced is not None:
            replaced.append(repr(obj))
        return None
    if isinstance(obj, dict):
        return {str(key): json_safe(value, replaced, depth + 1) for key, value in obj.items()}
    if isinstance(obj, list):
        return [json_safe(value, replaced, depth + 1) for value in obj]
    return obj


NON_FINITE = "non-finite numbers (NaN/Infinity) read as null"


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed read without the absolute path an OSError's text carries."""
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid UTF-8 (byte {exc.start})"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(": ", 1)[1] if text.startswith(("/", ".")) and ": " in text else text


def remove_temporary_files(run_dir: RunDir) -> list[Path]:
    """Delete the hidden `.<name>.*.tmp` files `atomic_write` leaves when its process is killed mid-write.

    Only safe while no other process writes the run, which is why the trainer calls it as it (re)starts: a run has
    one training process, and the backend writes status.json only once that process is gone.
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
