"""Dashboard entry point: `streamlit run frontend/streamlit_app.py`.

Pages live in `app_pages/` (Streamlit's `st.navigation` layout); they reach the backend only through
`frontend.api_client`, never torch or `twm_core`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from frontend.api_client import get_client

PAGES_DIR = Path(__file__).parent / "app_pages"

# (file, title, icon) in menu order. Pages whose file is not there yet are left out, so the app runs without them.
PAGES = [
    ("home.py", "Home", ":material/home:"),
    ("train.py", "Train", ":material/model_training:"),
    ("runs.py", "Runs", ":material/monitoring:"),
    ("sweeps.py", "Sweeps", ":material/dataset:"),
    ("report.py", "Report", ":material/leaderboard:"),
    ("imagine.py", "Imagine", ":material/movie:"),
    ("attention.py", "Attention", ":material/grid_on:"),
    ("play.py", "Play", ":material/sports_esports:"),
    ("checkpoints.py", "Checkpoints", ":material/inventory_2:"),
]

st.set_page_config(page_title="TWM dashboard", layout="wide")

page = st.navigation([
    st.Page(PAGES_DIR / name, title=title, icon=icon, default=name == "home.py")
    for name, title, icon in PAGES if (PAGES_DIR / name).exists()
])

with st.sidebar:
    st.caption(f"Backend: `{get_client().base_url}`")

page.run()
