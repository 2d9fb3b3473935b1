"""Checkpoints: every run on disk, and for the picked one its checkpoints, scores summary, status and config; open a
checkpoint in the Inspector, Imagine, Attention, Play or Calibration, evaluate it (a `twm eval` process on the
backend, followed here while it runs), or delete the run (after confirmation)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from frontend.api_client import BackendError, get_client
from frontend.widgets import run_picker, runs_or_stop

PAGES = Path(__file__).parent
OPEN_IN = {"Inspector": "inspector.py", "Imagine": "imagine.py", "Attention": "attention.py", "Play": "play.py",
           "Calibration": "calibration.py"}
CONFIRM = "ckpt_confirm_delete"


def open_in(run_id: str, checkpoint: int | None) -> None:
    """Links that open the run at `checkpoint` (None: the latest) on each inspection page (the shared selection)."""
    params = {"run": run_id, **({"ckpt": str(checkpoint)} if checkpoint is not None else {})}
    columns = st.columns(len(OPEN_IN))
    for column, (title, page) in zip(columns, OPEN_IN.items(), strict=True):
        try:
            column.page_link(PAGES / page, label=f"Open in {title}", query_params=params)
        except StreamlitAPIException:  # a lone page (tests) has no navigation
            column.caption(f"{title}: ?{'&'.join(f'{k}={v}' for k, v in params.items())}")


def delete_run(client: Any, run_id: str) -> None:
    """Delete the run after a confirmation step (the backend refuses while a job or process trains it)."""
    if st.button("Delete this run…", key="delete_run"):
        st.session_state[CONFIRM] = run_id
    if st.session_state.get(CONFIRM) != run_id:
        return
    st.warning(f"Delete run `{run_id}` with all its files (metrics, checkpoints, replay)? This cannot be undone.")
    left, right, _ = st.columns([1, 1, 4])
    if left.button("Delete", key="confirm_delete_run", type="primary"):
        st.session_state.pop(CONFIRM, None)
        try:
            client.delete_run(run_id)
        except BackendError as exc:
            st.error(exc.message)
            return
        st.session_state["ckpt_deleted"] = run_id
        st.rerun()
    if right.button("Keep", key="keep_run"):
        st.session_state.pop(CONFIRM, None)
        st.rerun()


def evaluation_rows(evaluations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per evaluation: checkpoint, episodes, seed, progress or result."""
    rows = []
    for e in evaluations:
        summary = e["summary"]
        rows.append({
            "checkpoint": e["step"], "episodes": e["episodes"], "seed": e["seed"], "state": e["state"],
            "done": f"{e['done']}/{e['episodes']}", "score mean": summary.get("score_mean"),
            "score std": summary.get("score_std"), "HNS": summary.get("hns"), "finished": _when(e["ended_at"]),
            "error": (e["error"] or "").splitlines()[0] if e["error"] else "",
        })
    return rows


def evaluate_section(client: Any, run_id: str, steps: list[int], default_episodes: int) -> None:
    """Start an evaluation of a checkpoint, and the run's evaluations (refreshed every 2 s while one runs)."""
    with st.form("evaluate"):
        left, middle, right = st.columns(3)
        step = left.selectbox("Checkpoint", steps, key="eval_step", help="Newest first")
        episodes = middle.number_input("Episodes", 1, 1000, default_episodes, key="eval_episodes",
                                       help="The paper's final evaluation plays 100")
        seed = right.number_input("Seed", 0, 2**31 - 1, 12345, key="eval_seed")
        if st.form_submit_button("Evaluate"):
            try:
                client.evaluate_checkpoint(run_id, int(step), int(episodes), int(seed))
                st.session_state["eval_started"] = (run_id, int(step))
            except BackendError as exc:
                st.error(exc.message)
    try:
        running = any(e["state"] == "running" for e in client.evaluations(run_id))
    except BackendError:
        running = False
    # While one runs, the table alone refreshes every 2 s; once none does, the page reruns once, without the timer.
    st.fragment(run_every=2.0 if running else None)(evaluation_table)(client, run_id, running)


def evaluation_table(client: Any, run_id: str, running_at_start: bool) -> None:
    try:
        evaluations = client.evaluations(run_id)
    except BackendError as exc:
        st.error(exc.message)
        return
    if running_at_start and not any(e["state"] == "running" for e in evaluations):
        st.rerun()
    if not evaluations:
        st.caption("No evaluations of this run's checkpoints yet (its own evaluations are under Scores).")
        return
    st.dataframe(evaluation_rows(evaluations), hide_index=True)


def _when(unix: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) if unix else ""


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per run."""
    return [{
        "run": run["run_id"], "game": run["game"], "preset": run["preset"], "seed": run["seed"], "state": run["state"],
        "step": f"{run['step'] if run['step'] is not None else '–'}/{run['total_steps'] or '–'}",
        "checkpoints": run["num_checkpoints"], "latest eval": run["latest_eval_score"],
        "created": _when(run["created"]),
    } for run in runs]


def checkpoint_rows(checkpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per checkpoint: step, kind (full: a resume point; snapshot: weights only), file, size in MB,
    time written."""
    return [{"step": ckpt["step"], "kind": ckpt.get("kind", "full"), "file": ckpt["name"],
             "size (MB)": round(ckpt["size_bytes"] / 2**20, 2), "written": _when(ckpt["mtime"])}
            for ckpt in checkpoints]


def scores_summary(scores: dict[str, Any]) -> None:
    """The evaluation results as metrics, with the raw summary below."""
    cols = st.columns(4)
    cols[0].metric("Final eval mean", _fmt(scores["final_eval_mean"]),
                   help=f"at step {scores['final_eval_step']}" if scores["final_eval_step"] is not None else None)
    cols[1].metric("Final HNS", _fmt(scores["final_eval_hns"], 3), help="human-normalized score")
    cols[2].metric("Best eval mean", _fmt(scores["best_eval_mean"]),
                   help=f"at step {scores['best_eval_step']}" if scores["best_eval_step"] is not None else None)
    cols[3].metric("Training episodes", scores["train_episodes"])
    with st.expander("Scores summary (JSON)"):
        st.json(scores)


def config_sections(config: dict[str, Any], status: dict[str, Any] | None) -> None:
    """The resolved config, one expander per section, plus status.json and a download of config.json."""
    for section, values in config.items():
        with st.expander(f"`{section}`"):
            if isinstance(values, dict | list):
                st.json(values)
            else:
                st.code(repr(values), language=None)
    if status is not None:
        with st.expander("`status.json`"):
            st.json(status)


st.title("Checkpoints")
client = get_client()
if deleted := st.session_state.pop("ckpt_deleted", None):
    st.success(f"Deleted run `{deleted}`")
runs = runs_or_stop(client, "No runs yet: start one on the Train page (or with `twm train` on the command line).")

st.dataframe(run_rows(runs), hide_index=True)
run_id = run_picker([run["run_id"] for run in runs], st.container(), "ckpt_run", help="Newest first")
try:
    detail = client.run(run_id)
except BackendError as exc:
    st.error(exc.message)
    st.stop()

st.markdown(f"**{run_id}** — {detail['state']} · step {detail['step']}/{detail['total_steps']} · "
            f"{detail['game']} · preset `{detail['preset']}` · seed {detail['seed']}")
st.subheader("Checkpoints")
if detail["checkpoints"]:
    st.dataframe(checkpoint_rows(detail["checkpoints"]), hide_index=True)
    steps = [ckpt["step"] for ckpt in reversed(detail["checkpoints"])]
    step = st.selectbox("Checkpoint to open", steps, key="ckpt_open", help="Newest first")
    open_in(run_id, step)
    st.subheader("Evaluate")
    evaluate_section(client, run_id, steps, int(detail["config"]["train"]["eval_episodes"]) or 10)
else:
    st.info("No checkpoints yet.")
st.subheader("Scores")
scores_summary(detail["scores"])
st.subheader("Config")
st.download_button("Download config.json", json.dumps(detail["config"], indent=2), file_name=f"{run_id}-config.json",
                   mime="application/json")
config_sections(detail["config"], detail["status"])
st.subheader("Manage")
delete_run(client, run_id)
