"""Train: start a job (game, preset, seed, steps, device, config overrides); follow, cancel, resume or delete jobs.

State labels follow the truth (`cancelling` once a cancel is asked, a queued job's place and why it waits), each job
links to its run, Resume is offered only where a checkpoint exists, and a deletion asks for confirmation first.
Messages about an action stay until the next action (the jobs panel refreshes every 2 s)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from frontend.api_client import BackendError, get_client
from frontend.forms import OVERRIDES_HELP, error_tail, parse_overrides

DEVICES = ["auto", "cpu", "cuda"]
RUNS_PAGE = Path(__file__).parent / "runs.py"
DEFAULT_GAME, DEFAULT_PRESET = "Pong", "atari100k"
CANCELLABLE, ENDED = {"queued", "running"}, {"finished", "failed", "cancelled"}
NOTICE = "job_notice"
"""Session key of the last action's message: (kind, text), shown until the next action."""
CONFIRM = "job_confirm_delete"
"""Session key of the job whose deletion waits for confirmation."""


def state_label(job: dict[str, Any]) -> str:
    """What the job is doing, as a person would say it."""
    if job["state"] == "running" and job.get("cancel_requested_at"):
        return "cancelling"
    if job["state"] == "queued" and job.get("queue_position"):
        return f"queued #{job['queue_position']}"
    return str(job["state"])


def _notice(kind: str, text: str) -> None:
    st.session_state[NOTICE] = (kind, text)


def _index(options: list[str], wanted: str) -> int:
    return options.index(wanted) if wanted in options else 0


def job_form(client: Any, games: list[str], presets: list[dict[str, Any]]) -> None:
    """The new-job form; on submit, POST /api/jobs and report the job and run ids (or the backend's message)."""
    names = [preset["name"] for preset in presets]
    with st.form("new_job"):
        left, middle, right = st.columns(3)
        game = left.selectbox("Game", games, index=_index(games, DEFAULT_GAME), key="game",
                              help="The 26 Atari 100k games first, then Catch (no emulator), then other ALE games")
        preset = middle.selectbox("Preset", names, index=_index(names, DEFAULT_PRESET), key="preset")
        device = right.selectbox("Device", DEVICES, key="device")
        seed = left.number_input("Seed", min_value=0, value=0, step=1, key="seed")
        steps = middle.number_input("Env steps", min_value=0, value=0, step=1000, key="steps",
                                    help="0 keeps the preset's `train.total_steps`")
        with st.expander("Advanced: config overrides"):
            text = st.text_area("Overrides", key="overrides", placeholder="dyn.num_layers=2\ntrain.eval_every=5000",
                                help=OVERRIDES_HELP)
        submitted = st.form_submit_button("Start training", type="primary")
    with st.expander("Presets"):
        for item in presets:
            st.markdown(f"**{item['name']}** — {item['description']}")
    if not submitted:
        return
    try:
        overrides = parse_overrides(text)
    except ValueError as exc:
        st.error(str(exc))
        return
    try:
        job = client.create_job(game=game, preset=preset, seed=int(seed), steps=int(steps) or None, device=device,
                                overrides=overrides)
    except BackendError as exc:
        st.error(exc.message)
        return
    st.session_state["job_pick"] = job["job_id"]
    _notice("success", f"Started job `{job['job_id']}` ({state_label(job)}): run `{job['run_id']}`")


def job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per job: state, progress %, run id, attempt, error tail."""
    rows = []
    for job in jobs:
        progress = job["progress"]
        rows.append({
            "job": job["job_id"], "state": state_label(job), "progress %": round(100 * progress["fraction"], 1),
            "step": f"{progress['step']}/{progress['total_steps']}", "phase": progress["phase"] or "",
            "run": job["run_id"], "open": f"./runs?run={job['run_id']}", "attempt": job["attempt"],
            "game": job["game"], "preset": job["preset"], "waiting for": job.get("waiting_for") or "",
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created_at"])),
            "error": error_tail(job["error"]),
        })
    return rows


def job_actions(client: Any, jobs: list[dict[str, Any]]) -> None:
    """Pick a job, then cancel, resume or delete it (deleting asks to confirm, and can take its run files too)."""
    by_id = {job["job_id"]: job for job in jobs}
    if st.session_state.get("job_pick") not in by_id:
        st.session_state.pop("job_pick", None)
    job_id = st.selectbox("Job", list(by_id), key="job_pick",
                          format_func=lambda j: f"{j} · {state_label(by_id[j])} · {by_id[j]['run_id']}")
    job = by_id[job_id]
    run_link(job["run_id"])
    left, middle, right, _ = st.columns([1, 1, 1, 3])
    cancel = left.button("Cancel", key="cancel_job", disabled=job["state"] not in CANCELLABLE)
    resume = middle.button("Resume", key="resume_job", disabled=not job.get("resumable"),
                           help="Continue from the last checkpoint (cancelled or failed jobs that have one)")
    delete = right.button("Delete…", key="delete_job", disabled=job["state"] not in ENDED,
                          help="Forget the job (and, if you choose, its run files); asks first")
    try:
        if cancel:
            done = client.cancel_job(job_id)
            _notice("success", f"Cancel requested for job `{job_id}` ({state_label(done)}): it checkpoints, then "
                               "stops")
        if resume:
            done = client.resume_job(job_id)
            _notice("success", f"Resumed job `{job_id}`: attempt {done['attempt']} ({state_label(done)})")
        if delete:
            st.session_state[CONFIRM] = job_id
        if st.session_state.get(CONFIRM) == job_id:
            confirm_delete(client, job)
    except BackendError as exc:
        _notice("error", exc.message)
    if job["error"]:
        with st.expander("Error of the selected job"):
            st.code(job["error"], language=None)


def run_link(run_id: str) -> None:
    """A link to the Runs page with this run picked (only in the full app: a lone page has no navigation)."""
    try:
        st.page_link(RUNS_PAGE, label=f"Open run `{run_id}`", query_params={"run": run_id})
    except StreamlitAPIException:
        st.caption(f"Its run: `{run_id}` on the Runs page.")


def confirm_delete(client: Any, job: dict[str, Any]) -> None:
    """The confirmation step of a deletion: what goes, a choice to remove the run files too, Delete or Keep."""
    st.warning(f"Delete job `{job['job_id']}`? The run `{job['run_id']}` stays unless you tick the box below.")
    with_run = st.checkbox("Also delete its run files (metrics, checkpoints, replay): cannot be undone",
                           key="delete_with_run")
    left, right, _ = st.columns([1, 1, 4])
    if left.button("Delete", key="confirm_delete_job", type="primary"):
        client.delete_job(job["job_id"], delete_run=with_run)
        st.session_state.pop(CONFIRM, None)
        gone = f" and its run `{job['run_id']}`" if with_run else f" (run `{job['run_id']}` kept)"
        _notice("success", f"Deleted job `{job['job_id']}`{gone}")
        st.rerun()
    if right.button("Keep", key="keep_job"):
        st.session_state.pop(CONFIRM, None)
        st.rerun()


@st.fragment(run_every="2s")
def jobs_panel(client: Any) -> None:
    """The jobs table and the actions on one job, refreshed every 2 s."""
    try:
        jobs = client.jobs()
    except BackendError as exc:
        st.error(exc.message)
        return
    slot = st.empty()  # the last action's message, above the table, filled once this run's actions are done
    if not jobs:
        _show_notice(slot)
        st.info("No jobs yet: start one above.")
        return
    st.dataframe(job_rows(jobs), hide_index=True, column_config={
        "progress %": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
        "open": st.column_config.LinkColumn("open", display_text="run ↗"),
    })
    job_actions(client, jobs)
    _show_notice(slot)


def _show_notice(slot: Any) -> None:
    notice = st.session_state.get(NOTICE)
    if notice is not None:
        getattr(slot, notice[0])(notice[1])


st.title("Train")
client = get_client()
try:
    games, presets = client.games()["games"], client.presets()
except BackendError as exc:
    st.error(exc.message)
    st.stop()

job_form(client, games, presets)
st.subheader("Jobs")
jobs_panel(client)
