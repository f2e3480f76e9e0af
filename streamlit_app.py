"""Entry point: `streamlit run streamlit_app.py`. Routes to the pages; holds no model logic.

The pages live in `app_pages/`, not `pages/`: Streamlit treats a `pages/` folder beside the entry
point as an old-style multipage app, and the first request to a freshly started server for a deep
link (`/batch`) then ran that file alone, with a sidebar listing file names — `st.navigation` here
never ran."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `core` and `app_pages.common` import from the checkout wherever streamlit runs
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Multimodal sentiment", page_icon="💬", layout="wide")

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/explore.py", title="Explore a pair", icon=":material/search:"),
    st.Page("app_pages/batch.py", title="Batch scoring", icon=":material/table:"),
    st.Page("app_pages/analyse.py", title="Analyse a run", icon=":material/insights:"),
    st.Page("app_pages/runs.py", title="Saved runs", icon=":material/folder_open:"),
    st.Page("app_pages/correct.py", title="Correct the model", icon=":material/tune:"),
]
st.navigation(pages).run()
