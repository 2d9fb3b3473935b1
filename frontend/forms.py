"""Pure parsers and formatters shared by the pages with forms (Train, Sweeps): overrides, seed ranges, error tails."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

OVERRIDES_HELP = ("One dotted config key per line, `key=value`; values are read as JSON (`2`, `0.5`, `true`, "
                  "`[64, 64]`) and otherwise kept as text. Lines starting with `#` are ignored.")
MAX_SEEDS = 100
_SEED_PART = re.compile(r"(\d+)(?:-(\d+))?")


def parse_overrides(text: str) -> dict[str, Any]:
    """`key=value` lines → `{key: value}`, each value parsed as JSON when it is JSON, else kept as a string."""
    overrides: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not key:
            raise ValueError(f"Overrides line {number}: expected `key=value`, got `{line}`")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def parse_seeds(text: str) -> list[int]:
    """`"0-4"` → `[0, 1, 2, 3, 4]`; also lists and mixes, `"0, 2, 7"`, `"0-2 5"` (ranges inclusive, no repeats)."""
    seeds: list[int] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        match = _SEED_PART.fullmatch(part)
        if match is None:
            raise ValueError(f"Seeds: `{part}` is neither a seed nor a range like `0-4`")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if high < low:
            raise ValueError(f"Seeds: the range `{part}` runs backwards")
        if high - low >= MAX_SEEDS:
            raise ValueError(f"Seeds: at most {MAX_SEEDS} per sweep, `{part}` has {high - low + 1}")
        seeds.extend(seed for seed in range(low, high + 1) if seed not in seeds)
    if not seeds:
        raise ValueError("Seeds: give at least one, e.g. `0-4` or `0, 1, 2`")
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"Seeds: at most {MAX_SEEDS} per sweep, got {len(seeds)}")
    return seeds


def format_seeds(seeds: Iterable[int]) -> str:
    """The inverse of `parse_seeds`, compact: `[0, 1, 2, 4]` → `"0-2, 4"`."""
    parts: list[str] = []
    ordered = sorted(set(seeds))
    start = 0
    for index in range(1, len(ordered) + 1):
        if index == len(ordered) or ordered[index] != ordered[index - 1] + 1:
            low, high = ordered[start], ordered[index - 1]
            parts.append(str(low) if low == high else f"{low}-{high}")
            start = index
    return ", ".join(parts)


def error_tail(error: str | None, chars: int = 160) -> str:
    """The last two lines of an error (a traceback, a train.log tail) on one line, cut to `chars` from the end."""
    if not error:
        return ""
    tail = " ⏎ ".join(line.strip() for line in error.strip().splitlines()[-2:])
    return tail if len(tail) <= chars else "…" + tail[-chars:]
