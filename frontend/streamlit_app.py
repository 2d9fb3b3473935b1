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
# No icons: Streamlit fetches `:material/...:` icons from fonts.gstatic.com (the dashboard loads nothing from the
# internet), and emoji need fonts a server or a headless browser may lack.
PAGES = [
    ("home.py", "Home", None),
    ("train.py", "Train", None),
    ("runs.py", "Runs", None),
    ("sweeps.py", "Sweeps", None),
    ("report.py", "Report", None),
    ("inspector.py", "Inspector", None),
    ("imagine.py", "Imagine", None),
    ("attention.py", "Attention", None),
    ("play.py", "Play", None),
    ("calibration.py", "Calibration", None),
    ("checkpoints.py", "Checkpoints", None),
]

st.set_page_config(page_title="TWM dashboard", layout="wide")

page = st.navigation([
    st.Page(PAGES_DIR / name, title=title, icon=icon, default=name == "home.py")
    for name, title, icon in PAGES if (PAGES_DIR / name).exists()
])

with st.sidebar:
    st.caption(f"Backend: `{get_client().base_url}`")

page.run()
