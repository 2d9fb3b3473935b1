"""Aggregate report of finished runs: per-game scores next to the paper's, and human-normalized aggregates with
stratified-bootstrap confidence intervals (`twm_core.stats`).

A run's result is the mean raw score of its final evaluation (the `final_eval` rows of scores.jsonl). The report
compares it with the TWM paper on the same games: "TWM (paper)" from the authors' per-run scores (so it gets CIs),
and DER, CURL, DrQ(eps), SPR, SimPLe from Table 1's per-game means (point estimates only).

Runs are read through `twm_core.run_results` (its names are re-exported here), so a damaged run never breaks the
report: a bad line is skipped and counted (the run stays in, listed under `meta.damaged`), a run whose config.json
cannot be read is left out and listed under `meta.skipped`, each with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from twm_core import stats
from twm_core.file_io import atomic_write, write_json_atomic
from twm_core.run_results import (
    RunResult,
    SkippedRun,
    collect_run_result,
    collect_runs,
    expand_run_dirs,
    printable,
    read_run_result,
)

__all__ = [
    "OURS", "PAPER_PRESET", "presets_of", "TWM_PAPER", "TABLE1_METHODS", "PAPER_COLUMNS", "DEFAULT_TAUS",
    "Reference", "load_reference",
    "human_normalized", "aggregate_with_ci", "paper_aggregates", "build_report", "report_markdown", "report_format",
    "write_report",
    # the runs' results, from twm_core.run_results
    "RunResult", "SkippedRun", "read_run_result", "collect_run_result", "expand_run_dirs", "collect_runs",
]

OURS = "ours"
PAPER_PRESET = "atari100k"
"""The one preset whose runs may be compared with the paper's numbers."""
UNKNOWN_PRESET = "unknown"
TWM_PAPER = "TWM (paper)"
TABLE1_METHODS: tuple[str, ...] = ("DER", "CURL", "DrQ(eps)", "SPR", "SimPLe")
"""Baselines of the paper's Table 1 with per-game means only."""
PAPER_COLUMNS: tuple[str, ...] = ("random", "human", "TWM", *TABLE1_METHODS)
DEFAULT_TAUS = np.linspace(0.0, 8.0, 81)
"""Profile thresholds of rliable's Atari 100k plots."""

Reference = Mapping[str, Mapping[str, Any]]
"""Game -> {"random", "human", "TWM", "DER", ..., "TWM_runs": [...]} (the data file's "games")."""


def load_reference() -> dict[str, dict[str, Any]]:
    """Random, human and published scores per game (twm_core/data/atari100k-scores.json, packaged data)."""
    text = resources.files("twm_core.data").joinpath("atari100k-scores.json").read_text(encoding="utf-8")
    return json.loads(text)["games"]


def human_normalized(score: float, ref: Mapping[str, Any]) -> float:
    """(score − random) / (human − random)."""
    return (score - ref["random"]) / (ref["human"] - ref["random"])


# ----------------------------------------------------------------------------------------------- aggregates
def _interval(value: float, ci: tuple[float, float] | None) -> dict[str, float | None]:
    return {"value": float(value), "ci_low": None if ci is None else ci[0], "ci_high": None if ci is None else ci[1]}


def aggregate_with_ci(scores_per_game: list[np.ndarray], reps: int, seed: int,
                      confidence: float = 0.95) -> dict[str, dict[str, float | None]]:
    """Every aggregate of `stats.AGGREGATES` with its stratified-bootstrap CI (`reps=0`: no CI)."""
    return {name: _interval(float(fn(scores_per_game)), stats.stratified_bootstrap_ci(
                scores_per_game, fn, reps, confidence, seed) if reps > 0 else None)
            for name, fn in stats.AGGREGATES.items()}


def _profile_entry(scores_per_game: Sequence[np.ndarray], taus: np.ndarray, reps: int, seed: int,
                   confidence: float) -> dict[str, list[float] | None]:
    profile = stats.performance_profile(scores_per_game, taus, reps, confidence, seed)
    return {"fraction": profile.fraction.tolist(),
            "ci_low": None if profile.ci_low is None else profile.ci_low.tolist(),
            "ci_high": None if profile.ci_high is None else profile.ci_high.tolist()}


def _paper_scores(reference: Reference, games: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Human-normalized per-game scores of each paper method: TWM per run, the Table 1 methods one mean per game."""
    out = {TWM_PAPER: [np.array([human_normalized(s, reference[g]) for s in reference[g]["TWM_runs"]])
                       for g in games]}
    for method in TABLE1_METHODS:
        out[method] = [np.array([human_normalized(reference[g][method], reference[g])]) for g in games]
    return out


def paper_aggregates(reference: Reference | None = None, games: Sequence[str] | None = None, reps: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> dict[str, dict[str, dict[str, float | None]]]:
    """Aggregates of the paper's methods over `games` (default: all 26): TWM from its per-run scores with CIs,
    the Table 1 baselines from per-game means without CIs (IQM and optimality gap then pool per-game means)."""
    reference = load_reference() if reference is None else reference
    games = sorted(reference) if games is None else list(games)
    out = {}
    for method, scores in _paper_scores(reference, games).items():
        out[method] = aggregate_with_ci(scores, reps if method == TWM_PAPER else 0, seed, confidence)
    return out


# ----------------------------------------------------------------------------------------------- the report
def _game_entry(game: str, runs: list[RunResult], ref: Mapping[str, Any] | None) -> dict[str, Any]:
    mean_score = float(np.mean([r.score for r in runs]))
    return {
        "game": game,
        "runs": [{"run_id": r.run_id, "seed": r.seed, "score": r.score, "episodes": r.episodes,
                  "hns": None if ref is None else human_normalized(r.score, ref)}
                 for r in sorted(runs, key=lambda r: (r.seed, r.run_id))],
        "mean_score": mean_score,
        "hns": None if ref is None else human_normalized(mean_score, ref),
        "paper": None if ref is None else {key: ref[key] for key in PAPER_COLUMNS},
        "paper_hns": None if ref is None else {m: human_normalized(ref[m], ref) for m in ("TWM", *TABLE1_METHODS)},
    }


def presets_of(results: Sequence[RunResult]) -> list[str]:
    """The presets among `results`, the paper's (`atari100k`) first, then by number of runs."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.preset or UNKNOWN_PRESET] = counts.get(r.preset or UNKNOWN_PRESET, 0) + 1
    return sorted(counts, key=lambda name: (name != PAPER_PRESET, -counts[name], name))


def build_report(results: Sequence[RunResult], reference: Reference | None = None, reps: int = 2000, seed: int = 0,
                 confidence: float = 0.95, skipped: Sequence[SkippedRun] = (),
                 preset: str | None = None) -> dict[str, Any]:
    """A JSON-serialisable report of the runs of ONE preset: games, aggregates (ours and the paper's methods, on our
    games that have reference scores), performance profiles, and meta (`preset`; `comparable`: whether the preset
    is the paper's method, so that the numbers can stand beside the paper's; `skipped`: the runs left out, runs of
    other presets included, and `damaged`: the runs in it whose files had bad lines, each as {run_id, reason}).
    `preset=None` takes `atari100k` when present, else the preset with the most runs. `reps=0`: no CIs."""
    if not results:
        raise ValueError("no run results to report")
    if reps < 0:
        raise ValueError(f"reps must be >= 0, got {reps}")
    preset = preset or presets_of(results)[0]
    others = [r for r in results if (r.preset or UNKNOWN_PRESET) != preset]
    results = [r for r in results if (r.preset or UNKNOWN_PRESET) == preset]
    if not results:
        raise ValueError(f"no run of preset {preset!r} to report")
    skipped = [*skipped, *(SkippedRun(Path(r.run_id), f"preset {r.preset or UNKNOWN_PRESET!r}: a report never pools "
                                      f"presets (this one is {preset!r})") for r in others)]
    reference = load_reference() if reference is None else reference
    canonical = {game.lower(): game for game in reference}  # config.json keeps the game as typed ("pong")
    by_game: dict[str, list[RunResult]] = {}
    for r in results:
        by_game.setdefault(canonical.get(r.game.lower(), r.game), []).append(r)
    games = [_game_entry(g, by_game[g], reference.get(g)) for g in sorted(by_game)]
    common = [entry["game"] for entry in games if entry["paper"] is not None]

    aggregates: dict[str, Any] = {}
    profile: dict[str, Any] = {"taus": DEFAULT_TAUS.tolist()}
    if common:
        ours = [np.array([run["hns"] for run in entry["runs"]]) for entry in games if entry["paper"] is not None]
        aggregates[OURS] = aggregate_with_ci(ours, reps, seed, confidence)
        aggregates.update(paper_aggregates(reference, common, reps, seed, confidence))
        profile[OURS] = _profile_entry(ours, DEFAULT_TAUS, reps, seed, confidence)
        for method, scores in _paper_scores(reference, common).items():
            profile[method] = _profile_entry(scores, DEFAULT_TAUS, reps if method == TWM_PAPER else 0, seed,
                                             confidence)
    excluded = [entry["game"] for entry in games if entry["paper"] is None]
    comparable = preset == PAPER_PRESET
    note = _note(common, excluded, reps, confidence)
    if not comparable:
        note = (f"Preset {preset!r} is not the paper's method (only {PAPER_PRESET!r} is): these scores are NOT "
                f"comparable to the paper's, they sit beside them for orientation only. {note}")
    return {"games": games, "aggregates": aggregates, "profile": profile, "meta": {
        "num_runs": len(results), "num_games": len(games), "preset": preset, "comparable": comparable,
        "games_missing": sorted(set(reference) - set(by_game)), "reps": reps, "confidence": confidence,
        "seed": seed, "note": note,
        "skipped": [{"run_id": printable(s.path.name or str(s.path)), "reason": printable(s.reason)}
                    for s in skipped],
        "damaged": [{"run_id": r.run_id, "reason": r.damaged} for r in results if r.damaged]}}


def _note(common: list[str], excluded: list[str], reps: int, confidence: float) -> str:
    if not common:
        return (f"No aggregates: none of the games ({', '.join(excluded)}) has reference scores. "
                "Full-benchmark paper aggregates: twm_core.report.paper_aggregates().")
    parts = [
        f"Aggregates of human-normalized scores over the {len(common)} game(s) with reference scores "
        f"({', '.join(common)}); '{TWM_PAPER}' uses the authors' per-run scores on the same games.",
        f"CIs ({confidence:.0%}): percentile stratified bootstrap over runs, {reps} resamples, for ours and "
        f"{TWM_PAPER}." if reps > 0 else "No CIs (reps=0).",
        f"{', '.join(TABLE1_METHODS)}: point estimates from Table 1 per-game means (no per-run scores), so no CIs, "
        "and their IQM and optimality gap pool per-game means instead of runs.",
    ]
    if excluded:
        parts.append(f"Games without reference scores, excluded from aggregates: {', '.join(excluded)}.")
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------- output
def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _with_ci(entry: Mapping[str, float | None]) -> str:
    text = _num(entry["value"], ".3f")
    if entry["ci_low"] is not None and entry["ci_high"] is not None:
        text += f" [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
    return text


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: a per-game table (raw scores, HNS) and an aggregates table with CIs."""
    meta = report["meta"]
    lines = ["## Per-game scores (raw; HNS = human-normalized)", ""]
    if not meta.get("comparable", True):
        lines += [f"**Preset `{meta['preset']}`: not the paper's method, not comparable to its numbers.**", ""]
    lines += ["| Game | Runs | Ours | Ours HNS | TWM (paper) | TWM HNS | " + " | ".join(TABLE1_METHODS) + " |",
             "| --- | ---: |" + " ---: |" * (4 + len(TABLE1_METHODS))]
    for g in report["games"]:
        paper, paper_hns = g["paper"] or {}, g["paper_hns"] or {}
        cells = [g["game"], str(len(g["runs"])), _num(g["mean_score"], ".1f"), _num(g["hns"], ".3f"),
                 _num(paper.get("TWM"), ".1f"), _num(paper_hns.get("TWM"), ".3f"),
                 *(_num(paper.get(m), ".1f") for m in TABLE1_METHODS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Aggregates (human-normalized)", ""]
    if report["aggregates"]:
        if meta["reps"] > 0:
            lines += [f"Value [{meta['confidence']:.0%} CI]; a method without a CI has no per-run scores.", ""]
        lines += ["| Method | Mean | Median | IQM | Optimality gap |", "| --- | --- | --- | --- | --- |"]
        for method, agg in report["aggregates"].items():
            cells = [method, *(_with_ci(agg[name]) for name in stats.AGGREGATES)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"{meta['num_runs']} run(s), {meta['num_games']} game(s); "
                 f"{len(meta['games_missing'])} Atari 100k game(s) not run. {meta['note']}")
    for key, title in (("skipped", "Runs left out"), ("damaged", "Runs read despite damage (bad lines skipped)")):
        if meta.get(key):
            lines += ["", f"{title}:", *(f"- {entry['run_id']}: {entry['reason']}" for entry in meta[key])]
    return "\n".join(lines) + "\n"


def report_format(path: Path | str) -> str:
    """'json' or 'markdown', from the suffix of an output path; any other suffix is a ValueError."""
    formats = {".json": "json", ".md": "markdown", ".markdown": "markdown"}
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise ValueError(f"report output must end in .json or .md, got {Path(path).name!r}")
    return formats[suffix]


def write_report(report: Mapping[str, Any], path: Path | str) -> Path:
    """Write the report as JSON (`.json`) or Markdown (`.md`), chosen by the suffix; atomic. Returns the path."""
    path = Path(path)
    fmt = report_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        write_json_atomic(path, dict(report))
    else:
        with atomic_write(path) as f:
            f.write(report_markdown(report).encode("utf-8"))
    return path
