"""The analysis page's Themes view: what the run's posts talk about, found once from the text features
the feature store holds and kept with the run; each theme named by its top terms, with its size and
share (95 % interval), its sentiment mix and, with a date column, its share over time — all counted
over the posts the page's filters keep. Posts that fit no theme are listed as "no theme".

Not a page itself: ``app_pages/insights_section.py`` calls ``themes_view``. Theme terms are the
posts' own words: shown in tables, st.text and escaped chart labels."""
from __future__ import annotations

import streamlit as st

from app.analysis_views import FREQ_NAMES, table_csv
from app.charts import export_config
from app.insights_charts import theme_trend_chart, themes_chart
from app.insights_views import theme_names, theme_rows
from app_pages.common import feature_store
from core.analysis import FilterError, Filters, RunQuery
from core.errors import InputError
from core.insights.run_themes import MAX_THEMES, run_themes, theme_view, themes_folder
from core.insights.theme_store import load_themes

NO_DATE = "(no trend)"
state = st.session_state


def _find(run, n_themes: int | None, refresh: bool) -> None:
    try:
        with st.spinner("Finding the themes from the stored text features …"):
            run_themes(run, feature_store(), n_themes=n_themes, refresh=refresh)
    except InputError as error:  # ThemesUnavailable and a bad number of themes say what to do
        st.error("The themes cannot be found:")
        st.text(str(error))


def themes_view(run, query: RunQuery, filters: Filters, dated: list[str]) -> None:
    """Draw the Themes view for the filtered posts of ``run``."""
    c1, c2, c3 = st.columns([2, 2, 2])
    chosen = c1.number_input("Number of themes (0: chosen for you)", 0, MAX_THEMES, step=1, key="themes_k",
                             help="Left at 0 the number with the best silhouette among 4–30 is used. Each number's "
                                  "themes are kept with the run once found.")
    n_themes = int(chosen) or None
    if state.get("themes_date") not in [NO_DATE, *dated]:
        state["themes_date"] = state.get("analyse_over") if state.get("analyse_over") in dated else NO_DATE
    date_column = c2.selectbox("Trend over the dates of", [NO_DATE, *dated], key="themes_date")
    folder = themes_folder(run, n_themes)
    themes = load_themes(folder)
    if themes is None:
        prompt = st.empty()  # the offer goes once the themes are found
        with prompt.container():
            st.text(f"No themes found yet for this run with {'the chosen number' if n_themes is None else n_themes} "
                    f"of themes. Finding them reads the text features of its {run.record.scored:,} posts from the "
                    "feature store (about 10 s for 100,000 posts on 2 cores); they are kept with the run.")
            clicked = st.button("Find the themes", key="themes_find", type="primary")
        if not clicked:
            return
        _find(run, n_themes, refresh=False)
        themes = load_themes(folder)
        if themes is None:
            return
        prompt.empty()
    if c3.button("Find them again", key="themes_refresh", help="Replaces the kept themes of this number."):
        _find(run, n_themes, refresh=True)
        themes = load_themes(folder) or themes
    try:
        view = theme_view(query, filters, themes, folder, date_column=None if date_column == NO_DATE else date_column,
                          freq=state.get("analyse_freq", "W"))
    except FilterError as error:
        st.error("No themes for these settings:")
        st.text(str(error))
        return
    how = "chosen by silhouette" if themes.config.n_themes is None else "as set"
    st.caption(f"{themes.k} themes ({how}), found over all of the run's posts by k-means on their text features and "
               "named by class-based TF-IDF; sizes, shares (95 % Wilson interval), sentiment mix and trend follow the "
               f"filters: {view.n:,} posts here. \"no theme\": posts far from every theme's centre, in a theme too "
               "small to keep, or without stored text features.")
    for note in [*themes.notes, *view.notes]:
        st.text(note)
    if view.table.empty:
        st.info("No post passes these filters.")
        return
    names = theme_names(view.table)
    st.plotly_chart(themes_chart(view.table, names), key="themes_chart", config=export_config("themes"))
    table = theme_rows(view.table)
    st.dataframe(table, hide_index=True, key="themes_table")
    if view.trend is not None and len(view.trend):
        freq = state.get("analyse_freq", "W")
        st.plotly_chart(theme_trend_chart(view.trend, names, freq), key="themes_trend_chart",
                        config=export_config("themes-over-time"))
        st.caption(f"Per {FREQ_NAMES[freq]} (the page's Over time setting); posts without a readable date are left "
                   "out of the trend only.")
    st.download_button("Download the themes table (CSV)", lambda: table_csv(table), file_name=f"{run.id}-themes.csv",
                       mime="text/csv", key="themes_download", on_click="ignore")
