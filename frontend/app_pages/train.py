"""Train: start a job (game, preset, seed, steps, device, config overrides); follow, cancel or resume jobs."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from frontend.api_client import BackendError, get_client
from frontend.forms import OVERRIDES_HELP, error_tail, parse_overrides

DEVICES = ["auto", "cpu", "cuda"]
DEFAULT_GAME, DEFAULT_PRESET = "Pong", "atari100k"
CANCELLABLE, RESUMABLE = {"queued", "running"}, {"cancelled", "failed"}


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
    st.success(f"Started job `{job['job_id']}` ({job['state']}): run `{job['run_id']}`")


def job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per job: state, progress %, run id, attempt, error tail."""
    rows = []
    for job in jobs:
        progress = job["progress"]
        rows.append({
            "job": job["job_id"], "state": job["state"], "progress %": round(100 * progress["fraction"], 1),
            "step": f"{progress['step']}/{progress['total_steps']}", "phase": progress["phase"] or "",
            "run": job["run_id"], "attempt": job["attempt"], "game": job["game"], "preset": job["preset"],
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created_at"])),
            "error": error_tail(job["error"]),
        })
    return rows


def job_actions(client: Any, jobs: list[dict[str, Any]]) -> None:
    """Pick a job, then cancel or resume it."""
    by_id = {job["job_id"]: job for job in jobs}
    if st.session_state.get("job_pick") not in by_id:
        st.session_state.pop("job_pick", None)
    job_id = st.selectbox("Job", list(by_id), key="job_pick",
                          format_func=lambda j: f"{j} · {by_id[j]['state']} · {by_id[j]['run_id']}")
    job = by_id[job_id]
    left, right, _ = st.columns([1, 1, 4])
    cancel = left.button("Cancel", key="cancel_job", disabled=job["state"] not in CANCELLABLE)
    resume = right.button("Resume", key="resume_job", disabled=job["state"] not in RESUMABLE)
    try:
        if cancel:
            done = client.cancel_job(job_id)
            st.success(f"Cancel requested for job `{job_id}` ({done['state']}): it checkpoints, then stops")
        if resume:
            done = client.resume_job(job_id)
            st.success(f"Resumed job `{job_id}`: attempt {done['attempt']} ({done['state']})")
    except BackendError as exc:
        st.error(exc.message)
    if job["error"]:
        with st.expander("Error of the selected job"):
            st.code(job["error"], language=None)


@st.fragment(run_every="2s")
def jobs_panel(client: Any) -> None:
    """The jobs table and the actions on one job, refreshed every 2 s."""
    try:
        jobs = client.jobs()
    except BackendError as exc:
        st.error(exc.message)
        return
    if not jobs:
        st.info("No jobs yet: start one above.")
        return
    st.dataframe(job_rows(jobs), hide_index=True, column_config={
        "progress %": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
    })
    job_actions(client, jobs)


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
