"""Report: a sweep's (or any finished runs') scores against the paper, as in its Table 1, Fig. 3 and Fig. 4.

The backend computes everything (`GET /api/sweeps/{id}/report`, `GET /api/report?runs=...`): human-normalized
scores, bootstrap CIs of the aggregates, the performance profile. This page only draws it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st

from frontend import sweep_views as views
from frontend.api_client import BackendError, get_client
from frontend.charts import aggregate_figure, profile_figure
from frontend.widgets import runs_picker

SOURCES = ["Sweep", "Runs"]
CACHE_TTL = 30  # seconds: reports of a live sweep change as its runs finish
NO_REPORT = 409  # the backend's answer while no run has a final evaluation
SCORE_FORMAT, HNS_FORMAT = "%.1f", "%.3f"


@st.cache_data(ttl=CACHE_TTL, show_spinner="Computing the report (bootstrap CIs)…")
def fetch_report(_client: Any, base_url: str, source: str, key: tuple[str, ...]) -> dict[str, Any]:
    """The report of a sweep (`key` = its id) or of runs (`key` = their ids), cached per backend for a while."""
    return _client.sweep_report(key[0]) if source == "Sweep" else _client.runs_report(list(key))


def pick_sweep(sweeps: list[dict[str, Any]]) -> tuple[str, ...]:
    """A sweep picker, preset from the `?sweep=` query parameter (the Sweeps page links here with it)."""
    by_id = {sweep["sweep_id"]: sweep for sweep in sweeps}
    ids = list(by_id)
    wanted = st.query_params.get("sweep")
    sweep_id = st.selectbox("Sweep", ids, index=ids.index(wanted) if wanted in by_id else 0, key="report_sweep",
                            format_func=lambda s: views.sweep_label(by_id[s]))
    st.query_params["sweep"] = sweep_id  # keeps the URL a link to what is shown
    return (sweep_id,)


def pick_runs(runs: list[dict[str, Any]]) -> tuple[str, ...]:
    """A multiselect of finished runs; the newest one with an evaluation by default."""
    finished = {run["run_id"]: run for run in runs if run["state"] == "finished"}
    if not finished:
        st.info("No finished run yet: train one on the Train page, or launch a sweep.")
        st.stop()
    evaluated = [run_id for run_id, run in finished.items() if run.get("latest_eval_score") is not None]
    # opens on the run chosen on another page when it has finished (an unfinished one is not "gone": no warning)
    run_ids = runs_picker(list(finished), st.container(), "report_runs", default=(evaluated or list(finished))[:1],
                          say_missing=False,
                          format_func=lambda r: f"{r} · {finished[r]['game']} · seed {finished[r]['seed']}",
                          help="Finished runs, newest first; their final evaluations make the report")
    if not run_ids:
        st.info("Pick at least one finished run.")
        st.stop()
    return tuple(run_ids)


def headline(report: dict[str, Any]) -> None:
    """Who is in the report, what is missing, and our aggregate estimates as metrics."""
    meta = report.get("meta") or {}
    confidence = meta.get("confidence")
    if meta.get("comparable") is False:  # a report holds one preset; only atari100k is the paper's method
        st.warning(f"Preset `{meta.get('preset')}` is not the paper's method (only `atari100k` is): these scores "
                   "are not comparable to the paper's and sit beside them for orientation only.")
    parts = [f"preset `{meta.get('preset', '?')}`",
             f"{meta.get('num_runs', '?')} runs on {meta.get('num_games', '?')} games"]
    if meta.get("reps"):
        parts.append(f"{meta['reps']} bootstrap resamples")
    if confidence:
        parts.append(f"{100 * confidence:.0f}% CIs")
    st.caption(" · ".join(parts))
    missing = views.missing_games(meta)
    if missing:
        st.caption(f"Atari 100k games with no run in this report: {len(missing)} ({', '.join(missing)}).")
    skipped = meta.get("skipped") or []  # the backend lists the runs it left out, with why
    if skipped:
        with st.expander(f"{len(skipped)} run(s) left out"):
            st.dataframe(skipped, hide_index=True, key="report_skipped")
    if meta.get("note"):
        st.caption(meta["note"])
    estimates = views.ours_estimates(report)
    for column, (title, estimate) in zip(st.columns(4), estimates.items(), strict=False):
        interval = views.format_estimate(estimate).partition(" ")[2]
        column.metric(f"Ours: {title}", f"{estimate['value']:.3f}", help=f"CI {interval}" if interval else "no CI")


def per_game(report: dict[str, Any]) -> None:
    """The paper's Table 1 for our games: our mean score and HNS next to the paper's methods."""
    values = st.radio("Other methods as", ["score", "HNS"], horizontal=True, key="report_paper_values",
                      help="Raw game scores, or human-normalized (score − random) / (human − random)")
    rows = views.game_rows(report, paper_values="hns" if values == "HNS" else "score")
    other = HNS_FORMAT if values == "HNS" else SCORE_FORMAT
    formats = {"ours": SCORE_FORMAT, "ours HNS": HNS_FORMAT, "TWM (paper)": SCORE_FORMAT, "TWM HNS": HNS_FORMAT,
               "random": SCORE_FORMAT, "human": SCORE_FORMAT,
               **{method: other for method in views.PAPER_METHODS[1:]}}
    st.dataframe(rows, hide_index=True, key="report_games", column_config={
        name: st.column_config.NumberColumn(name, format=fmt) for name, fmt in formats.items()})
    with st.expander("Every run"):
        st.dataframe(views.report_run_rows(report), hide_index=True, key="report_runs_table")


def show_report(report: dict[str, Any], name: str) -> None:
    headline(report)
    st.plotly_chart(aggregate_figure(report), key="report-aggregates")
    st.dataframe(views.aggregate_rows(report), hide_index=True, key="report_aggregates_table")
    st.plotly_chart(profile_figure(report), key="report-profile")
    st.subheader("Per game")
    per_game(report)
    st.download_button("Download report (JSON)", json.dumps(report, indent=2), file_name=f"report-{name}.json",
                       mime="application/json", key="report_download")


st.title("Report")
client = get_client()
try:
    sweeps, runs = client.list_sweeps(), client.runs()
except BackendError as exc:
    st.error(exc.message)
    st.stop()

source = st.radio("Report on", SOURCES, index=0 if sweeps else 1, horizontal=True, key="report_source",
                  help="A sweep's runs, or any set of finished runs")
if source == "Sweep" and not sweeps:
    st.info("No sweeps yet: launch one on the Sweeps page, or report on runs.")
    st.stop()
picker: Callable[[list[dict[str, Any]]], tuple[str, ...]] = pick_sweep if source == "Sweep" else pick_runs
key = picker(sweeps if source == "Sweep" else runs)
subject = f"sweep `{key[0]}`" if source == "Sweep" else f"{len(key)} run(s)"
if st.button("Refresh", key="report_refresh", help=f"Reports are cached for {CACHE_TTL} s"):
    fetch_report.clear()
try:
    report = fetch_report(client, client.base_url, source, key)
except BackendError as exc:
    if exc.status_code == NO_REPORT:
        st.info(f"No report yet for {subject}: none of its runs has a final evaluation. ({exc.message})")
    else:
        st.error(exc.message)
    st.stop()
show_report(report, key[0] if source == "Sweep" else "runs")
