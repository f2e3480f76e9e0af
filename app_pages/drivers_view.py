"""The analysis page's Drivers view: the terms most associated with each predicted class (or labelled
class), or with one slice of the filtered posts against another (two values of a column; a period
against the one before), each with its score, posts and example posts; a click on a term sets the
page's text search to it.

Not a page itself: ``app_pages/insights_section.py`` calls ``drivers_view``. Terms, values and posts
are the user's: shown in tables and st.text, and as pills through ``literal`` (a code span)."""
from __future__ import annotations

import json

import streamlit as st

from app.analysis_views import FREQ_NAMES, table_csv, value_from_label, value_label
from app.formatting import literal
from app.insights_views import driver_rows, drivers_frame
from core.analysis import FilterError, Filters, RunQuery
from core.insights.run_drivers import class_drivers, period_slices, period_starts, value_slices
from core.runs import open_run

KINDS = {"prediction": "Predicted class", "label": "Labelled class", "values": "Two values of a column",
         "periods": "A period against the one before"}
PILLS = 10      # terms offered as clickable pills per table
EXAMPLES = 5    # terms whose example posts are listed per table
state = st.session_state


@st.cache_data(max_entries=32, show_spinner="Finding the drivers …")
def _drivers(run_id: str, filters_json: str, kind: str, column: str | None, a: str | None, b: str | None,
             freq: str, period: str | None):
    """The drivers for these settings, once per run, filters and settings (the run's rows never change)."""
    filters = Filters.from_dict(json.loads(filters_json))
    with RunQuery.for_run(open_run(run_id)) as query:
        if kind in ("prediction", "label"):
            return class_drivers(query, filters, of=kind)
        if kind == "values":
            return value_slices(query, filters, column, a, b)
        return period_slices(query, filters, column, freq, period)


def _keep(key: str, options: list, default=None) -> None:
    """A selector's remembered choice, or ``default`` when it is not among this run's options."""
    if state.get(key) not in options:
        state[key] = default if default in options else (options[0] if options else None)


def _on_term(key: str) -> None:
    """A click on a term: the page's text search becomes that term (every view follows it)."""
    term = state.get(key)
    if term:
        state["analyse_search"] = term
        state["analyse_gallery_page"] = 1
    state[key] = None


def _settings(query: RunQuery, filters: Filters, groupable: list[str], dated: list[str]) -> tuple:
    kinds = ["prediction", *(["label"] if query.label_column else []), "values", *(["periods"] if dated else [])]
    _keep("drivers_of", kinds)
    st.radio("Drivers of", kinds, format_func=KINDS.get, key="drivers_of", horizontal=True)
    kind, column, a, b, freq, period = state["drivers_of"], None, None, None, "W", None
    if kind == "values":
        c1, c2, c3 = st.columns(3)
        _keep("drivers_column", groupable, state.get("analyse_by"))
        column = c1.selectbox("Column", groupable, key="drivers_column")
        values = [value_label(v) for v in query.column_values(column, 200)["value"]]
        _keep("drivers_a", values)
        _keep("drivers_b", values, values[1] if len(values) > 1 else None)
        a = value_from_label(c2.selectbox("Slice A: posts where the column is", values, key="drivers_a"))
        b = value_from_label(c3.selectbox("Slice B: posts where the column is", values, key="drivers_b"))
    elif kind == "periods":
        c1, c2, c3 = st.columns(3)
        _keep("drivers_date", dated, state.get("analyse_over"))
        column = c1.selectbox("Dates from the column", dated, key="drivers_date")
        _keep("drivers_freq", list(FREQ_NAMES), "W")
        freq = c2.radio("Period", list(FREQ_NAMES), format_func=FREQ_NAMES.get, key="drivers_freq", horizontal=True)
        starts = [t.date().isoformat() for t in period_starts(query, filters, column, freq)]
        _keep("drivers_period", starts, starts[-1] if starts else None)
        period = c3.selectbox(f"This {FREQ_NAMES[freq]} (against the one before)", starts, key="drivers_period")
        if period is None:
            raise FilterError(f"no filtered post has a date in {column!r} that reads as one")
    return kind, column, a, b, freq, period


def drivers_view(run, query: RunQuery, filters: Filters, groupable: list[str], dated: list[str]) -> None:
    """Draw the Drivers view for the filtered posts of ``run``."""
    try:
        kind, column, a, b, freq, period = _settings(query, filters, groupable, dated)
        drivers = _drivers(run.id, json.dumps(filters.to_dict(), sort_keys=True), kind, column, a, b, freq, period)
    except FilterError as error:
        st.error("No drivers for these settings:")
        st.text(str(error))
        return
    st.caption("Terms (words, #hashtags, @mentions, emoji) ranked by the weighted log-odds with an informative "
               "Dirichlet prior (Monroe, Colaresi and Quinn 2008): a z-score, so a word seen in a few posts does not "
               "outrank a steady one. Posts: how many posts of the group hold the term. Click a term to search for it.")
    for note in drivers.notes:
        st.text(note)
    cells = st.columns(len(drivers.tables))
    for k, (cell, (group, table)) in enumerate(zip(cells, drivers.tables.items())):
        with cell:
            st.text(f"{group} · {drivers.sizes.get(group, 0):,} posts")  # a slice is named by the user's value
            if table.empty:
                st.text("No term stands out here.")
                continue
            st.dataframe(driver_rows(table), hide_index=True, key=f"drivers_table::{k}")
            key = f"drivers_term::{k}"
            st.pills("Search for a term", table["term"].astype(str).tolist()[:PILLS], format_func=literal,
                     key=key, on_change=_on_term, args=(key,))
            with st.expander("Example posts"):
                for term, texts in list(zip(table["term"], table["example_texts"]))[:EXAMPLES]:
                    st.text(f"{term}:")
                    for text in texts:
                        st.text("  " + text.replace("\n", " "))
    st.download_button("Download the drivers (CSV)", lambda: table_csv(drivers_frame(drivers)),
                       file_name=f"{run.id}-drivers.csv", mime="text/csv", key="drivers_download", on_click="ignore")

