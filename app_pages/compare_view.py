"""The analysis page's Compare versions view: two head versions of the registry score the filtered posts
again from the feature store (only the heads run); agreement, the version-against-version matrix, the
posts that changed class (filterable, each openable in Explore) and, when the run has labels, each
version's accuracy with its interval and McNemar's test. The evidence to look at before activating a
correction: the Correct page links here with the candidate preselected (``?run=…&compare=VERSION``).

Not a page itself: ``app_pages/insights_section.py`` calls ``compare_view``. Posts and labels are the
user's: shown in tables and st.text."""
from __future__ import annotations

import json

import streamlit as st

from app.analysis_views import table_csv
from app.charts import export_config
from app.insights_charts import matrix_chart
from app.insights_views import CHANGED_SHOWN, changed_rows, changes, matrix_frame, version_choices, version_label
from app_pages.common import feature_store
from core.analysis import Filters, RunQuery
from core.analysis.stats import wilson_interval
from core.errors import InputError
from core.insights.run_compare import compare_on_run
from core.registry import RegistryError, open_registry

ALL_CHANGES = "every change"
state = st.session_state


def _registry():
    return open_registry(actor=None)  # read only: a change here would have to name its actor


def _compare(query: RunQuery, filters: Filters, a: str, b: str, key: tuple) -> None:
    try:
        with st.spinner("Scoring the posts again with both versions from the stored features …"):
            state["compare_result"] = (key, compare_on_run(query, filters, a, b, feature_store(),
                                                           registry=_registry()))
    except (InputError, RegistryError) as error:
        st.error("These versions cannot be compared here:")
        st.text(str(error))


def _metrics(result) -> None:
    c = result.comparison
    m = st.columns(5 if c.accuracy is not None else 3)
    m[0].metric("Posts compared", f"{c.n:,}", help="Posts of the filters that both versions could score.")
    if c.n:
        low, high = wilson_interval(c.agree, c.n)
        m[1].metric("Agreement", f"{c.agreement * 100:.1f} %",
                    help=f"Same class from both versions; 95 % interval {low * 100:.1f}–{high * 100:.1f} % (Wilson).")
    m[2].metric("Changed class", f"{c.changed:,}")
    if c.accuracy is not None:
        for cell, side in zip(m[3:], ("A", "B")):
            low, high = c.accuracy_ci[side]
            cell.metric(f"Accuracy of {side}", f"{c.accuracy[side] * 100:.1f} %",
                        help=f"On {c.labelled:,} labelled posts; 95 % interval {low * 100:.1f}–{high * 100:.1f} % "
                             "(Wilson).")
        verdict = "more than chance allows" if c.test.p < 0.05 else "within what chance allows"
        st.text(f"McNemar's test ({c.test.method}): A right where B is wrong on {c.test.b:,} posts, the reverse on "
                f"{c.test.c:,}; p = {c.test.p:.4g}: the difference in accuracy is {verdict} (at 0.05).")
    for note in c.notes:
        st.text(note)


def _changed(run, result) -> None:
    kinds = changes(result.changed)
    st.text(f"Posts that changed class: {len(result.changed):,}")
    if not kinds:
        return
    if state.get("compare_change") not in [ALL_CHANGES, *kinds]:
        state["compare_change"] = ALL_CHANGES
    chosen = st.selectbox("Show", [ALL_CHANGES, *kinds], key="compare_change")
    shown = changed_rows(result.changed, None if chosen == ALL_CHANGES else chosen)
    st.dataframe(shown.head(CHANGED_SHOWN), hide_index=True, key="compare_changed_table")
    if len(shown) > CHANGED_SHOWN:
        st.caption(f"The first {CHANGED_SHOWN:,} of {len(shown):,} are listed; the download holds them all.")
    o1, o2 = st.columns([2, 3], vertical_alignment="bottom")
    rows = shown["row"].astype(int).tolist()
    if state.get("compare_open") not in rows:
        state["compare_open"] = rows[0]
    row = o1.selectbox("Open a changed post in Explore (its row)", rows, key="compare_open")
    o2.page_link("app_pages/explore.py", label=f"Open row {row} in Explore", icon=":material/search:",
                 query_params={"run": run.id, "row": str(row)})
    st.download_button("Download the changed posts (CSV)", lambda: table_csv(changed_rows(result.changed)),
                       file_name=f"{run.id}-changed-posts.csv", mime="text/csv", key="compare_download",
                       on_click="ignore")


def compare_view(run, query: RunQuery, filters: Filters) -> None:
    """Draw the Compare versions view for the filtered posts of ``run``."""
    registry = _registry()
    try:
        active = registry.active_version()
    except RegistryError:
        active = None
    choices = version_choices(registry.versions(), run.record.head_version, active)
    if len(choices) < 2:
        st.info("Only one head version is saved here. Save a correction on *Correct the model* to compare it with "
                "this one on your posts.")
        st.page_link("app_pages/correct.py", label="Correct the model", icon=":material/tune:")
        return
    if state.get("compare_a") not in choices:
        state["compare_a"] = choices[0]
    if state.get("compare_b") not in choices or state["compare_b"] == state["compare_a"]:
        state["compare_b"] = next(v for v in choices if v != state["compare_a"])
    label = lambda v: version_label(v, run.record.head_version, active)  # noqa: E731
    v1, v2 = st.columns(2)
    a = v1.selectbox("Version A", choices, format_func=label, key="compare_a")
    b = v2.selectbox("Version B (the candidate)", choices, format_func=label, key="compare_b")
    key = (run.id, json.dumps(filters.to_dict(), sort_keys=True), a, b)
    if st.button(f"Compare them on the {query.count(filters):,} filtered posts", key="compare_go", type="primary",
                 disabled=a == b, help="Only the heads run, on the features stored when the run was scored."):
        _compare(query, filters, a, b, key)
    stored = state.get("compare_result")
    if stored is None or stored[0] != key:
        st.caption("Choose two versions and compare them: agreement, the matrix of their classes, the posts that "
                   "changed and, with labels, each version's accuracy and McNemar's test.")
        return
    result = stored[1]
    _metrics(result)
    if result.comparison.n:
        m1, m2 = st.columns([3, 2])
        m1.plotly_chart(matrix_chart(result.comparison.matrix, (a, b)), key="compare_matrix_chart",
                        config=export_config("versions-matrix"))
        m2.dataframe(matrix_frame(result.comparison.matrix), key="compare_matrix_table")
        _changed(run, result)
