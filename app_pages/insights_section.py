"""The analysis page's "Why, and which version" section: one of Drivers, Themes or Compare versions at a
time (only the one shown is computed), each on the posts the page's filters keep.

Not a page itself: ``app_pages/analyse.py`` calls ``insights_section``; the views are in
``drivers_view.py``, ``themes_view.py`` and ``compare_view.py`` beside it."""
from __future__ import annotations

import streamlit as st

from app.insights_views import INSIGHTS
from app_pages.compare_view import compare_view
from app_pages.drivers_view import drivers_view
from app_pages.themes_view import themes_view
from core.analysis import Filters, RunQuery


def insights_section(run, query: RunQuery, filters: Filters, n: int, groupable: list[str], dated: list[str]) -> None:
    """Draw the section for the ``n`` filtered posts of ``run``."""
    st.subheader("Why, and which version")
    st.radio("View", list(INSIGHTS), format_func=INSIGHTS.get, key="analyse_insight", horizontal=True,
             label_visibility="collapsed")
    if not n:
        st.info("No post passes these filters.")
        return
    view = st.session_state["analyse_insight"]
    if view == "drivers":
        drivers_view(run, query, filters, groupable, dated)
    elif view == "themes":
        themes_view(run, query, filters, dated)
    else:
        compare_view(run, query, filters)
