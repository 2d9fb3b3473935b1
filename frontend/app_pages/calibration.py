"""Calibration: does the world model predict rewards and episode ends as often as they happen? On replay data.

Per checkpoint (`GET /api/runs/{run_id}/calibration`): windows of the run's replay buffer as training feeds them
(teacher-forced real latents), the predicted r̂ against the real reward and γ̂ against the real episode ends.
"""

from __future__ import annotations

import streamlit as st

from frontend import calibration_views as cv
from frontend.api_client import BackendError, get_client
from frontend.widgets import run_picker, runs_or_stop

st.title("Calibration")
st.caption("Predicted reward against real reward, and predicted discount against real episode ends, on windows of "
           "the run's replay buffer, for each chosen checkpoint. On the diagonal, the model is calibrated.")

client = get_client()
runs = runs_or_stop(client)
col_run, col_w, col_seed = st.columns([2, 1, 1])
run_id = run_picker([r["run_id"] for r in runs], col_run, "calibration_run")
windows = int(col_w.number_input("Replay windows", min_value=1, max_value=2048, value=256, key="calibration_w"))
seed = int(col_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="calibration_seed"))
try:
    steps = sorted(c["step"] for c in client.checkpoints(run_id))
except BackendError as exc:
    st.error(exc.message)
    st.stop()
if not steps:
    st.warning(f"Run `{run_id}` has no checkpoint yet.")
    st.stop()
chosen = st.multiselect("Checkpoints", steps, default=steps[-4:], key=f"calibration_ckpts_{run_id}")
if not chosen:
    st.info("Pick at least one checkpoint.")
    st.stop()


@st.cache_data(ttl=600, show_spinner=False)
def _calibration(run: str, step: int, windows: int, seed: int) -> dict:
    return client.calibration(run, step, windows, seed)


replies = []
with st.spinner("Evaluating the checkpoints on replay windows…"):
    for step in chosen:
        try:
            replies.append(_calibration(run_id, step, windows, seed))
        except BackendError as exc:
            st.error(f"step {step}: {exc.message}")
if replies:
    st.table(cv.summary_rows(replies))
    left, right = st.columns(2)
    left.plotly_chart(cv.reward_figure(replies), key="calibration_reward")
    right.plotly_chart(cv.discount_figure(replies), key="calibration_discount")
    if all(r["summary"]["num_terminals"] == 0 for r in replies):
        st.caption("No episode ended inside these windows: the discount diagram has only the 'continued' side, and "
                   "the terminal AUROC is undefined.")
