"""Sweeps: launch a benchmark sweep (games × seeds of one preset), follow its jobs, cancel it, open its report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from frontend import sweep_views as views
from frontend.api_client import BackendError, get_client
from frontend.forms import OVERRIDES_HELP, parse_overrides, parse_seeds

DEVICES = ["auto", "cpu", "cuda"]
DEFAULT_PRESET = "atari100k"
REFRESH = "2s"
REPORT_PAGE = Path(__file__).parent / "report.py"


def sweep_form(client: Any, games: dict[str, list[str]], presets: list[dict[str, Any]]) -> None:
    """The new-sweep form; on submit, POST /api/sweeps and report the sweep (or the backend's message)."""
    names = [preset["name"] for preset in presets]
    with st.form("new_sweep"):
        picked = st.multiselect("Games", games["games"], key="sweep_games", placeholder="Pick games",
                                help="The 26 Atari 100k games first, then Catch (no emulator), then other ALE games")
        every = st.checkbox(f"All {len(games['atari100k'])} Atari 100k games", key="sweep_all_games",
                            help="The paper's benchmark; the games picked above are then ignored")
        left, middle, right = st.columns(3)
        seeds_text = left.text_input("Seeds", value="0-4", key="sweep_seeds",
                                     help="A range `0-4` (inclusive), a list `0, 3, 7`, or both: `0-2, 9`")
        preset = middle.selectbox("Preset", names, index=names.index(DEFAULT_PRESET) if DEFAULT_PRESET in names
                                  else 0, key="sweep_preset")
        device = right.selectbox("Device", DEVICES, key="sweep_device")
        steps = left.number_input("Env steps", min_value=0, value=0, step=1000, key="sweep_steps",
                                  help="0 keeps the preset's `train.total_steps`")
        retries = middle.number_input("Max retries", min_value=0, max_value=10, value=1, step=1, key="sweep_retries",
                                      help="How often a failed job is resumed from its last checkpoint")
        name = right.text_input("Name", key="sweep_name", placeholder="optional")
        with st.expander("Advanced: config overrides (every job)"):
            overrides_text = st.text_area("Overrides", key="sweep_overrides", help=OVERRIDES_HELP,
                                          placeholder="train.eval_every=5000")
        submitted = st.form_submit_button("Launch sweep", type="primary")
    if not submitted:
        return
    if not every and not picked:
        st.error("Pick at least one game, or all Atari 100k games.")
        return
    try:
        seeds, overrides = parse_seeds(seeds_text), parse_overrides(overrides_text)
        sweep = client.create_sweep(games=views.ALL_ATARI100K if every else picked, seeds=seeds, preset=preset,
                                    steps=int(steps) or None, device=device, overrides=overrides,
                                    max_retries=int(retries), name=name.strip() or None)
    except ValueError as exc:
        st.error(str(exc))
        return
    except BackendError as exc:
        st.error(exc.message)
        return
    st.session_state["sweep_pick"] = sweep["sweep_id"]
    st.success(f"Launched sweep `{sweep['sweep_id']}`: {len(sweep['jobs'])} jobs "
               f"({len(sweep['games'])} games × {len(sweep['seeds'])} seeds, preset {sweep['preset']})")


def report_link(sweep_id: str) -> None:
    """A link to the Report page with this sweep picked (only in the full app: a lone page has no navigation)."""
    try:
        st.page_link(REPORT_PAGE, label="Open its report",
                     query_params={"sweep": sweep_id})
    except StreamlitAPIException:
        st.caption(f"Its report: the Report page, sweep `{sweep_id}`.")


def sweep_detail(client: Any, sweep: dict[str, Any]) -> None:
    """The picked sweep: cancel and report actions, overall progress, and its per-(game, seed) job table."""
    sweep_id = sweep["sweep_id"]
    left, right, _ = st.columns([1, 2, 3])
    if left.button("Cancel sweep", key="cancel_sweep", disabled=not views.is_live(sweep)):
        try:
            sweep = client.cancel_sweep(sweep_id)
            st.success(f"Cancel requested for sweep `{sweep_id}` ({sweep['state']}): queued jobs are dropped, "
                       "running ones checkpoint, then stop")
        except BackendError as exc:
            st.error(exc.message)
    with right:
        report_link(sweep_id)
    done, total = views.jobs_done(sweep)
    st.markdown(f"**{sweep['name'] or sweep_id}** (`{sweep_id}`) — {sweep['state']} · preset {sweep['preset']} · "
                f"steps {sweep.get('steps') or 'preset'} · device {sweep['device']} · executor {sweep['executor']} · "
                f"max retries {sweep['max_retries']}")
    st.progress(min(1.0, max(0.0, sweep.get("progress") or 0.0)),
                text=f"{100 * (sweep.get('progress') or 0.0):.0f}% · {done}/{total} jobs ended")
    counts = sweep.get("counts") or {}
    for column, state in zip(st.columns(5), ("queued", "running", "finished", "failed", "cancelled"), strict=True):
        column.metric(state.capitalize(), counts.get(state, 0))
    st.dataframe(views.sweep_job_rows(sweep["jobs"]), hide_index=True, key="sweep_jobs", column_config={
        "progress %": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
    })


def sweeps_panel(client: Any, live_at_start: bool) -> None:
    """The sweep table and the picked sweep's detail (a fragment: it reruns alone while a sweep is live)."""
    try:
        sweeps = client.list_sweeps()
    except BackendError as exc:
        st.error(exc.message)
        return
    if not sweeps:
        st.info("No sweeps yet: launch one above.")
        return
    if live_at_start and not any(views.is_live(sweep) for sweep in sweeps):
        st.rerun()  # every sweep has ended: redraw the page once, without the refresh timer
    st.dataframe(views.sweep_rows(sweeps), hide_index=True, key="sweeps_table", column_config={
        "progress %": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
    })
    by_id = {sweep["sweep_id"]: sweep for sweep in sweeps}
    if st.session_state.get("sweep_pick") not in by_id:
        st.session_state.pop("sweep_pick", None)
    # A label that never changes: Streamlit keeps showing the first label of the picked option (streamlit#13788).
    sweep_id = st.selectbox("Sweep", list(by_id), key="sweep_pick", format_func=lambda s: f"{by_id[s]['name']} ({s})")
    sweep_detail(client, by_id[sweep_id])


st.title("Sweeps")
client = get_client()
try:
    games, presets = client.games(), client.presets()
except BackendError as exc:
    st.error(exc.message)
    st.stop()

sweep_form(client, games, presets)
st.subheader("Sweeps")
try:
    live = any(views.is_live(sweep) for sweep in client.list_sweeps())  # after the form: a new sweep counts
except BackendError as exc:
    st.error(exc.message)
    st.stop()
st.caption(f"Refreshing every {REFRESH} while a sweep is live." if live else "No sweep is running.")
st.fragment(run_every=REFRESH if live else None)(sweeps_panel)(client, live)
