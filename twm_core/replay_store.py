"""Replay persistence: a `ReplayBuffer` as append-only chunk files in `<run_dir>/replay/` (STYLE convention 8).

`flush(buffer, dir)` writes the rows added since the last flush as `chunk_{start:09d}_{end:09d}.npz`: rows
[start, end) (actions, rewards, terminated, truncated) plus frames start..end with their stack-reset flags (one
64×64 frame per step, not the 4-frame stack), so no checkpoint rewrites the whole buffer. Each chunk goes through
`twm_core.file_io.atomic_write`: a crash leaves a hidden `.chunk_*.tmp` (swept by the next flush), never a torn
chunk under a chunk name.

The readable chunks are the contiguous chain from row 0 (`_chain`). A training checkpoint refers to its rows by
size: `load(dir, capacity, upto=state["size"])` rebuilds the buffer from the chain, ignoring anything after
`upto` (written by a run that crashed after that checkpoint); the next `flush` of that buffer deletes those stale
chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from twm_core import faults
from twm_core.file_io import atomic_write
from twm_core.replay import ReplayBuffer

_CHUNK_RE = re.compile(r"^chunk_(\d{9})_(\d{9})\.npz$")  # temporary files (".chunk_*.tmp") never match


class _Chunk(NamedTuple):
    start: int
    end: int
    path: Path


def _list_chunks(directory: Path) -> list[_Chunk]:
    found = []
    for path in directory.iterdir() if directory.is_dir() else []:
        if (m := _CHUNK_RE.match(path.name)) is not None and int(m[1]) < int(m[2]):
            found.append(_Chunk(int(m[1]), int(m[2]), path))
    return sorted(found)


def _chain(chunks: list[_Chunk]) -> list[_Chunk]:
    """The contiguous run of chunks from row 0.

    Of two chunks with the same start the shorter wins: duplicates only arise when `flush` truncates a stale
    chunk, and the truncated copy is written before the original is removed.
    """
    by_start: dict[int, _Chunk] = {}
    for c in chunks:
        by_start[c.start] = min(by_start.get(c.start, c), c)
    chain, pos = [], 0
    while pos in by_start:
        chain.append(by_start[pos])
        pos = by_start[pos].end
    return chain


def flush(buffer: ReplayBuffer, directory: Path | str) -> int:
    """Append the buffer's rows not yet on disk as one chunk; returns the number of rows written.

    Chunks on disk beyond the rows this buffer knows are there (left by a run that crashed after the
    checkpoint this buffer was loaded from) are stale: they are deleted, and a chunk straddling the
    boundary is replaced by a truncated copy (written before the original is removed), so the chain of
    chunks stays contiguous.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for tmp in directory.glob(".chunk_*.tmp"):  # half-written leftovers of a crash (never read as chunks)
        tmp.unlink()
    chunks = _list_chunks(directory)
    chain = _chain(chunks)
    known = min(buffer.unsaved_from, chain[-1].end if chain else 0)
    keep = {c for c in chain if c.end <= known}
    straddler = next((c for c in chain if c.start < known < c.end), None)
    for c in chunks:
        if c not in keep and c != straddler:
            c.path.unlink()
    if straddler is not None:
        _write_chunk(buffer, directory, straddler.start, known)
        straddler.path.unlink()
    written = buffer.size - known
    if written > 0:
        _write_chunk(buffer, directory, known, buffer.size)
    buffer.mark_saved()
    return written


def _write_chunk(buffer: ReplayBuffer, directory: Path, start: int, end: int) -> None:
    arrays = {name: value.cpu().numpy() for name, value in buffer.export_rows(start, end).items()}
    with atomic_write(directory / f"chunk_{start:09d}_{end:09d}.npz") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        faults.reached("replay.chunk_before_rename")


def load(directory: Path | str, capacity: int, upto: int | None = None, frame_stack: int = 4,
         frame_size: int = 64, temperature: float = 20.0, device: torch.device | str = "cpu") -> ReplayBuffer:
    """Rebuild a buffer from the chunk chain in `directory`: rows [0, upto) and observation `upto`.

    Chunks beyond `upto` are ignored (a chunk straddling it is read partially); visit counts start at
    zero, restore them with `load_state_dict`.
    """
    directory = Path(directory)
    chain = _chain(_list_chunks(directory))
    if not chain:
        raise ValueError(f"directory {str(directory)!r} holds no chunk starting at row 0")
    available = chain[-1].end
    upto = available if upto is None else upto
    if not 0 <= upto <= available:
        raise ValueError(f"upto must be in [0, {available}] (rows on disk), got {upto}")
    if upto > capacity:
        raise ValueError(f"capacity={capacity} is smaller than the {upto} rows to load")
    buffer = ReplayBuffer(capacity, frame_stack, frame_size, temperature, device)
    buffer.restore_rows(_read_chain(chain, upto, frame_size), upto)
    return buffer


def _read_chain(chain: list[_Chunk], upto: int, frame_size: int,
                ) -> Iterator[tuple[int, int, Mapping[str, np.ndarray]]]:
    """(start, rows to use, arrays) of each chunk holding rows below `upto` (the first chunk always)."""
    for c in chain:
        if c.start >= upto and c.start > 0:
            break
        with np.load(c.path) as data:
            if data["frames"].shape[1:] != (frame_size, frame_size):
                raise ValueError(f"frame_size={frame_size} does not match frames of shape "
                                 f"{data['frames'].shape} in {c.path}")
            arrays = {k: data[k] for k in data.files}
        yield c.start, min(c.end, upto) - c.start, arrays
