"""A run's status.json: the states it may hold, how it is written, and how it is read (typed, tolerant, stale rule).

`status.json` has one writer at a time (the training process, or the backend once the process is gone);
`write_status` is a read-merge-replace through `twm_core.file_io.write_json_atomic` and takes no lock.

Reading is tolerant (`read_run_status`): a file of the wrong shape reads as a typed `RunStatus` plus a `problem`
string naming it relative to the runs directory, never as an exception, so one damaged run cannot break a listing of
all of them. A symlink that leads out of the run directory is not read.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import psutil

from twm_core.file_io import NON_FINITE, describe_error, json_safe, read_json, write_json_atomic

if TYPE_CHECKING:  # run_dir re-exports this module's names, so it is imported for annotations only
    from twm_core.run_dir import RunDir


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
UNFINISHED_STATES = frozenset({RunState.QUEUED}) | LIVE_STATES
"""States that an attempt which has ended leaves wrong: it died before writing its final state (or any state)."""


# ------------------------------------------------------------------------------------------------ writing
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


# ------------------------------------------------------------------------------------------------ liveness
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


# ------------------------------------------------------------------------------------------------ typed reading
_STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,), "step": (int,), "total_steps": (int,), "train_steps": (int,), "phase": (str,),
    "error": (str,), "device": (str,), "updated": (int, float),
    "stage": (str,), "stage_done": (int, float), "stage_total": (int, float), "stage_unit": (str,),
    "stage_started_at": (int, float), "eta_s": (int, float), "run_eta_s": (int, float),
}
"""Types of the status fields readers rely on; one of another type is dropped (and reported) on reading."""

STAGES = ("prefill", "pretrain/obs", "pretrain/dyn", "pretrain/ac", "train", "eval", "final_eval")
"""`stage` values, in the order a run goes through them (eval recurs within train)."""
STAGE_UNITS = ("env steps", "frames", "episodes")
"""`stage_unit` values: env steps (prefill, train), frames of budget (pretrain/*), episodes (eval, final_eval)."""


@dataclass(frozen=True)
class StageProgress:
    """Where the run is within its current stage, as the trainer writes it (`twm_core.recorder` defines each
    field and how the estimates are made)."""

    stage: str
    """One of `STAGES`."""
    done: float | None
    """`stage_done`: work done in the stage, in `unit` (train counts from 0 at the prefill)."""
    total: float | None
    """`stage_total`: work the stage needs, in `unit` (None when not known)."""
    unit: str | None
    """`stage_unit`: one of `STAGE_UNITS`."""
    started_at: float | None
    """`stage_started_at`: unix time the stage started in this attempt."""
    eta_s: float | None
    """Seconds left in the stage at this attempt's rate; None until measurable."""
    run_eta_s: float | None
    """Seconds left for the whole run; None where not honestly estimable."""


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

    @property
    def progress(self) -> StageProgress | None:
        """The stage fields, typed (a field of the wrong type reads as None); None when no stage is written."""
        stage = self.fields.get("stage")
        if not isinstance(stage, str):
            return None
        f = self.fields.get
        return StageProgress(stage, f("stage_done"), f("stage_total"), f("stage_unit"), f("stage_started_at"),
                             f("eta_s"), f("run_eta_s"))

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
