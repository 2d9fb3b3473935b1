"""Runs: live training curves of one or more runs (overlaid for comparison), refreshed while a run is live."""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.api_client import BackendError, get_client
from frontend.charts import metric_lines, overlay, rows_to_points, score_chart
from frontend.widgets import runs_picker

FINAL_STATES = {"finished", "failed", "cancelled"}
REFRESH = "3s"
MAX_POINTS = 1000
SECTIONS: dict[str, list[str]] = {
    "World model": ["wm/dec_loss", "wm/z_pred_ce", "wm/reward_loss", "wm/discount_loss", "wm/obs_loss",
                    "wm/dyn_loss"],
    "Actor-critic": ["ac/actor_loss", "ac/critic_loss", "ac/norm_ent", "ac/returns"],
    "Performance": ["perf/env_steps_per_s", "perf/train_steps_per_s", "perf/ram_mb", "perf/gpu_mem_mb"],
}
EPISODE_KEY = "env/episode_return"
EVAL_KEYS = ("eval/score_mean", "eval/final_score_mean")
HNS_KEYS = ("eval/hns", "eval/final_hns")
SCORE_KEYS = [EPISODE_KEY, *EVAL_KEYS, *HNS_KEYS]
EXTRA = "extra_keys"


def is_live(run: dict[str, Any]) -> bool:
    return run["state"] not in FINAL_STATES and not run.get("stale", False)


def status_line(run: dict[str, Any]) -> str:
    """`run — state · step s/total · phase p` (plus the latest eval score when there is one)."""
    step = f"{run['step'] if run['step'] is not None else '–'}/{run['total_steps'] or '–'}"
    parts = [run["state"] + (" (stale: its process is gone)" if run.get("stale") else ""), f"step {step}"]
    if run.get("phase"):
        parts.append(f"phase {run['phase']}")
    if run.get("latest_eval_score") is not None:
        parts.append(f"eval {run['latest_eval_score']:.1f} @ {run['latest_eval_step']}")
    return f"**{run['run_id']}** — " + " · ".join(parts)


Rows = list[dict[str, Any]]


def fetch_metrics(client: Any, run_ids: list[str], keys: list[str]) -> tuple[dict[str, Rows], list[str]]:
    """Rows of `keys` for each run, and the union of every run's available metric keys."""
    rows_by_run: dict[str, Rows] = {}
    available: set[str] = set()
    for run_id in run_ids:
        page = client.metrics(run_id, keys=keys, max_points=MAX_POINTS)
        rows_by_run[run_id] = page["rows"]
        available.update(page["available_keys"])
    return rows_by_run, sorted(available)


def chart_grid(rows_by_run: dict[str, Rows], keys: list[str], prefix: str = "chart") -> None:
    """One chart per key (runs overlaid), two per row; keys no run has logged yet are listed instead."""
    with_data = [key for key in keys if overlay(rows_by_run, [key])]
    for start in range(0, len(with_data), 2):
        for column, key in zip(st.columns(2), with_data[start:start + 2], strict=False):
            with column:
                st.plotly_chart(metric_lines(overlay(rows_by_run, [key]), title=key), key=f"{prefix}-{key}")
    missing = [key for key in keys if key not in with_data]
    if missing:
        st.caption("No data yet for " + ", ".join(f"`{key}`" for key in missing))


def scores_section(rows_by_run: dict[str, Rows]) -> None:
    """Training-episode returns and evaluation means (periodic and final), with human-normalized scores."""
    def merged(rows: Rows, keys: tuple[str, ...]) -> list[tuple[float, float]]:
        return sorted(point for key in keys for point in rows_to_points(rows, key))

    episodes = {run_id: rows_to_points(rows, EPISODE_KEY) for run_id, rows in rows_by_run.items()}
    evals = {run_id: merged(rows, EVAL_KEYS) for run_id, rows in rows_by_run.items()}
    hns = {run_id: merged(rows, HNS_KEYS) for run_id, rows in rows_by_run.items()}
    st.plotly_chart(score_chart({k: v for k, v in episodes.items() if v}, {k: v for k, v in evals.items() if v},
                                {k: v for k, v in hns.items() if v}), key="chart-scores")


def curves(client: Any, run_ids: list[str], live_at_start: bool) -> None:
    """Status lines and every chart of the picked runs (a fragment: it reruns alone while a run is live)."""
    try:
        runs = {run["run_id"]: run for run in client.runs()}
        extra = list(st.session_state.get(EXTRA, []))
        wanted = [key for keys in SECTIONS.values() for key in keys] + SCORE_KEYS
        rows_by_run, available = fetch_metrics(client, run_ids, wanted + [k for k in extra if k not in wanted])
    except BackendError as exc:
        st.error(exc.message)
        return
    picked = [runs[run_id] for run_id in run_ids if run_id in runs]
    for run in picked:
        st.markdown(status_line(run))
        if run["total_steps"]:
            st.progress(min(1.0, (run["step"] or 0) / run["total_steps"]))
        if run.get("error"):
            st.warning(run["error"])
        if run.get("damaged"):  # some run files could not be read: what is shown may be partial
            st.warning(f"Damaged run files: {run['damaged']}")
    if live_at_start and not any(is_live(run) for run in picked):
        st.rerun()  # every picked run has ended: redraw the page once, without the refresh timer

    st.subheader("Scores")
    scores_section(rows_by_run)
    for title, keys in SECTIONS.items():
        st.subheader(title)
        chart_grid(rows_by_run, keys)

    st.subheader("Other metrics")
    others = [key for key in available if key not in wanted]
    st.session_state[EXTRA] = [key for key in extra if key in others]  # drop keys the picked runs lack
    chosen = st.multiselect("Metric keys", others, key=EXTRA, help="Any other key logged in metrics.jsonl")
    chart_grid(rows_by_run, chosen, prefix="extra")


st.title("Runs")
client = get_client()
try:
    all_runs = client.runs()
except BackendError as exc:
    st.error(exc.message)
    st.stop()
if not all_runs:
    st.info("No runs yet: start one on the Train page (or with `twm train` on the command line).")
    st.stop()

by_id = {run["run_id"]: run for run in all_runs}
run_ids = runs_picker(list(by_id), st.container(), "run_pick",
                      help="Newest first; pick several to overlay their curves (the first is the run other pages "
                           "open on)")
if not run_ids:
    st.info("Pick at least one run.")
    st.stop()

live = any(is_live(by_id[run_id]) for run_id in run_ids)
st.caption(f"Refreshing every {REFRESH} while a picked run is live." if live else "All picked runs have ended.")
st.fragment(run_every=REFRESH if live else None)(curves)(client, run_ids, live)
