"""The analysis and saved-runs pages driven with AppTest over a saved run with planted effects: a deep
link opens the run with its filters, every view follows the filters, the downloads hold what is on
screen, user text stays text, and only an operator deletes a run. No model is loaded: these pages
read saved runs only."""
from __future__ import annotations

import io

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.access import hash_password
from core.analysis import Filters, RunQuery, breakdown, over_time
from core.runs import list_runs, save_run
from tests.conftest import STREAMLIT_APP, button, draw_image, texts
from tests.planted import ALL_NEGATIVE, FLOOD_POSTS, PLANTED_WEEK, planted_frame

PICTURES = 30


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MMSA_OPERATOR_PASSWORD_HASH", raising=False)
    return tmp_path / "home"


@pytest.fixture()
def run(home, tmp_path):
    frame = planted_frame(1500)
    frame.loc[0, "text"] = "**bold** [link](http://evil.example) :tada: <b>html</b> #flood"
    frame.loc[0, "brand"] = "<script>alert(1)</script>"
    paths = [draw_image(tmp_path / f"{k}.png", "negative", seed=k, size=(40, 30)) if k < PICTURES else None
             for k in range(len(frame))]
    return save_run(frame, source="brand posts.csv", engine="page", image_paths=paths, name="Spring *campaign*")


@pytest.fixture()
def downloads(monkeypatch) -> dict:
    """What each download button would hand over, by its label (deferred data made on the spot)."""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    handed_over, real = {}, DeltaGenerator.download_button

    def recording(self, label, data, *args, **kwargs):
        handed_over[label] = data() if callable(data) else data
        return real(self, label, data, *args, **kwargs)

    # Buttons in columns are called on their column, the others through st.
    monkeypatch.setattr(DeltaGenerator, "download_button", recording)
    monkeypatch.setattr(st, "download_button", lambda *a, **k: recording(st._main, *a, **k))
    return handed_over


def open_analysis(query_params: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(STREAMLIT_APP), default_timeout=60)
    for key, value in (query_params or {}).items():
        at.query_params[key] = value
    at.switch_page("app_pages/analyse.py")
    at.run()
    assert not at.exception, at.exception
    return at


def url(at, key: str) -> list[str]:
    """The values of one parameter of the page's address."""
    value = at.query_params[key]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def table_with(at, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_a_deep_link_opens_the_run_with_its_views_and_filters(run, downloads):
    at = open_analysis({"run": run.id, "by": "brand", "over": "date", "freq": "W", "q": "#flood", "class": "negative"})
    assert at.selectbox(key="analyse_run").value == run.id
    assert at.text_input(key="analyse_search").value == "#flood"
    assert at.multiselect(key="analyse_classes").value == ["negative"]
    filters = Filters(classes=["negative"], search="#flood")
    with RunQuery.for_run(run) as query:
        expected = query.count(filters)
        assert 0 < expected < FLOOD_POSTS
        by_brand = breakdown(query, filters, "brand").table()
    assert metric(at, "Posts") == f"{expected:,}"
    assert f"#flood: {expected:,}" in "\n".join(t.value for t in at.text)
    shown = table_with(at, "net low")
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), by_brand, check_dtype=False)
    # The page's address keeps the run, the views and the filters for the next visit.
    assert url(at, "run") == [run.id] and url(at, "q") == ["#flood"]
    assert url(at, "class") == ["negative"] and url(at, "by") == ["brand"]
    # Each view's table and chart download; the report holds the views for these filters.
    table = pd.read_csv(io.BytesIO(downloads["Download the breakdown table (CSV)"]), encoding="utf-8-sig")
    assert list(table["posts"]) == list(by_brand["posts"])
    assert b"plotly" in downloads["Download the breakdown chart (HTML)"]
    report = downloads["Download the HTML report (these views, these filters)"].decode()
    assert "text search: #flood" in report and "Breakdown" in report and "Over time" in report
    posts = pd.read_csv(io.BytesIO(downloads[f"Download the {expected:,} filtered posts (CSV)"]), encoding="utf-8-sig")
    assert len(posts) == expected and "brand" in posts.columns


def test_every_view_follows_the_filters_and_marks_the_planted_week(run):
    at = open_analysis({"run": run.id})
    assert at.selectbox(key="analyse_by").value == "brand" and at.selectbox(key="analyse_over").value == "date"
    assert metric(at, "Posts") == f"{run.record.scored:,}"
    groups = table_with(at, "net low")
    assert groups.iloc[-1]["group"].startswith("(other)")          # the pooled brands come last
    lowest = groups.iloc[-2]
    assert lowest["group"] == ALL_NEGATIVE and lowest["net"] == -100.0 and lowest["net high"] > -100.0
    weekly = table_with(at, "unusual")
    assert list(weekly.loc[weekly["unusual"], "period starting"].astype(str)) == [PLANTED_WEEK]
    assert "have no readable date here (4 blank, 3 unreadable)" in texts(at)
    # Filter by a column's values: the breakdown and the timeline shrink to that group's posts.
    at.multiselect(key="analyse_value_columns").set_value(["brand"]).run()
    at.multiselect(key="analyse_values::brand").set_value(["Acme"]).run()
    assert not at.exception
    with RunQuery.for_run(run) as query:
        acme = query.count(Filters(values={"brand": ["Acme"]}))
        acme_weeks = over_time(query, Filters(values={"brand": ["Acme"]}), "date", "W").table()
    assert metric(at, "Posts") == f"{acme:,}"
    assert list(table_with(at, "net low")["group"]) == ["Acme"]
    assert table_with(at, "unusual")["posts"].sum() == acme_weeks["posts"].sum()
    assert url(at, "f:brand") == ["Acme"]
    at.radio(key="analyse_freq").set_value("M").run()
    assert len(table_with(at, "unusual")) == 6


def test_the_gallery_shows_the_pictures_and_links_each_post_to_explore(run):
    at = open_analysis({"run": run.id, "class": "negative"})
    with RunQuery.for_run(run) as query:
        with_pictures = query.one("SELECT count(*) FROM rows WHERE prediction = 'negative' AND image_path IS NOT NULL")[0]
    assert f"{with_pictures:,} filtered posts with a picture" in texts(at)
    assert len(at.get("image")) == min(with_pictures, 24)
    links = [link for link in at.get("page_link") if "Open in Explore" in link.proto.label]
    assert len(links) == min(with_pictures, 24)
    assert links[0].proto.page == "explore"
    assert links[0].proto.query_string.startswith(f"run={run.id}&row=")


def test_user_text_is_shown_as_text_never_markdown(run):
    at = open_analysis({"run": run.id, "q": "#flood", "order": "input"})
    markdown = texts(at)
    for user_text in ("[link](http://evil.example)", "<script>", "Spring *campaign*", ":tada:"):
        assert user_text not in markdown
    shown = "\n".join(t.value for t in at.text)
    assert "Spring *campaign*" in shown                                   # the run name, as text
    assert "**bold** [link](http://evil.example) :tada: <b>html</b> #flood"[:140] in shown   # the post, as text
    assert "<script>alert(1)</script>" in list(table_with(at, "net low")["group"])   # a value, in a table


def test_a_link_to_a_deleted_run_or_with_bad_filters_says_so(run):
    at = open_analysis({"run": "20200101-000000-gone-0000"})
    assert "not saved here" in texts(at) and at.selectbox(key="analyse_run").value == run.id
    at = open_analysis({"run": run.id, "conf": "high", "f:nothing": "x"})
    assert "cannot be used" in texts(at)
    assert metric(at, "Posts") == f"{run.record.scored:,}"


def test_with_no_saved_run_the_page_says_where_runs_come_from(home):
    at = open_analysis()
    assert "No saved runs yet" in texts(at)


def test_saved_runs_are_listed_renamed_and_deleted_by_an_operator_only(run, home, monkeypatch, downloads):
    at = AppTest.from_file(str(STREAMLIT_APP), default_timeout=60)
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    listing = at.dataframe[0].value
    assert list(listing["id"]) == [run.id] and listing["rows"].iloc[0] == run.record.rows
    csv = pd.read_csv(io.BytesIO(downloads["Download the rows (CSV)"]), encoding="utf-8-sig")
    assert len(csv) == run.record.rows and list(csv.columns) == run.record.columns
    at.text_input(key=f"runs_name_{run.id}").set_value("Brand posts, March").run()
    button(at, "runs_rename").click().run()
    assert list_runs()[0].name == "Brand posts, March"
    # A shared server with an operator password: a tab that has not signed in is a viewer.
    monkeypatch.setenv("MMSA_OPERATOR_PASSWORD_HASH", hash_password("a long password"))
    at.run()
    assert button(at, "runs_delete").disabled and at.checkbox(key="runs_delete_sure").disabled
    monkeypatch.delenv("MMSA_OPERATOR_PASSWORD_HASH")
    at.run()
    at.checkbox(key="runs_delete_sure").check().run()
    button(at, "runs_delete").click().run()
    assert list_runs() == [] and "Deleted the run" in texts(at)


def test_a_click_on_a_group_names_it_and_the_pooled_group_cannot_be_clicked(run):
    from app.analysis_charts import breakdown_chart, clicked_group

    with RunQuery.for_run(run) as query:
        result = breakdown(query, Filters(), "brand", top=5)
        every = breakdown(query, Filters(), "brand", top=50)
    figure = breakdown_chart(result)
    bars = [t for t in figure.data if t.type == "bar"]
    assert [t.name for t in bars] == ["negative", "neutral", "positive"]
    keys = [tuple(point[:2]) for point in bars[0].customdata]
    assert keys[-1] == ("other", None) and ("value", "Acme") in keys
    labels = list(breakdown_chart(every).data[0].y)       # plotly reads some HTML: a value is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in labels and "<script>alert(1)</script>" not in labels
    event = {"selection": {"points": [{"customdata": ["value", "Acme", 1, 2, 3]}]}}
    assert clicked_group(event) == ("value", "Acme")
    assert clicked_group({"selection": {"points": [{"customdata": ["blank", None]}]}}) == ("blank", None)
    assert clicked_group({"selection": {"points": [{"customdata": ["other", None]}]}}) is None
    assert clicked_group(None) is None and clicked_group({"selection": {"points": []}}) is None


def test_a_finished_batch_page_scoring_is_saved_once_with_its_uploaded_pictures(home, tmp_path):
    from app.analysis_views import save_batch_run
    from core.io.tables import prepare_pairs
    from core.scoring.batch import BatchResult, result_columns

    table = pd.DataFrame({"id": ["a", "b"], "text": ["@acme love it", "meh"], "image": ["a.png", "b.png"],
                          "brand": ["Acme", "Bolt"]})
    for name in table["image"]:
        draw_image(tmp_path / name, "positive", seed=1)
    rows = prepare_pairs(table, id_column="id", images_root=tmp_path)
    frame = planted_frame(2).head(2)[result_columns()].assign(row=[0, 1], id=["a", "b"], text=list(table["text"]))
    batch = {"result": BatchResult(frame, 2, 2), "rows": rows, "table": table, "name": "pairs.csv", "version": "v3",
             "run": "job-123"}
    run_id, problem = save_batch_run(batch, {"version": "v3", "weights_sha256": "abc"}, copy_pictures=True)
    assert problem is None and [r.id for r in list_runs()] == [run_id]
    (tmp_path / "a.png").unlink()                                        # the upload folder is cleaned up
    from core.runs import read_post

    post = read_post(run_id, 0)
    assert post.text == "@acme love it" and post.image_path is not None and post.image_path.is_file()
    assert list_runs()[0].head == {"version": "v3", "weights_sha256": "abc"} and list_runs()[0].roles.groups == ["brand"]
    # The page reruns after a restart: the same job is not saved twice.
    fresh = {**batch}
    fresh.pop("analysis_run", None)
    assert save_batch_run(fresh, {"version": "v3"}, copy_pictures=True) == (run_id, None)
    assert len(list_runs()) == 1
