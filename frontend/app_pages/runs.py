"""Runs: live training curves of one or more runs (overlaid for comparison), refreshed while a run is live.

Only what is open is fetched and drawn: each chart group is an expander that tracks its state (`on_change="rerun"`),
and a closed one runs nothing, so a refresh asks the backend for the keys of the open groups only (one metrics
request per run whatever the number of open groups, none when all are closed). The reference scores of the game
are static: fetched once per game (cached), never by the refresh.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.api_client import BackendError, get_client
from frontend.charts import metric_lines, overlay, rows_to_points, run_colours, score_chart, trace_name
from frontend.widgets import runs_picker, stage_progress

FINAL_STATES = {"finished", "failed", "cancelled"}
REFRESH = "3s"
MAX_POINTS = 1000
DEFAULT_SMOOTHING = 0.6  # TensorBoard's default weight
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
SCORES, OTHER = "Scores", "Other metrics"
GROUPS: dict[str, list[str]] = {SCORES: SCORE_KEYS, **SECTIONS, OTHER: []}
EXTRA = "extra_keys"
EXTRA_KEPT = "extra_keys_kept"  # a copy that outlives the widget while "Other metrics" is closed


def group_key(title: str) -> str:
    """Session-state key of a chart group's expander (True while open): `runs_group_world_model`."""
    return "runs_group_" + title.lower().replace(" ", "_").replace("-", "_")


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


def fetch_metrics(client: Any, run_ids: list[str], keys: list[str],
                  max_points: int = MAX_POINTS) -> tuple[dict[str, Rows], list[str]]:
    """Rows of `keys` for each run, and the union of every run's available metric keys."""
    rows_by_run: dict[str, Rows] = {}
    available: set[str] = set()
    for run_id in run_ids:
        page = client.metrics(run_id, keys=keys, max_points=max_points)
        rows_by_run[run_id] = page["rows"]
        available.update(page["available_keys"])
    return rows_by_run, sorted(available)


@st.cache_data(ttl=3600, show_spinner=False)
def game_baselines(_client: Any, backend: str, game: str) -> dict[str, Any] | None:
    """The game's reference scores (`GET /api/games/{game}/baselines`), None for a game without them (404); cached
    per backend and game: they are the paper's numbers and never change."""
    try:
        return _client.baselines(game)
    except BackendError as exc:
        if exc.status_code == 404:
            return None
        raise


def baselines_for(client: Any, runs: list[dict[str, Any]]) -> tuple[dict[str, float] | None, str | None]:
    """The reference lines of the picked runs' game, and a caption saying why there are none (or what they are)."""
    games = sorted({run.get("game") or "?" for run in runs})
    if len(games) != 1:
        return None, f"The picked runs play {', '.join(games)}: reference scores are drawn for one game only."
    try:
        found = game_baselines(client, client.base_url, games[0])
    except BackendError as exc:
        return None, f"Reference scores unavailable: {exc.message}"
    if found is None:
        return None, f"{games[0]} has no reference scores (only the Atari 100k games do): no baseline lines."
    lines = {key: found[key] for key in ("random", "human", "twm")}
    return lines, (f"{games[0]} reference scores (TWM paper, Table 1): random {lines['random']:g}, human "
                   f"{lines['human']:g}, TWM {lines['twm']:g}.")


def run_status(run: dict[str, Any]) -> None:
    """A run's status line and overall progress; for a live run its stage, the stage's progress and the ETAs."""
    st.markdown(status_line(run))
    if run["total_steps"]:
        st.progress(min(1.0, (run["step"] or 0) / run["total_steps"]), text="run")
    stage = stage_progress(run) if is_live(run) else None  # an ended run's stage fields are history
    if stage is not None:
        label, fraction, eta = stage
        if fraction is not None:
            st.progress(fraction, text=label)
        else:
            st.caption(label)
        if eta is not None:
            st.caption(eta)
    if run.get("error"):
        st.warning(run["error"])
    if run.get("damaged"):  # some run files could not be read: what is shown may be partial
        st.warning(f"Damaged run files: {run['damaged']}")


def chart_grid(rows_by_run: dict[str, Rows], keys: list[str], colours: dict[str, str], smoothing: float,
               prefix: str = "chart") -> None:
    """One chart per key (runs overlaid, each in its colour), two per row; keys no run has logged are listed."""
    with_data = [key for key in keys if overlay(rows_by_run, [key])]
    for start in range(0, len(with_data), 2):
        for column, key in zip(st.columns(2), with_data[start:start + 2], strict=False):
            series = overlay(rows_by_run, [key])
            # Traces are named by `trace_name`: after the key for one run, after the run for several.
            series_colours = {trace_name(run_id, key, len(rows_by_run), 1): colours[run_id] for run_id in rows_by_run}
            with column:
                st.plotly_chart(metric_lines(series, title=key, colours=series_colours, smoothing=smoothing),
                                key=f"{prefix}-{key}")
    missing = [key for key in keys if key not in with_data]
    if missing:
        st.caption("No data yet for " + ", ".join(f"`{key}`" for key in missing))


def scores_section(rows_by_run: dict[str, Rows], colours: dict[str, str], smoothing: float,
                   baselines: dict[str, float] | None) -> None:
    """Training-episode returns and evaluation means (periodic and final), with human-normalized scores and the
    game's reference scores."""
    def merged(rows: Rows, keys: tuple[str, ...]) -> list[tuple[float, float]]:
        return sorted(point for key in keys for point in rows_to_points(rows, key))

    episodes = {run_id: rows_to_points(rows, EPISODE_KEY) for run_id, rows in rows_by_run.items()}
    evals = {run_id: merged(rows, EVAL_KEYS) for run_id, rows in rows_by_run.items()}
    hns = {run_id: merged(rows, HNS_KEYS) for run_id, rows in rows_by_run.items()}
    st.plotly_chart(score_chart({k: v for k, v in episodes.items() if v}, {k: v for k, v in evals.items() if v},
                                {k: v for k, v in hns.items() if v}, colours=colours, baselines=baselines,
                                smoothing=smoothing), key="chart-scores")


def other_metrics(rows_by_run: dict[str, Rows], available: list[str], wanted: list[str], extra: list[str],
                  colours: dict[str, str], smoothing: float) -> None:
    """A picker of every logged key outside the fixed groups (`wanted`), and a chart of each picked one."""
    others = [key for key in available if key not in wanted]
    st.session_state[EXTRA] = [key for key in extra if key in others]  # drop keys the picked runs lack
    chosen = st.multiselect("Metric keys", others, key=EXTRA, help="Any other key logged in metrics.jsonl")
    st.session_state[EXTRA_KEPT] = chosen
    chart_grid(rows_by_run, chosen, colours, smoothing, prefix="extra")


def curves(client: Any, run_ids: list[str], live_at_start: bool, smoothing: float, colours: dict[str, str],
           baselines: tuple[dict[str, float] | None, str | None]) -> None:
    """Status lines and the charts of the open groups (a fragment: it reruns alone while a run is live)."""
    try:
        runs = {run["run_id"]: run for run in client.runs()}
    except BackendError as exc:
        st.error(exc.message)
        return
    picked = [runs[run_id] for run_id in run_ids if run_id in runs]
    for run in picked:
        run_status(run)
    if live_at_start and not any(is_live(run) for run in picked):
        st.rerun()  # every picked run has ended: redraw the page once, without the refresh timer

    groups = {title: st.expander(title, expanded=True, key=group_key(title), on_change="rerun") for title in GROUPS}
    open_groups = [title for title, group in groups.items() if group.open is not False]
    extra = list(st.session_state.get(EXTRA, st.session_state.get(EXTRA_KEPT, []))) if OTHER in open_groups else []
    fixed = [key for title in open_groups for key in GROUPS[title]]
    keys = fixed + [key for key in extra if key not in fixed]
    if not open_groups or (not keys and OTHER not in open_groups):
        return  # nothing open: nothing to fetch
    try:
        # With only "Other metrics" open and no key chosen yet, a row per run is enough for the key list.
        rows_by_run, available = (fetch_metrics(client, run_ids, keys) if keys else
                                  fetch_metrics(client, run_ids, [EPISODE_KEY], max_points=1))
    except BackendError as exc:
        st.error(exc.message)
        return
    lines, caption = baselines
    for title in open_groups:
        with groups[title]:
            if title == SCORES:
                scores_section(rows_by_run, colours, smoothing, lines)
                if caption:
                    st.caption(caption)
            elif title == OTHER:
                all_fixed = [key for group in GROUPS.values() for key in group]
                other_metrics(rows_by_run, available, all_fixed, extra, colours, smoothing)
            else:
                chart_grid(rows_by_run, GROUPS[title], colours, smoothing)


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
pick_column, smooth_column = st.columns([3, 1])
run_ids = runs_picker(list(by_id), pick_column, "run_pick",
                      help="Newest first; pick several to overlay their curves (the first is the run other pages "
                           "open on)")
smoothing = smooth_column.slider("Smoothing", 0.0, 0.99, DEFAULT_SMOOTHING, 0.01, key="runs_smoothing",
                                 help="Exponential moving average of each curve, as TensorBoard's (0: none); the "
                                      "raw curve stays faint behind it")
if not run_ids:
    st.info("Pick at least one run.")
    st.stop()

live = any(is_live(by_id[run_id]) for run_id in run_ids)
st.caption(f"Refreshing every {REFRESH} while a picked run is live (closed groups are not fetched)." if live else
           "All picked runs have ended.")
st.fragment(run_every=REFRESH if live else None)(curves)(
    client, run_ids, live, smoothing, run_colours(run_ids), baselines_for(client, [by_id[r] for r in run_ids]))
