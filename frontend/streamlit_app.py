"""Dashboard entry point: `streamlit run frontend/streamlit_app.py`.

Pages live in `app_pages/` (Streamlit's `st.navigation` layout); they reach the backend only through
`frontend.api_client`, never torch or `twm_core`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from frontend.api_client import get_client

PAGES_DIR = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="TWM dashboard", layout="wide")

page = st.navigation([
    st.Page(PAGES_DIR / "home.py", title="Home", icon=":material/home:", default=True),
])

with st.sidebar:
    st.caption(f"Backend: `{get_client().base_url}`")

page.run()
