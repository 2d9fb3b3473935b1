"""The result a finished run contributes to a report: the mean raw score of its final evaluation.

A run's result is read from the `final_eval` rows of its scores.jsonl (the last evaluation's, if a resume repeated
it) through `twm_core.run_reader`, so a damaged run never breaks a report: a bad line is skipped and counted (the
result carries the damage in `damaged`), a run whose config.json cannot be read has no result, only a reason.
`collect_runs` finds the runs under the paths a report is asked for and returns results and skipped runs apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from twm_core.run_dir import RunDir, describe_error, list_runs
from twm_core.run_reader import RunReader
from twm_core.run_status import RunState


@dataclass(frozen=True)
class RunResult:
    """The final evaluation of one run."""

    run_id: str
    game: str
    seed: int
    score: float
    """Mean raw score over the final-evaluation episodes."""
    episodes: int
    damaged: str | None = None
    """What was wrong in the run's files although the result could be read (bad lines skipped), else None."""
    preset: str | None = None
    """The config preset the run was built from (a report never pools presets)."""


@dataclass(frozen=True)
class SkippedRun:
    """A path given to the report that has no usable result, and why."""

    path: Path
    reason: str


def read_run_result(run_dir: Path | RunDir) -> RunResult | str:
    """The run's final-evaluation result, or the reason it has none (a one-line string); never raises.

    Files are read tolerantly (`twm_core.run_reader`): bad lines are skipped and counted, and the result of a run
    read despite them carries the damage in `damaged`; a config.json that cannot be read leaves the run out.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    reader = RunReader(run)
    try:
        result = _final_result(reader)
    except OSError as exc:  # the directory itself (not a file in it) cannot be read
        return f"unreadable run directory: {describe_error(exc)}"
    damage = reader.damaged
    if isinstance(result, RunResult):
        return replace(result, damaged=printable(damage)) if damage else result
    return printable(f"{result} ({damage})" if damage and not result.startswith("damaged") else result)


def _final_result(reader: RunReader) -> RunResult | str:
    run = reader.run
    if not run.exists():
        return "not a directory"
    if not os.path.lexists(run.config_path):
        return "no config.json (not a run directory)"
    config, identity = reader.config(), reader.identity()
    if not config and reader.problems:
        return f"damaged: {reader.damaged}"
    if identity.game is None or identity.seed is None:
        return "config.json lacks env.game or seed"
    rows = reader.scores("final_eval")
    if not rows:
        status = reader.status()
        state = status.reported if status else RunState.UNKNOWN
        if status is not None and not status.final and state is not RunState.UNKNOWN:
            return f"no final evaluation yet (run is {state})"
        return f"no final evaluation (state: {state})"
    last_step = max(row.step for row in rows)
    rows = [row for row in rows if row.step == last_step]
    train = config.get("train")
    expected = train.get("final_eval_episodes") if isinstance(train, dict) else None
    if isinstance(expected, int) and not isinstance(expected, bool) and expected > 0:
        if len(rows) < expected:
            return f"final evaluation incomplete: {len(rows)} of {expected} episodes"
        # A crash between writing the rows and the checkpoint repeats the evaluation on resume: keep the last set.
        rows = rows[-expected:]
    scores = [row.score for row in rows]
    if any(score is None for score in scores):
        return "final evaluation has a non-finite score"
    finite = [score for score in scores if score is not None]
    return RunResult(printable(run.run_id), identity.game, identity.seed, float(np.mean(finite)), len(finite),
                     preset=identity.preset)


def printable(text: str) -> str:
    """`text` as valid Unicode: a directory name that is not UTF-8 keeps its bytes as `\\udcxx` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def collect_run_result(run_dir: Path | RunDir) -> RunResult | None:
    """The run's final-evaluation result, or None without one (`read_run_result` says why)."""
    result = read_run_result(run_dir)
    return result if isinstance(result, RunResult) else None


def expand_run_dirs(paths: Iterable[Path | str]) -> tuple[list[Path], list[SkippedRun]]:
    """Run directories among `paths`: a path holding config.json is a run, any other directory is searched one
    level down for runs (`list_runs`: a damaged config.json still makes a run, to be skipped with its reason).
    Duplicates are dropped; paths with no run are returned as skipped."""
    found: dict[Path, None] = {}  # ordered set
    skipped: list[SkippedRun] = []
    for path in map(Path, paths):
        try:
            if os.path.lexists(RunDir(path).config_path):
                found.setdefault(path.resolve())
                continue
            if not path.is_dir():
                skipped.append(SkippedRun(path, "not a directory"))
                continue
            children = sorted(run.path for run in list_runs(path))
        except OSError as exc:  # e.g. a directory we may not list
            skipped.append(SkippedRun(path, f"unreadable: {describe_error(exc)}"))
            continue
        if not children:
            skipped.append(SkippedRun(path, "no run directories (no config.json here or one level down)"))
        for child in children:
            found.setdefault(child.resolve())
    return list(found), skipped


def collect_runs(paths: Iterable[Path | str]) -> tuple[list[RunResult], list[SkippedRun]]:
    """Results of every run under `paths` (see `expand_run_dirs`), and the runs skipped with their reasons."""
    run_dirs, skipped = expand_run_dirs(paths)
    results: list[RunResult] = []
    for run_dir in run_dirs:
        result = read_run_result(run_dir)
        if isinstance(result, RunResult):
            results.append(result)
        else:
            skipped.append(SkippedRun(run_dir, result))
    return results, skipped
