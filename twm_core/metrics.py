"""Append-only JSONL logs: metrics.jsonl and scores.jsonl of a run directory.

A row is one JSON line, `{"step": env_step, "time": unix, "wm/obs/recon_loss": ...}`, written with one `write` call
and flushed, so a reader tailing the file by byte offset (`read_jsonl`) sees whole rows plus at most one partial last
line. Files are never rewritten: a resumed run appends, after `truncate_after` cut the rows logged past its
checkpoint.

`MetricsWriter.write` is the one place that turns tensors into Python numbers (`.item()`); the trainer accumulates
detached tensors between log intervals so that the GPU synchronises once per interval, not once per update step.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeGuard, TypeVar

import numpy as np
import torch

JsonScalar = bool | int | float | str | None
MetricValue = float | int | bool | torch.Tensor | np.generic | np.ndarray

SCORE_KINDS = frozenset({"train", "eval", "final_eval"})
EVAL_METRICS = {"eval": "eval/score_mean", "final_eval": "eval/final_score_mean"}
"""Metric key holding the mean score of each kind of evaluation (`twm_core.evaluation.summarize`)."""
_RESERVED = frozenset({"step", "time"})
RowT = TypeVar("RowT")


def to_json_scalar(value: MetricValue, key: str = "value") -> JsonScalar:
    """One-element tensor / numpy scalar / Python number -> a JSON-safe Python scalar; NaN and ±inf -> None."""
    if isinstance(value, torch.Tensor | np.ndarray):
        numel = value.numel() if isinstance(value, torch.Tensor) else value.size
        if numel != 1:
            raise ValueError(f"metric {key!r}: expected one element, got shape {tuple(value.shape)}")
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # keeps the line valid JSON (no NaN/Infinity tokens)
    raise TypeError(f"metric {key!r}: cannot log a value of type {type(value).__name__}")


class JsonlWriter:
    """Appends JSON rows to a file, one line per row, flushed after each line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_tail(self.path)
        self._file = self.path.open("a", encoding="utf-8", newline="\n")

    def write_row(self, row: Mapping[str, JsonScalar]) -> None:
        """Append one row (values must already be JSON scalars)."""
        line = json.dumps(dict(row), allow_nan=False, separators=(",", ":")) + "\n"
        self._file.write(line)  # one write per row, so the file never holds two half rows
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MetricsWriter(JsonlWriter):
    """Writes metrics.jsonl rows `{"step", "time", **values}` with namespaced keys (`wm/obs/recon_loss`, ...)."""

    def write(self, step: int, values: Mapping[str, MetricValue]) -> dict[str, JsonScalar]:
        """Convert `values` (tensors via `.item()`), append the row, and return it."""
        clash = _RESERVED & values.keys()
        if clash:
            raise ValueError(f"metric keys {sorted(clash)} are reserved for the row itself")
        row: dict[str, JsonScalar] = {"step": int(step), "time": time.time()}
        row.update((key, to_json_scalar(value, key)) for key, value in values.items())
        self.write_row(row)
        return row


class ScoresWriter(JsonlWriter):
    """Writes scores.jsonl rows `{"step", "time", "kind", "score", "length"}`: one per finished episode."""

    def write(self, step: int, kind: str, score: MetricValue, length: int) -> dict[str, JsonScalar]:
        """Append one episode's raw (unclipped) return and its length in env steps; returns the row."""
        if kind not in SCORE_KINDS:
            raise ValueError(f"score kind {kind!r} is not one of {sorted(SCORE_KINDS)}")
        row: dict[str, JsonScalar] = {
            "step": int(step), "time": time.time(), "kind": kind,
            "score": to_json_scalar(score, "score"), "length": int(length),
        }
        self.write_row(row)
        return row


@dataclass(frozen=True)
class JsonlPage:
    """What one read of a JSONL log found: its whole rows, where to read next, and how many lines were bad."""

    rows: list[dict[str, Any]]
    next_offset: int
    skipped: int = 0
    """Complete lines that are not a JSON object (garbage, invalid UTF-8, a list...): skipped, not fatal."""


def read_jsonl_page(path: Path, offset: int = 0) -> JsonlPage:
    """Rows of the complete lines from byte `offset` on, the offset to pass next time, and the bad-line count.

    A partial last line (being written right now) is left for the next call. A missing file gives no rows.
    An offset past the end of the file means it was cut by a resume (`truncate_after`): reading restarts at 0.
    A complete line that does not decode to a JSON object is skipped and counted; a read starting mid-line (an
    offset that is not a line start) skips its first fragment the same way. Other OSErrors propagate.
    """
    try:
        with Path(path).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return JsonlPage([], offset)
    end = data.rfind(b"\n") + 1  # 0 when no complete line yet
    rows, skipped = [], 0
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)  # bytes: UnicodeDecodeError (a ValueError) for invalid UTF-8
        except (ValueError, RecursionError):  # RecursionError: absurdly nested garbage
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif line.strip():
            skipped += 1
    return JsonlPage(rows, offset + end, skipped)


def read_jsonl(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """`read_jsonl_page` as `(rows, next_offset)`: bad lines are skipped without being counted."""
    page = read_jsonl_page(path, offset)
    return page.rows, page.next_offset


def truncate_after(path: Path, step: int) -> int:
    """Cut the rows with `row["step"] > step` off the end of the file; returns how many were removed.

    Rows are in step order, so the file is truncated at the byte offset of the first such row: earlier bytes are
    never rewritten. A partial last line (torn by a crash) is dropped as well, without being counted.
    """
    try:
        with Path(path).open("rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    cut, removed, position = None, 0, 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):  # torn tail
            cut = position if cut is None else cut
            break
        if cut is None and _row_step(line) > step:
            cut = position
        if cut is not None:
            removed += 1
        position += len(line)
    if cut is not None:
        os.truncate(path, cut)
    return removed


def _row_step(line: bytes) -> float:
    """The `step` of a JSONL line; a bad line reads as -inf, so it never starts the cut (its neighbours decide)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, RecursionError, AttributeError):
        return -math.inf
    return step if isinstance(step, int | float) and not isinstance(step, bool) else -math.inf


def _drop_partial_tail(path: Path) -> None:
    """Truncate a torn last line (a crash mid-write), so the next appended row starts on its own line."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
    except FileNotFoundError:
        return
    rows_end = read_jsonl(path)[1]
    os.truncate(path, rows_end)


def downsample(rows: Sequence[RowT], max_points: int) -> list[RowT]:
    """At most `max_points` rows, evenly spaced over `rows`, always keeping the first and the last."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    n = len(rows)
    if n <= max_points:
        return list(rows)
    if max_points == 1:
        return [rows[-1]]
    # Index i*(n-1)//(m-1) for i in 0..m-1: strictly increasing because n > m, ends exactly at n-1.
    return [rows[i * (n - 1) // (max_points - 1)] for i in range(max_points)]


# ------------------------------------------------------------------------------------------------ evaluations
@dataclass(frozen=True)
class Evaluation:
    """One evaluation: its kind (`eval` or `final_eval`), env step, and mean score over its episodes."""

    kind: str
    step: int
    mean: float


def evaluations_from_scores(score_rows: Iterable[Mapping[str, Any]]) -> list[Evaluation]:
    """Each evaluation in scores.jsonl (eval or final_eval rows sharing a step), in file order.

    Rows without a finite numeric step and score are ignored, so a hand-edited file cannot break the means.
    """
    groups: dict[tuple[str, int], list[float]] = {}
    for row in score_rows:
        kind, step, score = row.get("kind"), row.get("step"), row.get("score")
        if kind in EVAL_METRICS and is_number(step) and is_number(score):
            groups.setdefault((str(kind), int(step)), []).append(float(score))
    return [Evaluation(kind, step, sum(scores) / len(scores)) for (kind, step), scores in groups.items()]


def evaluations_from_metrics(metric_rows: Iterable[Mapping[str, Any]]) -> list[Evaluation]:
    """The same from the `eval/score_mean` and `eval/final_score_mean` metrics (when scores.jsonl is missing)."""
    found = []
    for row in metric_rows:
        for kind, key in EVAL_METRICS.items():
            if is_number(row.get("step")) and is_number(row.get(key)):
                found.append(Evaluation(kind, int(row["step"]), float(row[key])))
    return found


def is_number(value: Any) -> TypeGuard[int | float]:
    """A finite int or float, not a bool (json reads NaN/Infinity tokens from hand-made files; ints may be huge)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)
