"""Analyse a run: one set of filters at the top drives a breakdown by any column, sentiment over time and a
gallery of the pictures, each downloadable; the URL holds the run, the views and the filters."""
from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from app.analysis_charts import breakdown_chart, clicked_group, timeline_chart
from app.analysis_views import (
    BLANK_LABEL,
    FREQ_NAMES,
    figure_html,
    file_stem,
    filtered_csv,
    normalise_params,
    page_params,
    report_html,
    table_csv,
    thumbnail,
    value_from_label,
    value_label,
)
from app.charts import export_config
from app.insights_views import INSIGHTS
from app_pages.insights_section import insights_section
from core.analysis import ORDERS, FilterError, Filters, RunQuery, breakdown, gallery, over_time
from core.analysis.breakdown import SORTS
from core.io.labels import LABELS
from core.runs import RunError, list_runs, open_run
from core.scoring.batch import result_columns

CONFLICTS = {"All posts": None, "Only modality conflicts": "only", "No modality conflicts": "none"}
LABEL_STATES = {"All posts": None, "Labelled": "labelled", "Unlabelled": "unlabelled",
                "Wrongly predicted": "wrong", "Rightly predicted": "right"}
SORT_NAMES = {"net": "net sentiment", "posts": "posts", "value": "name"}
NO_DATE = "(no date filter)"
PER_PAGE = 24
GRID = 6
state = st.session_state

st.title("Analyse a run")
st.caption("How sentiment differs by brand or campaign, how it moved over time, what the posts that mention "
           "a hashtag say and what their pictures look like. Every view follows the filters at the top.")

records = list_runs()
if not records:
    st.info("No saved runs yet. Score a table on *Batch scoring* (or with `python -m core.cli score`): every "
            "finished scoring is saved as a run you can analyse here.")
    st.page_link("app_pages/batch.py", label="Batch scoring", icon=":material/table:")
    st.stop()
by_id = {r.id: r for r in records}


# ----- the URL: a link opens the page on its run, views and filters ---------------------------------
def _defaults(record) -> dict:
    roles = record.roles
    return {"analyse_classes": list(LABELS), "analyse_confidence": (0, 100), "analyse_conflict": "All posts",
            "analyse_labels": "All posts", "analyse_search": "", "analyse_value_columns": [],
            "analyse_date_column": NO_DATE, "analyse_date_range": (), "analyse_top": 10, "analyse_sort": "net",
            "analyse_by": (roles.groups or [None])[0], "analyse_over": (roles.dates or [None])[0],
            "analyse_freq": "W", "analyse_gallery_order": "input", "analyse_gallery_page": 1,
            "analyse_insight": "drivers"}


def _reset_views(record) -> None:
    """Every control back to its default for ``record`` (a run chosen, a link followed)."""
    for key in [k for k in state.keys() if str(k).startswith("analyse_values::")]:
        del state[key]
    for key, value in _defaults(record).items():
        state[key] = value


def _apply_link(params: dict[str, list[str]]) -> None:
    run_id = (params.get("run") or [None])[-1]
    if run_id not in by_id:
        if run_id:
            st.warning("The link names a run that is not saved here (it may have been deleted); showing the newest run.")
        return
    record = by_id[run_id]
    state["analyse_run"] = run_id
    _reset_views(record)
    try:
        filters = Filters.from_query_params(params)
    except FilterError as error:
        st.error("The link's filters cannot be used; showing every post. The problem:")
        st.text(str(error))
        filters = Filters()
    for key in ("by", "over"):
        if params.get(key) and params[key][-1] in record.columns:
            state[f"analyse_{key}"] = params[key][-1]
    if params.get("freq") and params["freq"][-1] in FREQ_NAMES:
        state["analyse_freq"] = params["freq"][-1]
    if params.get("compare"):  # the Correct page's link: this candidate against the version that scored the run
        state["analyse_insight"], state["compare_b"] = "compare", params["compare"][-1]
    elif params.get("view") and params["view"][-1] in INSIGHTS:
        state["analyse_insight"] = params["view"][-1]
    state["analyse_classes"] = filters.classes if filters.classes is not None else list(LABELS)
    if filters.confidence:
        state["analyse_confidence"] = tuple(int(round(x * 100)) for x in filters.confidence)
    state["analyse_conflict"] = next(k for k, v in CONFLICTS.items() if v == filters.conflict)
    state["analyse_labels"] = next(k for k, v in LABEL_STATES.items() if v == filters.labels)
    state["analyse_search"] = filters.search
    known = [c for c in filters.values if c in record.columns]
    state["analyse_value_columns"] = known
    for column in known:
        state[f"analyse_values::{column}"] = [value_label(v) for v in filters.values[column]]
    if filters.date_column in record.columns:
        state["analyse_date_column"] = filters.date_column
        start = date.fromisoformat(filters.date_from) if filters.date_from else date(1970, 1, 1)
        end = date.fromisoformat(filters.date_to) if filters.date_to else date.today()
        state["analyse_date_range"] = (start, end)


incoming = normalise_params(st.query_params)
if incoming and incoming != state.get("analyse_url"):
    _apply_link(incoming)
    state["analyse_url"] = incoming
if state.get("analyse_run") not in by_id:
    state["analyse_run"] = records[0].id
    _reset_views(records[0])


def _run_label(run_id: str) -> str:
    r = by_id[run_id]
    return f"{r.name} — {r.created[:16].replace('T', ' ')} UTC, {r.rows:,} rows"


st.selectbox("Run", list(by_id), format_func=_run_label, key="analyse_run",
             on_change=lambda: _reset_views(by_id[state["analyse_run"]]))
try:
    run = open_run(state["analyse_run"])
except RunError as error:
    st.error("This run cannot be opened:")
    st.text(str(error))
    st.stop()
record = run.record
if state.get("analyse_query_run") != run.id:  # one DuckDB connection per tab and run, reused across reruns
    if state.get("analyse_query") is not None:
        state["analyse_query"].close()
    state["analyse_query"], state["analyse_query_run"] = RunQuery.for_run(run), run.id
query: RunQuery = state["analyse_query"]
for key, value in _defaults(record).items():
    state.setdefault(key, value)
st.text(f"{run.name} · from {record.source} · {record.rows:,} rows, {record.scored:,} scored, {record.errors:,} bad · "
        f"head version {record.head_version or 'unknown'} · id {run.id}")
st.page_link("app_pages/runs.py", label="Saved runs: rename, download or delete", icon=":material/folder_open:")

scored_columns = set(result_columns())
inputs = [c for c in record.columns if c not in scored_columns]  # the user's own columns (brand, date …)
groupable = list(dict.fromkeys([*record.roles.groups, *inputs, *(["label"] if record.roles.label else []),
                                "prediction_source"]))
dated = list(dict.fromkeys([*record.roles.dates, *inputs]))

# ----- filters --------------------------------------------------------------------------------------
st.subheader("Filters")
f1, f2, f3, f4 = st.columns([3, 3, 2, 2])
f1.multiselect("Predicted class", LABELS, key="analyse_classes")
f2.slider("Confidence (%)", 0, 100, step=5, key="analyse_confidence")
f3.selectbox("Modality conflicts", list(CONFLICTS), key="analyse_conflict")
f4.selectbox("Labels", list(LABEL_STATES), key="analyse_labels", disabled=record.roles.label is None,
             help=None if record.roles.label else "This run has no label column.")
st.text_input("Search the text", key="analyse_search", placeholder='#flood "cold rain" @cityhall -spam',
              help='Words, "exact phrases", #hashtags and @mentions, any case; every term must match; '
                   "-term leaves posts with it out; word* matches words starting with it.")
v1, v2 = st.columns([3, 2])
v1.multiselect("Filter by the values of columns", groupable, key="analyse_value_columns")
for column in state["analyse_value_columns"]:
    key = f"analyse_values::{column}"
    state.setdefault(key, [])
    options = [value_label(v) for v in query.column_values(column, 200)["value"]]
    options += [v for v in state[key] if v not in options]
    with v1:
        st.text(f"Values of {column}:")
        st.multiselect("Values", options, key=key, label_visibility="collapsed",
                       placeholder=f"any value (the {len(options)} most frequent are listed)")
v2.selectbox("Date range on", [NO_DATE, *dated], key="analyse_date_column")
if state["analyse_date_column"] != NO_DATE:
    v2.date_input("From – to", key="analyse_date_range", help="Both ends included; dates are read in UTC.")


def _filters() -> Filters:
    low, high = state["analyse_confidence"]
    values = {c: [value_from_label(v) for v in state.get(f"analyse_values::{c}", [])]
              for c in state["analyse_value_columns"]}
    span = state["analyse_date_range"] if state["analyse_date_column"] != NO_DATE else ()
    complete = isinstance(span, (tuple, list)) and len(span) == 2
    return Filters(classes=list(state["analyse_classes"]), confidence=(low / 100, high / 100),
                   conflict=CONFLICTS[state["analyse_conflict"]], labels=LABEL_STATES[state["analyse_labels"]],
                   values={c: v for c, v in values.items() if v},
                   date_column=state["analyse_date_column"] if complete else None,
                   date_from=span[0].isoformat() if complete else None,
                   date_to=span[1].isoformat() if complete else None, search=state["analyse_search"])


try:
    filters = _filters()
    summary = query.summary(filters)
except FilterError as error:
    st.error("These filters cannot be used:")
    st.text(str(error))  # it names the user's columns and values: text, never Markdown
    st.stop()
m = st.columns(4)
m[0].metric("Posts", f"{summary.n:,}", help=f"of the {record.scored:,} scored posts in the run")
for column, c in zip(m[1:], LABELS):
    share = summary.shares[c]
    column.metric(f"{c.capitalize()} (share)", "–" if share is None else f"{share * 100:.1f} %",
                  help=None if share is None else
                  f"95 % interval {summary.intervals[c][0] * 100:.1f}–{summary.intervals[c][1] * 100:.1f} % (Wilson)")
if filters.search:
    counts = query.search_counts(filters)
    st.text("Search matches (posts): " + " · ".join(f"{term}: {n:,}" for term, n in counts.items()))
if summary.n == 0:
    st.info("No post passes these filters. Widen them to see the views.")

figures, tables = {}, {}
stem = file_stem(run.name)


def _downloads(name: str, table: pd.DataFrame, figure, key: str) -> None:
    d1, d2 = st.columns(2)
    d1.download_button(f"Download the {name} table (CSV)", lambda: table_csv(table), file_name=f"{stem}-{key}.csv",
                       mime="text/csv", key=f"analyse_dl_{key}_csv", on_click="ignore")
    d2.download_button(f"Download the {name} chart (HTML)", lambda: figure_html(figure), file_name=f"{stem}-{key}.html",
                       mime="text/html", key=f"analyse_dl_{key}_html", on_click="ignore")


def _on_group_click() -> None:
    """A click on a group's bar or point keeps only that group's posts."""
    group = clicked_group(state.get("analyse_breakdown_chart"))
    column = state.get("analyse_by")
    if group is None or column is None:
        return
    state["analyse_value_columns"] = list(dict.fromkeys([*state["analyse_value_columns"], column]))
    state[f"analyse_values::{column}"] = [value_label(group[1])]
    state["analyse_gallery_page"] = 1


# ----- breakdown --------------------------------------------------------------------------------------
st.subheader("Breakdown")
b1, b2, b3 = st.columns([3, 1, 2])
b1.selectbox("Break down by", groupable, key="analyse_by")
b2.number_input("Top groups", 1, 50, key="analyse_top", help="The rest are pooled as (other).")
b3.radio("Sort by", SORTS, format_func=SORT_NAMES.get, key="analyse_sort", horizontal=True)
by = state["analyse_by"]
if by and summary.n:
    result = breakdown(query, filters, by, top=int(state["analyse_top"]), sort=state["analyse_sort"])
    figures["Breakdown"] = breakdown_chart(result)
    tables["Breakdown"] = result.table()
    st.plotly_chart(figures["Breakdown"], key="analyse_breakdown_chart", on_select=_on_group_click,
                    selection_mode="points", config=export_config(f"breakdown-{by}"))
    st.caption("Click a group's bar or point to keep only its posts. Bars: each class's share; points: net sentiment "
               "(positive share − negative share, in points) with its 95 % interval. Table: shares in percent with "
               "Wilson 95 % intervals.")
    st.dataframe(tables["Breakdown"], hide_index=True)
    if result.distinct > result.top:
        st.caption(f"{result.distinct:,} distinct values: the {result.top} with the most posts are shown, the rest "
                   "pooled as (other).")
    _downloads("breakdown", tables["Breakdown"], figures["Breakdown"], "breakdown")

# ----- over time --------------------------------------------------------------------------------------
st.subheader("Over time")
t1, t2 = st.columns([3, 2])
t1.selectbox("Dates from the column", dated, key="analyse_over",
             help="ISO dates, Unix seconds and common formats (3/5/2024, 5 Mar 2024, Twitter's) are read.")
t2.radio("Per", list(FREQ_NAMES), format_func=FREQ_NAMES.get, key="analyse_freq", horizontal=True)
over = state["analyse_over"]
if not dated:
    st.info("This run has no column besides the model's own: add a date column to the table you score.")
elif over and summary.n:
    try:
        timeline = over_time(query, filters, over, state["analyse_freq"])
    except FilterError as error:
        st.error("No timeline for this column:")
        st.text(str(error))
        timeline = None
    if timeline is not None and timeline.n:
        figures["Over time"] = timeline_chart(timeline)
        tables["Over time"] = timeline.table()
        st.plotly_chart(figures["Over time"], key="analyse_timeline_chart", config=export_config(f"over-time-{over}"))
        flagged = int(timeline.periods["unusual"].sum())
        st.caption(f"{flagged} unusual {FREQ_NAMES[timeline.freq]}{'s' if flagged != 1 else ''} (shaded): the class mix "
                   "differs from the level of all dated posts beyond chance (chi-square per period, Holm-corrected "
                   "over the periods tested; periods with fewer than 5 expected posts in a class are not tested).")
        st.dataframe(tables["Over time"], hide_index=True)
        _downloads("over-time", tables["Over time"], figures["Over time"], "over-time")
    elif timeline is not None:
        st.warning("No post in this column reads as a date. Choose another column.")
    if timeline is not None and timeline.unparsed:
        st.warning(f"{timeline.unparsed:,} of the filtered posts have no readable date here ({timeline.blank:,} blank, "
                   f"{timeline.unreadable:,} unreadable): they are counted here and left out of this view only.")
        if timeline.examples:
            st.text("Unreadable cells, e.g.: " + ", ".join(repr(v) for v in timeline.examples))
    if timeline is not None and timeline.reading.formats:
        st.text("Read as: " + "; ".join(timeline.reading.formats)
                + (f" ({timeline.reading.note})" if timeline.reading.note else ""))

# ----- why, and which version: drivers, themes, two versions on the same posts --------------------------
insights_section(run, query, filters, summary.n, groupable, dated)


# ----- gallery ------------------------------------------------------------------------------------------
@st.fragment
def _gallery(filters: Filters) -> None:
    st.subheader("Gallery")
    g1, g2 = st.columns([3, 2])
    g1.selectbox("Order", list(ORDERS), format_func=lambda k: ORDERS[k][0], key="analyse_gallery_order")
    shown = gallery(query, filters, page=int(state["analyse_gallery_page"]), per_page=PER_PAGE,
                    order=state["analyse_gallery_order"])
    g2.number_input(f"Page (of {shown.pages:,})", 1, max(shown.pages, 1), key="analyse_gallery_page")
    st.caption(f"{shown.total:,} filtered posts with a picture. Open one in Explore to see why the model said so.")
    for start in range(0, len(shown.posts), GRID):
        cells = st.columns(GRID)
        for cell, post in zip(cells, shown.posts.iloc[start:start + GRID].itertuples(index=False)):
            with cell:
                picture = thumbnail(post.image_path)
                if picture is not None:
                    st.image(picture)
                else:
                    st.text("(picture not available)")
                flag = " · conflict" if post.conflict else ""
                st.text(f"{post.prediction} · {post.confidence * 100:.0f} %{flag}")
                st.text((post.text or "")[:140])
                st.page_link("app_pages/explore.py", label="Open in Explore", icon=":material/search:",
                             query_params={"run": run.id, "row": str(int(post.row))})


if summary.n:
    _gallery(filters)
    columns = list(record.columns)
    st.download_button(f"Download the {summary.n:,} filtered posts (CSV)",
                       lambda: filtered_csv(RunQuery.for_run(run), filters, columns), file_name=f"{stem}-posts.csv",
                       mime="text/csv", key="analyse_dl_posts", on_click="ignore")

# ----- report and URL ---------------------------------------------------------------------------------
if figures:
    st.download_button("Download the HTML report (these views, these filters)",
                       lambda: report_html(run, filters, summary, record.scored, figures, tables).encode(),
                       file_name=f"report-{stem}.html", mime="text/html", key="analyse_report", on_click="ignore",
                       help="One self-contained page: works offline, charts stay interactive.")
wanted = normalise_params(page_params(run.id, filters, by=by, over=over if dated else None, freq=state["analyse_freq"],
                                     view=None if state["analyse_insight"] == "drivers" else state["analyse_insight"],
                                     compare=state.get("compare_b")))
if normalise_params(st.query_params) != wanted:
    st.query_params.from_dict(wanted)
state["analyse_url"] = wanted
st.caption(f"Blank cells are listed as {BLANK_LABEL}. This page's address holds the run, the views and the filters: "
           "copy it to come back to the same answer.")
