"""Tolerant, typed reading of one run directory: config, status, metrics, scores, evaluations and checkpoints.

A run directory is read by the backend while a trainer writes it, and may hold anything a crash, a full disk or a
hand edit left behind. The rule here: *a bad line is skipped and counted, a bad file marks the run damaged with a
reason*, and nothing raises except `RunNotFoundError` (the run itself is gone). Each reason names its file relative
to the runs directory (`<run_id>/scores.jsonl: ...`), never by the server's absolute path. A file that is a
symlink out of the run directory is not read (a run must not be able to show the backend's `/etc/passwd`).

One `RunReader` serves one request: it reads each file once and collects what was wrong in `problems`; `damaged`
folds them into the one line a listing shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twm_core.checkpoint import CheckpointFile, scan_checkpoints
from twm_core.metrics import (
    Evaluation,
    JsonlPage,
    evaluations_from_metrics,
    evaluations_from_scores,
    is_number,
    read_jsonl_page,
)
from twm_core.run_dir import (
    NON_FINITE,
    RunDir,
    RunNotFoundError,
    RunStatus,
    describe_error,
    json_safe,
    read_json,
    read_run_status,
)


@dataclass(frozen=True)
class RunIdentity:
    """What a run is, from config.json; a field that is missing or of the wrong type is None."""

    game: str | None = None
    preset: str | None = None
    seed: int | None = None
    total_steps: int | None = None


@dataclass(frozen=True)
class ScoreRecord:
    """One scores.jsonl row (one finished episode)."""

    step: int
    time: float | None
    kind: str
    score: float | None
    length: int | None


@dataclass(frozen=True)
class EvaluationSummary:
    """Evaluation results (means over each evaluation's episodes) and training-episode counts."""

    last_eval_mean: float | None = None
    last_eval_step: int | None = None
    best_eval_mean: float | None = None
    best_eval_step: int | None = None
    final_eval_mean: float | None = None
    final_eval_step: int | None = None
    final_eval_hns: float | None = None
    eval_hns: float | None = None
    evaluations: int = 0
    train_episodes: int = 0
    last_train_score: float | None = None


class RunReader:
    """Reads one run's files, never raising for their content; `problems` and `skipped` say what was wrong."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.problems: list[str] = []
        self.skipped: dict[str, int] = {}
        self._cache: dict[str, Any] = {}

    # -------------------------------------------------------------------------------------------- damage
    @property
    def damaged(self) -> str | None:
        """One line naming every bad file and every file with skipped lines; None when all read cleanly."""
        lines = [f"{name}: {n} unreadable line{'s' if n > 1 else ''} skipped" for name, n in self.skipped.items()]
        return "; ".join([*self.problems, *lines]) or None

    def _problem(self, path: Path, reason: str) -> None:
        text = f"{self.run.name_of(path)}: {reason}"
        if text not in self.problems:
            self.problems.append(text)

    def readable(self, path: Path) -> bool:
        """Whether `path` may be read: it exists, and resolves inside the run (else it is noted as a problem)."""
        if not os.path.lexists(path):
            return False
        if not self.run.contains(path):
            self._problem(path, "a symlink out of the run directory (not followed)")
            return False
        if not path.exists():
            self._problem(path, "a dangling symlink")
            return False
        return True

    # -------------------------------------------------------------------------------------------- files
    def created(self) -> float:
        """config.json's mtime (when the run started); RunNotFoundError when the run is gone (deleted meanwhile)."""
        try:
            return self.run.config_path.lstat().st_mtime
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise RunNotFoundError(f"no run {self.run.run_id!r}") from exc

    def config(self) -> dict[str, Any]:
        """config.json as a JSON-safe dict; an unreadable one reads as {} and marks the run damaged."""
        if "config" not in self._cache:
            config: dict[str, Any] = {}
            path = self.run.config_path
            if self.readable(path):
                replaced: list[str] = []
                try:
                    config = json_safe(read_json(path, retries=1) or {}, replaced)
                except (OSError, ValueError, RecursionError) as exc:
                    self._problem(path, describe_error(exc))
                if replaced:
                    self._problem(path, NON_FINITE)
            self._cache["config"] = config
        return dict(self._cache["config"])

    def identity(self) -> RunIdentity:
        """Game, preset, seed and total steps from config.json; a section of the wrong type is a problem."""
        config = self.config()
        env, train = self._section(config, "env"), self._section(config, "train")
        game, preset, seed, total = env.get("game"), config.get("preset"), config.get("seed"), train.get("total_steps")
        return RunIdentity(game=game if isinstance(game, str) else None,
                           preset=preset if isinstance(preset, str) else None,
                           seed=int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None,
                           total_steps=int(total) if is_number(total) else None)

    def _section(self, config: dict[str, Any], key: str) -> dict[str, Any]:
        value = config.get(key)
        if value is None or isinstance(value, dict):
            return value or {}
        self._problem(self.run.config_path, f"{key} is {type(value).__name__}, expected an object")
        return {}

    def status(self) -> RunStatus | None:
        """status.json, typed and with the stale-process rule applied (`read_run_status`)."""
        if "status" not in self._cache:
            status = None
            if os.path.lexists(self.run.status_path):
                status = read_run_status(self.run)
                for problem in status.problems if status else []:
                    if problem not in self.problems:
                        self.problems.append(problem)
            self._cache["status"] = status
        status = self._cache["status"]
        return status if isinstance(status, RunStatus) else None

    def rows(self, path: Path, offset: int = 0) -> JsonlPage:
        """Rows of a JSONL log that carry a numeric `step`, JSON-safe, from byte `offset` (see `read_jsonl_page`).

        Bad lines are counted into `skipped` for reads from the start; a read from mid-file (a client's offset)
        does not count, since its first fragment may be a partial line.
        """
        if not self.readable(path):
            return JsonlPage([], offset)
        try:
            page = read_jsonl_page(path, offset)
        except OSError as exc:
            self._problem(path, describe_error(exc))
            return JsonlPage([], offset)
        rows: list[dict[str, Any]] = []
        replaced: list[str] = []
        skipped = page.skipped
        for row in page.rows:
            try:
                safe = json_safe(row, replaced)
            except ValueError:
                safe = None
            if safe is not None and is_number(safe.get("step")):
                rows.append(safe)
            else:
                skipped += 1
        if skipped and offset == 0:
            name = self.run.name_of(path)
            self.skipped[name] = self.skipped.get(name, 0) + skipped
        if replaced:
            self._problem(path, NON_FINITE)
        return JsonlPage(rows, page.next_offset, skipped)

    def metrics(self) -> list[dict[str, Any]]:
        """Every metrics.jsonl row (read once per reader)."""
        if "metrics" not in self._cache:
            self._cache["metrics"] = self.rows(self.run.metrics_path).rows
        return list(self._cache["metrics"])

    def score_rows(self) -> list[dict[str, Any]]:
        """Every scores.jsonl row (read once per reader)."""
        if "scores" not in self._cache:
            self._cache["scores"] = self.rows(self.run.scores_path).rows
        return list(self._cache["scores"])

    def scores(self, kind: str | None = None) -> list[ScoreRecord]:
        """Typed scores.jsonl rows of `kind` (all kinds when None)."""
        return [ScoreRecord(step=int(r["step"]), time=_float(r.get("time")), kind=str(r.get("kind")),
                            score=_float(r.get("score")), length=_int(r.get("length")))
                for r in self.score_rows() if kind is None or r.get("kind") == kind]

    def evaluations(self) -> list[Evaluation]:
        """Evaluations from scores.jsonl, else (lost, or an older trainer) from the metric rows."""
        return evaluations_from_scores(self.score_rows()) or evaluations_from_metrics(self.metrics())

    def latest_metrics(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """The last logged value of every metric key (or of `keys`)."""
        wanted = None if keys is None else set(keys)
        latest: dict[str, Any] = {}
        for row in self.metrics():
            latest.update((k, v) for k, v in row.items()
                          if k not in ("step", "time") and (wanted is None or k in wanted))
        return latest

    def evaluation_summary(self) -> EvaluationSummary:
        """Last, best and final evaluation means, human-normalized scores and training-episode counts."""
        evaluations = self.evaluations()
        latest = self.latest_metrics(("eval/hns", "eval/final_hns"))
        train = [r.score for r in self.scores("train") if r.score is not None]
        last = evaluations[-1] if evaluations else None
        best = max(evaluations, key=lambda e: e.mean) if evaluations else None
        final = next((e for e in reversed(evaluations) if e.kind == "final_eval"), None)
        return EvaluationSummary(
            last_eval_mean=last.mean if last else None, last_eval_step=last.step if last else None,
            best_eval_mean=best.mean if best else None, best_eval_step=best.step if best else None,
            final_eval_mean=final.mean if final else None, final_eval_step=final.step if final else None,
            final_eval_hns=_float(latest.get("eval/final_hns")), eval_hns=_float(latest.get("eval/hns")),
            evaluations=len(evaluations), train_episodes=len(train), last_train_score=train[-1] if train else None,
        )

    def checkpoints(self) -> list[CheckpointFile]:
        """The run's checkpoint files (`scan_checkpoints`); bad entries become problems."""
        if "checkpoints" not in self._cache:
            found, problems = scan_checkpoints(self.run)
            self.problems.extend(p for p in problems if p not in self.problems)
            self._cache["checkpoints"] = found
        return list(self._cache["checkpoints"])


def _int(value: Any) -> int | None:
    return int(value) if is_number(value) else None


def _float(value: Any) -> float | None:
    try:
        return float(value) if is_number(value) else None
    except OverflowError:  # an int too large for a float
        return None
