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
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import numpy as np
import torch

JsonScalar = bool | int | float | str | None
MetricValue = float | int | bool | torch.Tensor | np.generic | np.ndarray

SCORE_KINDS = frozenset({"train", "eval", "final_eval"})
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


def read_jsonl(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Rows of the complete lines from byte `offset` on, and the offset to pass next time.

    A partial last line (being written right now) is left for the next call. A missing file gives `([], offset)`.
    An offset past the end of the file means it was cut by a resume (`truncate_after`): reading restarts at 0.
    Lines that do not decode (only possible from an offset that is not a line start) are skipped.
    """
    try:
        with Path(path).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # 0 when no complete line yet
    rows = []
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + end


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
        if cut is None and json.loads(line)["step"] > step:
            cut = position
        if cut is not None:
            removed += 1
        position += len(line)
    if cut is not None:
        os.truncate(path, cut)
    return removed


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
