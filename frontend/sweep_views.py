"""Pure helpers of the Sweeps and Report pages: backend JSON (a sweep, a report) in, table rows and labels out.

No Streamlit calls, so they are unit-tested without a backend; the report's figures are in `frontend.charts`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from frontend.charts import AGGREGATE_PANELS, OURS, confidence_interval, method_label, method_order
from frontend.forms import error_tail, format_seeds

Sweep = Mapping[str, Any]
Report = Mapping[str, Any]

ALL_ATARI100K = "atari100k"  # `games` value of `POST /api/sweeps` for the 26 games of the benchmark
LIVE_STATES = {"queued", "running"}
ENDED_STATES = ("finished", "failed", "cancelled")
# The paper's per-game columns (`paper` / `paper_hns` of a report game), TWM first.
PAPER_METHODS = ["TWM", "DER", "CURL", "DrQ(eps)", "SPR", "SimPLe"]


def when(unix: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) if unix else ""


def is_live(sweep: Sweep) -> bool:
    """Whether the sweep still has jobs to run (its page keeps refreshing while one is live)."""
    return sweep["state"] in LIVE_STATES


def jobs_done(sweep: Sweep) -> tuple[int, int]:
    """`(ended jobs, all jobs)` of a sweep, ended meaning finished, failed or cancelled."""
    counts = sweep.get("counts") or {}
    total = sum(counts.values()) if counts else len(sweep.get("jobs") or [])
    return sum(counts.get(state, 0) for state in ENDED_STATES), total


def sweep_label(sweep: Sweep) -> str:
    """`name · state · 3/10 jobs ended` (the picker's label)."""
    done, total = jobs_done(sweep)
    return f"{sweep['name'] or sweep['sweep_id']} · {sweep['state']} · {done}/{total} jobs ended"


def _games_text(games: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(games[:most])
    return shown if len(games) <= most else f"{shown} … ({len(games)} games)"


def sweep_rows(sweeps: Sequence[Sweep]) -> list[dict[str, Any]]:
    """One table row per sweep: state, progress %, games × seeds, job counts."""
    rows = []
    for sweep in sweeps:
        counts = sweep.get("counts") or {}
        done, total = jobs_done(sweep)
        rows.append({
            "sweep": sweep["sweep_id"], "name": sweep["name"], "state": sweep["state"],
            "progress %": round(100 * (sweep.get("progress") or 0.0), 1), "jobs ended": f"{done}/{total}",
            "running": counts.get("running", 0), "failed": counts.get("failed", 0),
            "games": _games_text(list(sweep["games"])), "seeds": format_seeds(sweep["seeds"]),
            "preset": sweep["preset"], "steps": sweep.get("steps"), "created": when(sweep.get("created_at")),
        })
    return rows


def sweep_job_rows(jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (game, seed) job, sorted by game then seed: state, attempt and retries, progress, run, error."""
    rows = []
    for job in sorted(jobs, key=lambda j: (j["game"], j["seed"])):
        progress = job.get("progress") or {}
        step, total = progress.get("step"), progress.get("total_steps")
        rows.append({
            "game": job["game"], "seed": job["seed"], "state": job["state"], "attempt": job.get("attempt"),
            "retries": job.get("retries", 0), "progress %": round(100 * (progress.get("fraction") or 0.0), 1),
            "step": f"{step if step is not None else '–'}/{total or '–'}", "phase": progress.get("phase") or "",
            "run": job.get("run_id"), "job": job["job_id"], "error": error_tail(job.get("error")),
        })
    return rows


# ------------------------------------------------------------------------------------------------ report
def format_estimate(estimate: Mapping[str, Any] | None, digits: int = 3) -> str:
    """`0.956 [0.712, 1.204]` for an estimate with a CI, `0.956` without one, `–` when there is no value."""
    value = (estimate or {}).get("value")
    if value is None:
        return "–"
    interval = confidence_interval(estimate)
    text = f"{value:.{digits}f}"
    return text if interval is None else f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def aggregate_rows(report: Report) -> list[dict[str, Any]]:
    """One row per method (ours first): each aggregate metric as `value [ci_low, ci_high]`."""
    aggregates = report.get("aggregates") or {}
    return [{"method": method_label(method),
             **{title: format_estimate(aggregates[method].get(metric)) for metric, title in AGGREGATE_PANELS}}
            for method in method_order(aggregates)]


def game_rows(report: Report, paper_values: str = "score") -> list[dict[str, Any]]:
    """One row per game: our mean score and HNS, paper TWM's score and HNS, then the other methods' scores (or HNS
    with `paper_values="hns"`) and the random and human reference scores. None where the paper has no number."""
    rows = []
    for game in report.get("games") or []:
        paper, paper_hns = game.get("paper") or {}, game.get("paper_hns") or {}
        others = paper_hns if paper_values == "hns" else paper
        rows.append({
            "game": game["game"], "runs": len(game.get("runs") or []), "ours": game.get("mean_score"),
            "ours HNS": game.get("hns"), "TWM (paper)": paper.get("TWM"), "TWM HNS": paper_hns.get("TWM"),
            **{method: others.get(method) for method in PAPER_METHODS[1:]},
            "random": paper.get("random"), "human": paper.get("human"),
        })
    return rows


def report_run_rows(report: Report) -> list[dict[str, Any]]:
    """One row per run of the report: game, seed, final score, HNS, evaluation episodes."""
    return [{"game": game["game"], "seed": run.get("seed"), "run": run["run_id"], "score": run.get("score"),
             "HNS": run.get("hns"), "episodes": run.get("episodes")}
            for game in report.get("games") or [] for run in game.get("runs") or []]


def ours_estimates(report: Report) -> dict[str, Mapping[str, Any]]:
    """Our aggregate estimates by panel title (Median, IQM, Mean, Optimality Gap); empty without an `ours` entry."""
    ours = (report.get("aggregates") or {}).get(OURS) or {}
    return {title: ours[metric] for metric, title in AGGREGATE_PANELS if ours.get(metric)}


def missing_games(meta: Mapping[str, Any]) -> list[str]:
    """The `games_missing` of a report's meta as names (a count is also accepted: then it is empty)."""
    missing = meta.get("games_missing")
    return [str(game) for game in missing] if isinstance(missing, list | tuple) else []
