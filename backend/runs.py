"""Reading run directories for the API: listings, summaries, metric queries, scores, checkpoints and live events.

Everything here reads files a training process may be writing at the same moment. The writers make that safe
(`twm_core.run_dir`): JSONL logs are append-only with one write per line, so `read_jsonl` sees whole rows plus at
most one partial last line, which it leaves for the next read; status.json and checkpoints are replaced atomically,
so a reader sees the old file or the new one. What remains is for this module: a file may vanish between a listing
and a `stat` (a pruned checkpoint), a hand-edited file may not parse, and a run whose process died never says so
itself. None of these may turn into a 500, so unreadable parts read as missing.

No FastAPI here: the router (`backend.routers.runs`) maps `RunNotFoundError` to 404 and wraps `follow_run` in SSE.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio

from backend.schemas.runs import (
    CheckpointInfo,
    MetricsPage,
    RunDetail,
    RunSummary,
    ScoreKind,
    ScoreRow,
    ScoresPage,
    ScoresSummary,
)
from twm_core.checkpoint import list_checkpoints
from twm_core.metrics import downsample, read_jsonl
from twm_core.run_dir import FINAL_STATES, RunDir, list_runs, read_json, read_status, status_is_stale

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # one plain path component, never '.' or '..'
_RESERVED = ("step", "time")
_EVAL_METRICS = {"eval": "eval/score_mean", "final_eval": "eval/final_score_mean"}


class RunNotFoundError(LookupError):
    """No run directory (a folder with config.json) of that id under the runs directory."""


# ------------------------------------------------------------------------------------------------ files
def resolve_run(runs_dir: Path, run_id: str) -> RunDir:
    """The run `run_id` directly under `runs_dir`; anything else (traversal, absent, no config.json) is not found."""
    if not _RUN_ID_RE.match(run_id) or ".." in run_id:
        raise RunNotFoundError(f"no run {run_id!r}: a run id is one directory name of [A-Za-z0-9._-]")
    run = RunDir(runs_dir / run_id)
    if not run.config_path.is_file():
        raise RunNotFoundError(f"no run {run_id!r} in {runs_dir}")
    return run


def read_rows(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete rows of a JSONL log from byte `offset` on that carry a numeric `step`, and the next offset.

    A missing or unreadable file has no rows; a partial last line is left for the next read (see `read_jsonl`).
    """
    try:
        rows, offset = read_jsonl(path, offset)
    except OSError:
        return [], offset
    # Our writers never log NaN/inf (they become null), but Python's json reads the tokens from a hand-made file,
    # and a non-finite float would make the JSON response fail: read it as null too.
    return [{key: None if _non_finite(value) else value for key, value in row.items()}
            for row in rows if _is_number(row.get("step"))], offset


def _rows(path: Path) -> list[dict[str, Any]]:
    return read_rows(path)[0]


def read_config(run: RunDir) -> dict[str, Any]:
    """config.json as a dict; an unreadable one reads as empty (the run is still listed)."""
    try:
        return read_json(run.config_path, retries=1) or {}
    except (OSError, ValueError):
        return {}


def effective_status(run: RunDir) -> dict[str, Any] | None:
    """status.json, with a live state whose process is gone reported as `failed` (`stale: true`); None if absent.

    A crashed or killed trainer cannot write its own final state, and the job manager may not be around to do it
    (a CLI run, a restarted backend), so the reader decides from the pid.
    """
    try:
        status = read_status(run)
    except (OSError, ValueError) as exc:
        return {"state": "unknown", "error": f"status.json is unreadable: {exc}"}
    if status is None:
        return None
    if status_is_stale(status):
        reported = status.get("state")
        error = status.get("error") or f"the training process (pid {status.get('pid')}) is gone while {reported}"
        return {**status, "state": "failed", "stale": True, "reported_state": reported, "error": error}
    return status


def is_final(status: dict[str, Any] | None) -> bool:
    """Whether a run in this (effective) status will write nothing more."""
    return status is not None and status.get("state") in FINAL_STATES


def checkpoint_infos(run: RunDir) -> list[CheckpointInfo]:
    """The run's checkpoints by increasing step; one pruned between listing and stat is skipped."""
    infos = []
    for step, path in list_checkpoints(run):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        infos.append(CheckpointInfo(step=step, name=path.name, size_bytes=stat.st_size, mtime=stat.st_mtime))
    return infos


# ------------------------------------------------------------------------------------------------ summaries
def list_run_summaries(runs_dir: Path) -> list[RunSummary]:
    """A summary of every run under `runs_dir` (any folder with config.json, CLI runs included), newest first."""
    summaries = []
    for run in list_runs(runs_dir):
        try:
            summaries.append(run_summary(run))
        except FileNotFoundError:  # deleted while we were listing
            continue
    return summaries


def run_summary(run: RunDir) -> RunSummary:
    """Identity (config), progress (status) and latest evaluation (scores, else metrics) of one run."""
    evaluations = _evaluations(_rows(run.scores_path))
    if not evaluations:  # scores.jsonl lost or not written by this trainer: the metric rows carry the means too
        evaluations = _metric_evaluations(_rows(run.metrics_path))
    return _summary(run, read_config(run), effective_status(run), evaluations, len(checkpoint_infos(run)))


def run_detail(run: RunDir) -> RunDetail:
    """The summary plus config, raw status, the latest value of every metric, checkpoints and a scores summary."""
    config, status = read_config(run), effective_status(run)
    metric_rows, score_rows = _rows(run.metrics_path), _rows(run.scores_path)
    latest: dict[str, Any] = {}
    for row in metric_rows:
        latest.update((key, value) for key, value in row.items() if key not in _RESERVED)
    evaluations = _evaluations(score_rows) or _metric_evaluations(metric_rows)
    checkpoints = checkpoint_infos(run)
    summary = _summary(run, config, status, evaluations, len(checkpoints))
    return RunDetail(
        **summary.model_dump(), config=config, status=status, latest_metrics=latest,
        last_metrics_step=int(metric_rows[-1]["step"]) if metric_rows else None, checkpoints=checkpoints,
        scores=_scores_summary(evaluations, score_rows, latest),
    )


def _summary(run: RunDir, config: dict[str, Any], status: dict[str, Any] | None,
             evaluations: list[tuple[str, int, float]], num_checkpoints: int) -> RunSummary:
    status = status or {}
    env, train = config.get("env") or {}, config.get("train") or {}
    latest = evaluations[-1] if evaluations else None
    return RunSummary(
        run_id=run.run_id, game=_str(env.get("game")), preset=_str(config.get("preset")),
        seed=_int(config.get("seed")), state=_str(status.get("state")) or "unknown",
        stale=bool(status.get("stale", False)), phase=_str(status.get("phase")), step=_int(status.get("step")),
        total_steps=_int(status.get("total_steps", train.get("total_steps"))),
        created=run.config_path.stat().st_mtime, updated=_float(status.get("updated")),
        error=_str(status.get("error")), latest_eval_score=latest[2] if latest else None,
        latest_eval_step=latest[1] if latest else None, num_checkpoints=num_checkpoints,
    )


def _evaluations(score_rows: Iterable[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """(kind, step, mean score) of each evaluation (eval or final_eval rows sharing a step), in file order."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in score_rows:
        kind, score = row.get("kind"), row.get("score")
        if kind in _EVAL_METRICS and _is_number(score):
            groups.setdefault((kind, int(row["step"])), []).append(float(score))
    return [(kind, step, sum(scores) / len(scores)) for (kind, step), scores in groups.items()]


def _metric_evaluations(metric_rows: Iterable[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """The same as `_evaluations`, from the `eval/score_mean` and `eval/final_score_mean` metrics."""
    found = []
    for row in metric_rows:
        for kind, key in _EVAL_METRICS.items():
            if _is_number(row.get(key)):
                found.append((kind, int(row["step"]), float(row[key])))
    return found


def _scores_summary(evaluations: list[tuple[str, int, float]], score_rows: list[dict[str, Any]],
                    latest_metrics: dict[str, Any]) -> ScoresSummary:
    train = [float(r["score"]) for r in score_rows if r.get("kind") == "train" and _is_number(r.get("score"))]
    last = evaluations[-1] if evaluations else None
    best = max(evaluations, key=lambda e: e[2]) if evaluations else None
    final = next((e for e in reversed(evaluations) if e[0] == "final_eval"), None)
    return ScoresSummary(
        last_eval_mean=last[2] if last else None, last_eval_step=last[1] if last else None,
        best_eval_mean=best[2] if best else None, best_eval_step=best[1] if best else None,
        final_eval_mean=final[2] if final else None, final_eval_step=final[1] if final else None,
        final_eval_hns=_float(latest_metrics.get("eval/final_hns")), eval_hns=_float(latest_metrics.get("eval/hns")),
        evaluations=len(evaluations), train_episodes=len(train), last_train_score=train[-1] if train else None,
    )


# ------------------------------------------------------------------------------------------------ queries
def parse_keys(keys: str | None) -> list[str]:
    """'a, b,,a' -> ['a', 'b']: comma-separated, stripped, empty parts and repeats dropped."""
    return list(dict.fromkeys(part.strip() for part in (keys or "").split(",") if part.strip()))


def query_metrics(run: RunDir, keys: list[str], after_step: int | None = None, max_points: int = 1000,
                  prefix: str | None = None, offset: int = 0) -> MetricsPage:
    """Rows `{step, time?, <key>: value}` of the selected keys (all keys under `prefix` when none are given).

    Rows with `step <= after_step`, rows before byte `offset`, and rows holding none of the keys are dropped; what
    is left is thinned to `max_points` rows by `downsample` (first and last kept).
    """
    all_rows, end = read_rows(run.metrics_path)
    available = sorted({key for row in all_rows for key in row} - set(_RESERVED))
    if prefix:
        available = [key for key in available if key.startswith(prefix)]
    wanted = keys or available
    # A second read only when asked to start mid-file; an offset past the end (a resume cut the file) restarts at 0.
    rows, next_offset = read_rows(run.metrics_path, offset) if offset > 0 else (all_rows, end)
    selected = []
    for row in rows:
        if after_step is not None and row["step"] <= after_step:
            continue
        values = {key: row[key] for key in wanted if key in row}
        if values:
            head = {"step": row["step"], **({"time": row["time"]} if "time" in row else {})}
            selected.append(head | values)
    return MetricsPage(
        run_id=run.run_id, keys=wanted, available_keys=available, rows=downsample(selected, max_points),
        total_rows=len(selected), last_step=int(all_rows[-1]["step"]) if all_rows else None, next_offset=next_offset,
    )


def query_scores(run: RunDir, kind: ScoreKind | None = None) -> ScoresPage:
    """Episode scores of one kind (all kinds when None), plus the summary over all of them."""
    score_rows, metric_rows = _rows(run.scores_path), _rows(run.metrics_path)
    latest: dict[str, Any] = {}
    for row in metric_rows:
        latest.update((key, row[key]) for key in ("eval/hns", "eval/final_hns") if key in row)
    evaluations = _evaluations(score_rows) or _metric_evaluations(metric_rows)
    rows = [
        ScoreRow(step=int(r["step"]), time=_float(r.get("time")), kind=str(r.get("kind")),
                 score=_float(r.get("score")), length=_int(r.get("length")))
        for r in score_rows if kind is None or r.get("kind") == kind
    ]
    return ScoresPage(run_id=run.run_id, kind=kind, rows=rows,
                      summary=_scores_summary(evaluations, score_rows, latest))


# ------------------------------------------------------------------------------------------------ live events
async def follow_run(run: RunDir, after_step: int | None = None,
                     poll_interval: float = 0.5) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield ("metrics", row) for each metric row and ("status", status) on each status change, until the run is
    final; then ("end", {...}) and stop.

    metrics.jsonl is tailed by byte offset, so each row is read once and a half-written last line waits for the next
    poll. `after_step` skips the rows already there with `step <= after_step`; rows appended later are all sent
    (an evaluation row may share the step of the last training row). Status is read *before* the metrics in each
    poll: the trainer logs its last rows before it writes a final state, so seeing that state means every row has
    been read by the end of the same poll.
    """
    offset, backlog, last_step = 0, True, None
    last_status: dict[str, Any] | None = None
    while True:
        status = await anyio.to_thread.run_sync(effective_status, run)
        rows, offset = await anyio.to_thread.run_sync(read_rows, run.metrics_path, offset)
        for row in rows:
            if backlog and after_step is not None and row["step"] <= after_step:
                continue
            last_step = row["step"]
            yield "metrics", row
        backlog = False
        current = status or {"state": "unknown"}
        if current != last_status:
            yield "status", current
            last_status = current
        if is_final(status):
            assert status is not None
            yield "end", {"state": status["state"], "stale": bool(status.get("stale", False)), "last_step": last_step}
            return
        await anyio.sleep(poll_interval)


# ------------------------------------------------------------------------------------------------ helpers
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _int(value: Any) -> int | None:
    return int(value) if _is_number(value) else None


def _float(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
