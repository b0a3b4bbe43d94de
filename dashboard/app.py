"""Merchant console: ``streamlit run dashboard/app.py`` (``make demo`` starts it on port 8501).

Reads the shop's API (``CONSOLE_API_URL``, default http://127.0.0.1:8000) with a staff token; nothing is
rendered before log in.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts only this file's folder on the path
    sys.path.insert(0, str(ROOT))

from dashboard import session  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="Merchant console", page_icon=":material/monitoring:", layout="wide")

if not session.token():
    session.login_form()
    st.stop()

pages = [
    st.Page(VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", default=True, url_path="overview"),
    st.Page(VIEWS / "experiment.py", title="Experiment", icon=":material/science:", url_path="experiment"),
    st.Page(VIEWS / "models.py", title="Models", icon=":material/model_training:", url_path="models"),
    st.Page(VIEWS / "accelerator.py", title="Accelerator latency", icon=":material/speed:", url_path="accelerator"),
    st.Page(VIEWS / "inspector.py", title="Recommendations inspector", icon=":material/search:", url_path="inspector"),
]
nav = st.navigation(pages)
with st.sidebar:
    st.caption(f"Signed in as **{st.session_state.get(session.USER_KEY, '')}**")
    if st.button("Log out", key="logout"):
        session.logout()
        st.rerun()
nav.run()
