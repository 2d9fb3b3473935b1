"""Widgets shared by several pages: the run list and the run/checkpoint pickers, with the choice they share.

The chosen run (and its checkpoint) is one choice for the whole dashboard: every picker opens on it and writes what
the user picks back, into the URL (`?run=`, `?ckpt=`: a bookmark or a shared link reopens it) and into this
session's state (`RUN`, `CHECKPOINT`: kept when a page switch leaves the URL without it). Reading, the URL comes
first, then the session. A page's own widget keeps its value while the page is open; it is seeded from the shared
choice only when the page is opened (Streamlit drops a widget's state when its page is left). A choice that no
longer exists is said so, and the picker falls back to the newest run / the latest checkpoint.

Each stops the page with a readable message (`st.stop()`) when the backend fails or there is nothing to pick.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from frontend.api_client import BackendClient, BackendError

RUN = "chosen_run"  # session state: the run picked last, on any page
CHECKPOINT = "chosen_checkpoint"  # session state: {"run": run_id, "checkpoint": "latest" | step} of that run
RUN_PARAM, CHECKPOINT_PARAM = "run", "ckpt"  # their query parameters


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


# ------------------------------------------------------------------------------------------------ the shared choice
def chosen_run() -> str | None:
    """The run picked on any page: the URL's first (a bookmark), else this session's; None before any pick."""
    return st.query_params.get(RUN_PARAM) or st.session_state.get(RUN)


def choose_run(run_id: str) -> None:
    """Make `run_id` the chosen run. A new run drops the chosen checkpoint: it was one of the previous run."""
    if chosen_run() != run_id:
        st.session_state.pop(CHECKPOINT, None)
        if CHECKPOINT_PARAM in st.query_params:
            del st.query_params[CHECKPOINT_PARAM]
    st.session_state[RUN] = run_id
    st.query_params[RUN_PARAM] = run_id


def _checkpoint(text: Any) -> int | str | None:
    """`"latest"` or a step from the URL's text; None for anything else."""
    if text == "latest":
        return "latest"
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def chosen_checkpoint(run_id: str) -> int | str | None:
    """The checkpoint picked for `run_id`: the URL's first, else this session's (only if picked for this run)."""
    from_url = _checkpoint(st.query_params.get(CHECKPOINT_PARAM))
    if from_url is not None:
        return from_url
    shared = st.session_state.get(CHECKPOINT)
    return shared["checkpoint"] if shared and shared.get("run") == run_id else None


def choose_checkpoint(run_id: str, checkpoint: int | str) -> None:
    st.session_state[CHECKPOINT] = {"run": run_id, "checkpoint": checkpoint}
    st.query_params[CHECKPOINT_PARAM] = str(checkpoint)


# ------------------------------------------------------------------------------------------------ pickers
def run_picker(run_ids: Sequence[str], where: DeltaGenerator, key: str, label: str = "Run", **kwargs: Any) -> str:
    """A selectbox of `run_ids` (newest first) that opens on the chosen run and makes its pick the chosen run."""
    if st.session_state.get(key) not in run_ids:  # the page was just opened (or its run vanished): seed it
        wanted = chosen_run()
        if wanted is not None and wanted not in run_ids:
            st.warning(f"Run `{wanted}` no longer exists: showing `{run_ids[0]}`.")
        st.session_state[key] = wanted if wanted in run_ids else run_ids[0]
    run_id = where.selectbox(label, list(run_ids), key=key, **kwargs)
    choose_run(run_id)
    return run_id


def runs_picker(run_ids: Sequence[str], where: DeltaGenerator, key: str, label: str = "Runs",
                default: Sequence[str] | None = None, say_missing: bool = True, **kwargs: Any) -> list[str]:
    """A multiselect of `run_ids` that opens on the chosen run (else `default`, else the newest); its first pick
    becomes the chosen run. With `say_missing`, a chosen run that is not among `run_ids` is said to be gone."""
    current = st.session_state.get(key)
    if current is None:  # the page was just opened: seed it
        wanted = chosen_run()
        if say_missing and wanted is not None and wanted not in run_ids:
            st.warning(f"Run `{wanted}` no longer exists: showing `{run_ids[0]}`.")
        fallback = [r for r in default if r in run_ids] if default is not None else list(run_ids[:1])
        st.session_state[key] = [wanted] if wanted in run_ids else fallback
    elif any(r not in run_ids for r in current):  # picked runs were deleted while the page was open
        gone = [r for r in current if r not in run_ids]
        st.warning(f"Run{'s' if len(gone) > 1 else ''} {', '.join(f'`{r}`' for r in gone)} no longer exist"
                   f"{'' if len(gone) > 1 else 's'}: left out.")
        st.session_state[key] = [r for r in current if r in run_ids]
    picked = where.multiselect(label, list(run_ids), key=key, **kwargs)
    if picked:
        choose_run(picked[0])
    return picked


def checkpoint_picker(client: BackendClient, run_id: str, where: DeltaGenerator, key: str) -> int | str:
    """A selectbox of 'latest' and the run's checkpoint steps (newest first), opening on the chosen checkpoint."""
    try:
        steps = [c["step"] for c in client.checkpoints(run_id)]
    except BackendError as exc:
        st.error(exc.message)
        st.stop()
    if not steps:
        st.warning(f"Run `{run_id}` has no checkpoint yet.")
        st.stop()
    options: list[int | str] = ["latest", *sorted(steps, reverse=True)]
    if st.session_state.get(key) not in options:  # just opened, a new run without this step, or it was deleted
        wanted = chosen_checkpoint(run_id)
        if wanted is not None and wanted not in options:
            st.warning(f"Checkpoint step {wanted} of run `{run_id}` no longer exists: showing the latest.")
        st.session_state[key] = wanted if wanted in options else "latest"
    checkpoint = where.selectbox("Checkpoint", options, key=key,
                                 format_func=lambda c: c if c == "latest" else f"step {c}")
    choose_checkpoint(run_id, checkpoint)
    return checkpoint


# ------------------------------------------------------------------------------------------------ stage progress
def format_duration(seconds: float | None) -> str | None:
    """A duration for people: `40 s`, `3 min`, `1 h 05 min`, `2 d 3 h`; None for None, a negative or a non-finite
    number (nothing to show rather than a made-up time)."""
    if seconds is None or isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds < 59.5:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def stage_progress(run: Mapping[str, Any], now: float | None = None,
                   ) -> tuple[str, float | None, str | None] | None:
    """What a live run's status says of its stage (`stage`, `stage_done`, `stage_total`, `stage_unit`,
    `stage_started_at`, `eta_s`, `run_eta_s` of `GET /api/runs`), as (label, fraction done, ETA line).

    The fraction is None without a known total, the ETA line None when neither ETA is known; a null field is left
    out of the label, never shown as 0. None when the run reports no stage (a run older than these fields).
    """
    if not run.get("stage"):
        return None
    done, total, unit = _finite(run.get("stage_done")), _finite(run.get("stage_total")), run.get("stage_unit")
    parts = [f"stage `{run['stage']}`"]
    fraction = None
    if done is not None and total is not None and total > 0:
        fraction = min(1.0, max(0.0, done / total))
        parts.append(f"{done:,.0f} / {total:,.0f}" + (f" {unit}" if unit else ""))
    elif done is not None:
        parts.append(f"{done:,.0f}" + (f" {unit}" if unit else "") + " so far")
    started = _finite(run.get("stage_started_at"))
    elapsed = format_duration((time.time() if now is None else now) - started) if started is not None else None
    if elapsed is not None:
        parts.append(f"{elapsed} in")
    etas = [f"{text} ({what})" for what, key in (("stage", "eta_s"), ("run", "run_eta_s"))
            if (text := format_duration(_finite(run.get(key)))) is not None]
    return " · ".join(parts), fraction, ("ETA " + " · ".join(etas)) if etas else None


def stage_label(progress: Mapping[str, Any]) -> str:
    """`pretrain/dyn 40%`: the run's stage and how far it is (empty for a run that reports none)."""
    stage, fraction = progress.get("stage"), progress.get("stage_fraction")
    if not stage:
        return ""
    return f"{stage} {100 * fraction:.0f}%" if fraction is not None else stage


def eta_label(progress: Mapping[str, Any]) -> str:
    """`3 min · run 1 h 05 min`: the trainer's estimates that exist, humanely (empty when none does)."""
    stage, run = format_duration(progress.get("eta_s")), format_duration(progress.get("run_eta_s"))
    return " · ".join(part for part in (stage, f"run {run}" if run else None) if part)
