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
from frontend.widgets import eta_label, stage_label

DEVICES = ["auto", "cpu", "cuda"]
RUNS_PAGE = Path(__file__).parent / "runs.py"
DEFAULT_GAME, DEFAULT_PRESET = "Pong", "atari100k"
CPU_GAME, CPU_PRESET = "Catch", "catch"
"""What the form opens on when the backend has no GPU: a run that learns on a CPU in minutes."""
PAPER_PRESET = "atari100k"
PENDING = "job_pending"
"""Session key of a job request that waits for a confirmation (a paper run on a CPU, or a duplicate)."""
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


def measured_rate(runs: list[dict[str, Any]], preset: str) -> float | None:
    """Env steps per second of this preset's runs on this backend (median over runs that have made progress)."""
    rates = sorted(run["step"] / (run["updated"] - run["created"]) for run in runs
                   if run.get("preset") == preset and run.get("step") and run.get("updated")
                   and run["updated"] > run["created"] + 1)
    return rates[len(rates) // 2] if rates else None


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def concerns(request: dict[str, Any], cpu: bool, presets: dict[str, dict[str, Any]],
             jobs: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    """Why a request deserves a second look before it starts: a paper run on a CPU (with an ETA from the step rate
    measured on this backend), or a queued or running job with the same request."""
    out = []
    if cpu and request["preset"] == PAPER_PRESET and request["device"] in ("auto", "cpu"):
        total = request["steps"] or presets[PAPER_PRESET]["config"]["train"]["total_steps"]
        rate = measured_rate(runs, PAPER_PRESET)
        eta = (f"about {_duration(total / rate)} at the {rate:.2f} env steps/s measured on this backend"
               if rate else "no run of this preset has been measured on this backend yet; on 2 CPU cores expect weeks")
        out.append(f"This backend has no GPU: a `{PAPER_PRESET}` run of {total:,} env steps on its CPU takes {eta}.")
    same = [job for job in jobs if job["state"] in CANCELLABLE and all(
        job[key] == request[key] for key in ("game", "preset", "seed", "steps", "overrides"))]
    if same:
        out.append(f"Job `{same[0]['job_id']}` ({state_label(same[0])}) is the same request.")
    return out


def job_form(client: Any, games: list[str], presets: list[dict[str, Any]], cpu: bool) -> None:
    """The new-job form; on submit, POST /api/jobs and report the job and run ids (or the backend's message). On a
    CPU backend it opens on Catch with the `catch` preset; a paper run on a CPU or a duplicate asks to confirm."""
    names = [preset["name"] for preset in presets]
    default_game, default_preset = (CPU_GAME, CPU_PRESET) if cpu else (DEFAULT_GAME, DEFAULT_PRESET)
    if cpu:
        st.info("This backend has no GPU, so the form opens on **Catch** with the `catch` preset: it learns on a CPU "
                "in minutes. The paper's `atari100k` runs need a GPU (about 10 h each on an A100).")
    with st.form("new_job"):
        left, middle, right = st.columns(3)
        game = left.selectbox("Game", games, index=_index(games, default_game), key="game",
                              help="The 26 Atari 100k games first, then Catch (no emulator), then other ALE games")
        preset = middle.selectbox("Preset", names, index=_index(names, default_preset), key="preset")
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
    if submitted:
        try:
            overrides = parse_overrides(text)
        except ValueError as exc:
            st.error(str(exc))
            return
        request = {"game": game, "preset": preset, "seed": int(seed), "steps": int(steps) or None, "device": device,
                   "overrides": overrides}
        try:
            worries = concerns(request, cpu, {p["name"]: p for p in presets}, client.jobs(), client.runs())
        except BackendError as exc:
            st.error(exc.message)
            return
        if worries:
            st.session_state[PENDING] = (request, worries)
        else:
            start(client, request)
    pending = st.session_state.get(PENDING)
    if pending is not None:
        request, worries = pending
        st.warning(" ".join(worries) + " Start it anyway?")
        go, keep, _ = st.columns([1, 1, 4])
        if go.button("Start anyway", key="confirm_start"):
            st.session_state.pop(PENDING, None)
            if start(client, request):
                st.rerun()  # the question is answered: draw the page without it
        if keep.button("Don't start", key="cancel_start"):
            st.session_state.pop(PENDING, None)
            st.rerun()


def start(client: Any, request: dict[str, Any]) -> bool:
    """POST the job; report it (or the backend's message); whether it started."""
    try:
        job = client.create_job(**request)
    except BackendError as exc:
        st.error(exc.message)
        return False
    st.session_state["job_pick"] = job["job_id"]
    _notice("success", f"Started job `{job['job_id']}` ({state_label(job)}): run `{job['run_id']}`")
    return True


def job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per job: state, progress %, run id, attempt, error tail."""
    rows = []
    for job in jobs:
        progress = job["progress"]
        rows.append({
            "job": job["job_id"], "state": state_label(job), "progress %": round(100 * progress["fraction"], 1),
            "step": f"{progress['step']}/{progress['total_steps']}", "phase": progress["phase"] or "",
            "stage": stage_label(progress), "ETA": eta_label(progress),
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

try:
    cpu = client.health().get("device") == "cpu"
except BackendError:
    cpu = False
job_form(client, games, presets, cpu)
st.subheader("Jobs")
jobs_panel(client)
