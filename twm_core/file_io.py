"""File primitives under every run file: atomic replacement, JSON objects, and tolerant-reading helpers.

Every file a reader may open while it is being written goes through `atomic_write`: the bytes land in a hidden
temporary file in the same directory, are fsynced, and `os.replace` swaps them in, so a reader sees the old file or
the new one, never a torn mix. A kill between `mkstemp` and `os.replace` leaves the hidden temporary file
(`.<name>.<random>.tmp`) behind; `twm_core.run_dir.remove_temporary_files` sweeps them when a trainer (re)starts.

Tolerant readers (`twm_core.run_status`, `twm_core.run_reader`) turn what they cannot use into a one-line reason:
`json_safe` replaces the non-finite numbers a JSON response cannot hold, `describe_error` words an exception without
the server's absolute paths.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

MAX_JSON_DEPTH = 32
"""Deeper JSON than this in a run file is damage (our writers nest 3 levels); it would also overflow recursive code."""
NON_FINITE = "non-finite numbers (NaN/Infinity) read as null"
"""The problem text of a file in which `json_safe` replaced NaN/±inf."""


# ------------------------------------------------------------------------------------------------ writing
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


# ------------------------------------------------------------------------------------------------ reading
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
