"""On-demand checkpoint evaluations: each one a `twm eval --record` subprocess writing its record into the run
(`twm_core.checkpoint_evaluation`: `<run>/evals/...json`, progress after each batch of episodes).

The files are the truth: a listing reads them, so an evaluation started before a backend restart still shows (and
one whose process died reads as `failed`). This object only starts processes, caps how many run at once
(`settings.max_evaluations`), refuses a second start of the same (checkpoint, episodes, seed) while it runs, and reaps
its children. Evaluations run beside training jobs, one torch thread each, on the backend's device.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from backend.settings import Settings
from twm_core.checkpoint import resolve_checkpoint
from twm_core.checkpoint_evaluation import EvaluationRecord, check_request, list_evaluations, read_record, record_path
from twm_core.run_dir import RunDir

Key = tuple[str, int, int, int]  # run id, step, episodes, seed


class EvaluationBusy(RuntimeError):
    """This evaluation is running already, or the backend runs as many as it may."""


class EvaluationManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._procs: dict[Key, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, run_dir: RunDir, step: int, episodes: int, seed: int) -> EvaluationRecord:
        """Start evaluating checkpoint `step` (ValueError: bad request; CheckpointNotFoundError; EvaluationBusy)."""
        check_request(episodes, seed)
        resolve_checkpoint(run_dir, step)  # 404 before any process starts
        key = (run_dir.run_id, step, episodes, seed)
        with self._lock:
            self._reap()
            if key in self._procs or read_record(record_path(run_dir, *key[1:]), *key[1:]).state == "running":
                raise EvaluationBusy(f"checkpoint {step} of {run_dir.run_id} is being evaluated with these settings")
            if len(self._procs) >= self.settings.max_evaluations:
                raise EvaluationBusy(f"{len(self._procs)} evaluation(s) running, the most this backend runs at once "
                                     "(TWM_MAX_EVALUATIONS); try again when one has finished")
            command = [self.settings.python_executable or sys.executable, "-m", "twm_core.cli", "eval",
                       str(run_dir.path), "--checkpoint", str(step), "--episodes", str(episodes), "--seed", str(seed),
                       "--device", self.settings.device, "--record"]
            path = record_path(run_dir, step, episodes, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".log"), "ab") as log:
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                self._procs[key] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
        return EvaluationRecord(step, episodes, seed, "running", started_at=time.time())

    def list(self, run_dir: RunDir) -> list[EvaluationRecord]:
        """The run's evaluation records; one started here whose process has not written its file yet is listed
        as running."""
        with self._lock:
            self._reap()
            records = {(r.step, r.episodes, r.seed): r for r in list_evaluations(run_dir)}
            for run_id, step, episodes, seed in self._procs:
                if run_id == run_dir.run_id and (step, episodes, seed) not in records:
                    records[(step, episodes, seed)] = EvaluationRecord(step, episodes, seed, "running")
        return [records[key] for key in sorted(records)]

    def _reap(self) -> None:
        for key, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[key]

    def close(self) -> None:
        """Forget the children (they finish on their own and write their records)."""
        with self._lock:
            self._procs.clear()
