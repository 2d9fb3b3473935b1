"""Home: backend health (device, runs dir) and what can be trained (games, presets)."""

from __future__ import annotations

import streamlit as st

from frontend.api_client import BackendError, get_client

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
