"""Home: backend health (device, runs dir), the demo (a learned Catch model in one click) and what can be trained
(games, presets). With no runs yet the demo is the page's main offer; once runs exist it folds into an expander."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from frontend.api_client import BackendClient, BackendError, get_client

PAGES = Path(__file__).parent
DEMO = "home_demo"  # session state: the answer of POST /api/demo
OPEN_DEMO_IN = {"Imagine": "imagine.py", "Attention": "attention.py", "Play": "play.py"}


def demo_links(status: dict[str, Any]) -> None:
    """Links that open the demo run at its checkpoint on Imagine, Attention and Play."""
    facts = status["facts"]
    params = {"run": status["run_id"], "ckpt": str(facts["checkpoint_step"])}
    for column, (title, page) in zip(st.columns(len(OPEN_DEMO_IN)), OPEN_DEMO_IN.items(), strict=True):
        try:
            column.page_link(PAGES / page, label=f"Open in {title}", query_params=params)
        except StreamlitAPIException:  # a lone page (tests) has no navigation
            column.caption(f"{title}: ?run={params['run']}&ckpt={params['ckpt']}")


def score_line(facts: dict[str, Any]) -> str:
    return (f"final score {facts['final_score']:.2f} of {facts['max_score']:g} (mean of {facts['final_episodes']} "
            f"episodes); a random policy scores {facts['random_policy_score']:.2f}".replace("-", "−"))


def demo_section(client: BackendClient, prominent: bool) -> None:
    """One button that installs the shipped demo run, then its score and links; second, train it yourself."""
    try:
        status = st.session_state.get(DEMO) or client.demo_status()
    except BackendError as exc:
        st.warning(f"The demo is not available: {exc.message}")
        return
    facts: dict[str, Any] = status.get("facts") or {}
    if not facts or (not status["available"] and not status["installed"]):
        st.warning(f"The demo is not available: {status.get('problem') or 'this backend ships none'}")
        return
    if prominent:
        st.subheader("Try a learned model now")
    st.write("A small world model and agent trained on the built-in **Catch** game (catch the falling ball with the "
             "paddle), shipped with TWM: look at what it imagines, where it attends, and play inside its dream.")
    if status["installed"]:
        st.info(f"The demo run `{status['run_id']}` is ready at checkpoint step {facts['checkpoint_step']}: "
                f"{score_line(facts)}.")
        demo_links(status)
    else:
        st.caption("Installing copies a pre-trained checkpoint of a few MB into the runs directory: it takes a "
                   "second, no training (so no progress bar to wait on).")
        if st.button("Open the demo model", type="primary" if prominent else "secondary", key="demo_install"):
            try:
                with st.spinner("Copying the demo run…"):
                    st.session_state[DEMO] = status = client.install_demo()
            except BackendError as exc:
                st.error(exc.message)
                return
            st.success(f"Installed `{status['run_id']}` (checkpoint step {status['facts']['checkpoint_step']}): "
                       f"{score_line(status['facts'])}.")
            demo_links(status)
    train_yourself(client, facts, prominent)


def train_yourself(client: BackendClient, facts: dict[str, Any], prominent: bool) -> None:
    """Secondary: the same recipe as a training job (`catch` preset, seed 0), with a link to watch it on Runs."""
    minutes = max(1, round(facts["build_minutes"]))
    label = f"…or train it yourself (about {minutes} min on a CPU; the Runs page shows the live ETA)"
    if not prominent:  # already inside the demo expander, and expanders do not nest
        st.markdown(f"**{label}**")
    with st.expander(label) if prominent else st.container():
        st.write(f"Starts a job with the `{facts['preset']}` preset on {facts['game']}, seed {facts['seed']}, "
                 f"{facts['steps']:,} env steps: the recipe the demo was built with (`make demo` rebuilds it).")
        if st.button("Start training", key="demo_train"):
            try:
                job = client.create_job(facts["game"], facts["preset"], int(facts["seed"]))
            except BackendError as exc:
                st.error(exc.message)
                return
            st.success(f"Started job `{job['job_id']}` (run `{job['run_id']}`).")
            try:
                st.page_link(PAGES / "runs.py", label="Watch it on Runs", query_params={"run": job["run_id"]})
            except StreamlitAPIException:
                st.caption(f"Runs: ?run={job['run_id']}")


st.title("TWM dashboard")
st.write(
    "Transformer-based World Models (Robine et al., ICLR 2023): train agents on Atari 100k and look inside "
    "their world models."
)

client = get_client()
try:
    health = client.health()
except BackendError as exc:
    st.error(exc.message)
    st.stop()

st.success("Backend online")
cols = st.columns(3)
cols[0].metric("Device", health["device"])
cols[1].metric("CUDA available", "yes" if health["cuda_available"] else "no")
cols[2].metric("Version", health["version"])
st.caption(f"Runs directory: `{health['runs_dir']}`")

try:
    has_runs = bool(client.runs())
except BackendError as exc:
    st.error(exc.message)
    has_runs = True  # no big offer when the runs cannot be listed
if not has_runs or DEMO in st.session_state:  # the section stays where it was once the demo is installed
    with st.container(border=True, key="demo_section"):  # key: the class `st-key-demo_section` (screenshots)
        demo_section(client, prominent=True)
else:
    with st.expander("Demo: a learned Catch model"):
        demo_section(client, prominent=False)

left, right = st.columns(2)
with left:
    st.subheader("Presets")
    try:
        for preset in client.presets():
            with st.expander(f"**{preset['name']}** — {preset['description']}"):
                st.json(preset["config"], expanded=False)
    except BackendError as exc:
        st.error(exc.message)
with right:
    st.subheader("Games")
    try:
        games = client.games()
        st.write(f"{len(games['atari100k'])} games in the Atari 100k benchmark:")
        st.write(", ".join(games["atari100k"]))
        with st.expander(f"All {len(games['games'])} installed games"):
            st.write(", ".join(games["games"]))
    except BackendError as exc:
        st.error(exc.message)
