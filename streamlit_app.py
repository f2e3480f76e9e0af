"""Entry point: `streamlit run streamlit_app.py`. Routes to the pages; holds no model logic."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `core` and `pages.common` import from the checkout wherever streamlit runs
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Multimodal sentiment", page_icon="💬", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/explore.py", title="Explore a pair", icon=":material/search:"),
    st.Page("pages/batch.py", title="Batch scoring", icon=":material/table:"),
    st.Page("pages/correct.py", title="Correct the model", icon=":material/tune:"),
]
st.navigation(pages).run()
