"""Widgets shared by several pages: the run list and the run/checkpoint/seed pickers.

Each stops the page with a readable message (`st.stop()`) when the backend fails or there is nothing to pick.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from frontend.api_client import BackendClient, BackendError


def runs_or_stop(client: BackendClient, empty_message: str = "No runs yet: start one on the Train page.",
                 ) -> list[dict[str, Any]]:
    """`client.runs()`, or a stopped page with the backend's message / `empty_message`."""
    try:
        runs = client.runs()
    except BackendError as exc:
        st.error(exc.message)
        st.stop()
    if not runs:
        st.info(empty_message)
        st.stop()
    return runs


def checkpoint_picker(client: BackendClient, run_id: str, where: DeltaGenerator, key: str) -> int | str:
    """A selectbox of 'latest' and the run's checkpoint steps (newest first)."""
    try:
        steps = [c["step"] for c in client.checkpoints(run_id)]
    except BackendError as exc:
        st.error(exc.message)
        st.stop()
    if not steps:
        st.warning(f"Run `{run_id}` has no checkpoint yet.")
        st.stop()
    return where.selectbox("Checkpoint", ["latest", *sorted(steps, reverse=True)], key=key,
                           format_func=lambda c: c if c == "latest" else f"step {c}")
